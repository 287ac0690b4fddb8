"""``raftstore doctor``: audit this node and say what to fix.

Each finding has a severity (``critical``: the node's secrets or the
cluster's availability are exposed now; ``warning``: a weakness to fix;
``info``: worth knowing), a one-line message and the command or step that fixes
it. Checks read local files and this daemon's view; none changes anything.
"""

from __future__ import annotations

import stat
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..keyring import CERT_BACKDATE
from ..manager import entries_for, probe_all, rotation_status, signing_root
from ..node import Mode
from ._authz import ADMIN
from ._registry import method
from ._views import node_row

if TYPE_CHECKING:
    from ._host import Host

__all__ = ["Finding", "audit", "doctor"]

NEAR_EXPIRY_FRACTION = 0.2
NEAR_EXPIRY_MIN = timedelta(hours=24)


@dataclass(frozen=True)
class Finding:
    severity: str
    check: str
    message: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@method("doctor", allow=ADMIN)
def doctor(host: "Host", params: dict[str, Any]) -> list[dict[str, str]]:
    return [finding.to_dict() for finding in audit(host)]


def audit(host: "Host") -> list[Finding]:
    findings: list[Finding] = []
    if host.mode == Mode.INACTIVE:
        return [Finding("info", "membership", "this node is not part of a cluster", 'run "raftstore init" or "raftstore join"')]
    findings += _file_modes(host)
    findings += _certificate(host)
    findings += _remote_api(host)
    findings += _secrets_dir(host)
    if host.mode == Mode.LOCKED:
        findings.append(Finding("info", "locked", "this manager is locked and serves nothing until unlocked",
                                'run "raftstore unlock" with the cluster\'s unlock key'))
    if host.mode == Mode.MANAGER and host.manager is not None:
        findings += _manager(host)
    order = {"critical": 0, "warning": 1, "info": 2}
    return sorted(findings, key=lambda f: (order[f.severity], f.check))


def _secrets_dir(host: "Host") -> list[Finding]:
    """Where granted secrets are delivered (see _delivery): a disk is a weakness, no delivery worth knowing."""
    directory = host.secrets_dir
    if host.delivery is not None and directory is not None and directory.allow_disk:
        from ..node import MEMORY_FILESYSTEMS, filesystem_type

        if filesystem_type(directory.path) not in MEMORY_FILESYSTEMS:
            return [Finding("warning", "secrets-dir",
                            f"granted secrets are written to {directory.path}, which is not on tmpfs: they reach a disk",
                            "mount a tmpfs there and restart the daemon without --secrets-dir-not-tmpfs")]
    if host.secrets_dir_problem is not None:
        return [Finding("info", "secrets-dir",
                        f"secrets and configs are not delivered to files: {host.secrets_dir_problem}",
                        "give the daemon --secrets-dir DIR on a tmpfs (or --no-secrets-dir to say you mean it)")]
    return []


def _file_modes(host: "Host") -> list[Finding]:
    paths = host.paths
    secret_files = [paths.node_key, paths.keys / "keyring", paths.keys / "kek", paths.state_file]
    out = []
    for path in secret_files:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            out.append(Finding("critical", "file-permissions", f"{path} is readable or writable by other users "
                               f"(mode {mode:04o})", f"chmod 600 {path}"))
    for directory in (paths.root, paths.keys, paths.certificates, paths.raft):
        try:
            mode = stat.S_IMODE(directory.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            out.append(Finding("warning", "file-permissions", f"{directory} is open to other users (mode {mode:04o})",
                               f"chmod 700 {directory}"))
    return out


def _certificate(host: "Host") -> list[Finding]:
    identity = host.certificate_identity()
    if identity is None:
        return [Finding("critical", "certificate", f"no readable node certificate at {host.paths.node_cert}",
                        "leave the cluster and join it again")]
    now = host.clock.now()
    remaining = identity.not_after - now
    lifetime = identity.not_after - identity.not_before - CERT_BACKDATE
    if remaining <= timedelta(0):
        return [Finding("critical", "certificate", f"this node's certificate expired at {identity.not_after:%Y-%m-%d %H:%M} UTC",
                        "make sure a manager is reachable: the node renews an expired certificate as soon as one is")]
    if remaining < max(NEAR_EXPIRY_MIN, lifetime * NEAR_EXPIRY_FRACTION):
        error = host.renewer.last_error
        reason = f"; the last renewal failed: {error}" if error else ""
        return [Finding("warning", "certificate",
                        f"this node's certificate expires in {_human(remaining)} and has not been renewed{reason}",
                        "check that a manager is reachable (raftstore info); renewal happens at 50-80% of the lifetime")]
    return []


def _remote_api(host: "Host") -> list[Finding]:
    if host.remote_api is None:
        return []
    address, context = host.remote_api
    if context is None:
        return [Finding("critical", "remote-api", f"the control API listens on tcp://{address} without TLS "
                        "(--insecure): any local user can control this node through it",
                        "restart the daemon with --tlsverify --tlscacert --tlscert --tlskey, or without -H")]
    return []


def _manager(host: "Host") -> list[Finding]:
    manager = host.manager
    assert manager is not None
    out: list[Finding] = []
    cluster = manager.state.cluster()
    spec = cluster["spec"] if cluster else {}
    if not spec.get("autolock"):
        out.append(Finding("warning", "autolock", "autolock is off: the keys to this manager's Raft data are stored "
                           "in plain form on its disk, so a stolen disk reveals every secret",
                           "raftstore update --autolock=true (and keep the unlock key in a password manager)"))
    members = manager.status().get("members", [])
    count = len(members)
    if count == 1:
        out.append(Finding("warning", "managers", "this cluster has a single manager: losing it loses the cluster",
                           "join two more managers (raftstore join-token manager)"))
    elif count % 2 == 0:
        out.append(Finding("warning", "managers", f"{count} managers tolerate no more failures than {count - 1}: "
                           "an even number adds risk without adding fault tolerance",
                           "add or demote one manager (raftstore node promote/demote)"))
    out += _external_cas(spec)
    if spec.get("root_rotation"):
        status = rotation_status(manager, "local")
        rows = {record["id"]: node_row(manager, record, host.heartbeats) for record in manager.state.list("nodes")}
        down = [n["id"] for n in status["waiting_for"] if rows.get(n["id"], {}).get("status") == "down"]
        if down:
            out.append(Finding("warning", "ca-rotation", f"the CA rotation is waiting for nodes that are down: {', '.join(down)}",
                               "bring them back up, or remove them (raftstore node rm --force ID)"))
        else:
            waiting = ", ".join(n["id"] for n in status["waiting_for"]) or "none"
            out.append(Finding("info", "ca-rotation", f"a CA rotation is in progress ({status['converged']}/"
                               f"{status['total']} nodes); waiting for: {waiting}",
                               "wait: reachable nodes renew by themselves"))
    return out


def _external_cas(spec: dict[str, Any]) -> list[Finding]:
    """Each external CA that does not answer; critical when none that signs now does (joins and renewals fail)."""
    if not spec.get("external_cas"):
        return []
    rows = probe_all(spec)
    root = signing_root(spec)[0]
    signing_urls = {e["url"] for e in entries_for(spec, root.cert_pem)}
    down = [r for r in rows if not r["answers"]]
    out = [Finding("warning", "external-ca", f"external CA {r['url']}: {r['status']}",
                   "start the signing service, or remove it (raftstore update --external-ca-rm URL)") for r in down]
    if root.key_pem is None and not any(r["answers"] for r in rows if r["url"] in signing_urls):
        out.append(Finding("critical", "external-ca", "no external CA that signs for the root answers: joins, "
                           "renewals and role changes fail", "start the CFSSL signing service, or add one "
                           "(raftstore update --external-ca protocol=cfssl,url=...)"))
    return out


def _human(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} hours" if hours < 48 else f"{hours / 24:.0f} days"

