"""Control-API methods for the cluster as a whole: info, init, join, unlock, leave, tokens, settings, the CA.

Methods that change the cluster object read it through the log (a
linearizable read) and propose it with the version they read; cluster-wide
settings retry that conflict a few times, since they re-read and re-apply
(``manager._cluster_settings``). Certificates are issued in one place,
``manager._issuance``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..keyring import (
    CLIENT_ROLE,
    DAEMON_ROLE,
    AlreadyInitialized,
    InvalidArgument,
    JoinToken,
    NoQuorum,
    NotInitialized,
    RaftstoreError,
    UnlockKey,
    certificate_identity,
    new_id,
)
from ..manager import (
    check_quorum_after_removal,
    cluster_spec,
    issue_node_certificate,
    remove_manager,
    require_answering,
    rotation_status,
    signing_root,
    start_rotation,
    trust_bundle,
    update_cluster,
    updated_external_cas,
)
from ..net import ClusterClient, split_host_port
from ..node import (
    Mode,
    bootstrap_actions,
    force_new_cluster,
    initialize_cluster,
    join_cluster,
    start_manager,
    start_worker,
)
from ..storage import Role
from ._authz import ADMIN, ADMIN_WHILE_LOCKED
from ._host import as_node_host
from ._node_methods import set_node_role
from ._params import addresses_param, cert_expiry_param, external_cas_param, text_param
from ._registry import method
from ._views import node_info

if TYPE_CHECKING:
    from ..manager import Manager
    from ._host import Host

__all__ = ["LEADER_WAIT", "info", "ping", "init", "join", "unlock", "leave", "join_token", "unlock_key",
    "update", "ca", "ca_issue_client", "ca_issue_server", "ca_revoke_client"]

#: How long ``init`` and ``join`` wait for a leader before they give up.
LEADER_WAIT = 15.0


@method("info", allow=ADMIN_WHILE_LOCKED)
def info(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    return node_info(host)


@method("ping", allow=ADMIN_WHILE_LOCKED)
def ping(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    return {"mode": host.mode}


# ------------------------------------------------------------------ init / join / unlock / leave


@method("init", allow=ADMIN)
def init(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    with host.lock:
        if params.get("force_new_cluster"):
            return force_new_cluster(as_node_host(host))
        if host.mode != Mode.INACTIVE:
            raise AlreadyInitialized()
        listen, advertise = addresses_param(host, params)
        result = initialize_cluster(
            host.paths,
            listen_addr=listen,
            advertise_addr=advertise,
            autolock=bool(params.get("autolock")),
            cert_expiry=cert_expiry_param(params) or timedelta(hours=2160),
            ca_cert_pem=params.get("ca_cert_pem"),
            ca_key_pem=params.get("ca_key_pem"),
            external_cas=external_cas_param(params),
            now=host.clock.now(),
        )
        try:
            manager = start_manager(as_node_host(host), result.node, result.keyring, result.kek, result.node_key_pem)
            if not host.wait_for_leader(LEADER_WAIT):
                raise NoQuorum("the new manager did not become leader")
            manager.propose(bootstrap_actions(result))
            result.node.save(host.paths.state_file)
        except BaseException:
            host.become_inactive()
            raise
        host.log(f"initialized cluster {result.node.cluster_id} as manager {result.node.node_id}")
        return {
            "node_id": result.node.node_id,
            "cluster_id": result.node.cluster_id,
            "advertise_addr": advertise,
            "worker_token": str(result.worker_token),
            "unlock_key": str(result.unlock_key) if result.unlock_key else None,
        }


@method("join", allow=ADMIN)
def join(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    with host.lock:
        if host.mode != Mode.INACTIVE:
            raise AlreadyInitialized()
        remote = text_param(params, "remote_addr")
        remote_host, port = split_host_port(remote, 2377)
        remote = f"{remote_host}:{port}"
        listen, advertise = addresses_param(host, params)
        result = join_cluster(
            host.paths,
            token_text=text_param(params, "token"),
            manager_addr=remote,
            listen_addr=listen,
            advertise_addr=advertise,
        )
        node = result.node
        try:
            if node.role == Role.MANAGER:
                # Raft first, then state.json: a crash in between leaves an inactive node to join again
                # (a promotion, node.join_raft, saves first and asks to be readmitted instead).
                manager = start_manager(as_node_host(host), node, result.keyring, result.kek, result.node_key_pem,
                                        joining=True)
                node.save(host.paths.state_file)
                with ClusterClient(
                    remote,
                    trusted_roots_pem=host.paths.root_ca.read_bytes(),
                    identity=manager.tls_identity(),
                    cluster_id=node.cluster_id,
                ) as client:
                    client.call("raft.join", {})
                if not manager.wait_caught_up(1, idle=LEADER_WAIT) or not host.wait_for_leader(LEADER_WAIT):
                    raise NoQuorum("joined the Raft configuration but no leader was heard from")
            else:
                node.save(host.paths.state_file)
                start_worker(as_node_host(host), node)
        except BaseException:
            host.become_inactive()
            raise
        host.log(f"joined cluster {node.cluster_id} as {node.role} {node.node_id}")
        return {"node_id": node.node_id, "cluster_id": node.cluster_id, "role": node.role}


@method("unlock", allow=ADMIN_WHILE_LOCKED)
def unlock(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    host.unlock(str(params.get("key") or ""))
    return {"unlocked": True}


@method("leave", allow=ADMIN)
def leave(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    """Leave the cluster and erase this node's cluster data.

    A worker just leaves. A manager needs ``force``, as in Swarm: the safe way
    out is a demotion first. Forced, a manager whose leaving keeps a reachable
    quorum first leaves Raft properly (its record says worker, it hands
    leadership over if it leads, another manager takes it out of Raft), so
    that the records and Raft agree; one whose leaving would break quorum, or
    that cannot take part (locked, failed), just goes, and the answer carries
    the warning.
    """
    force = bool(params.get("force"))
    warning: str | None = None
    with host.lock:
        if host.mode == Mode.INACTIVE:
            raise NotInitialized()
        if host.mode in (Mode.LOCKED, Mode.FAILED) and not force:
            raise InvalidArgument(
                "this manager cannot take part in the cluster right now; use --force to leave anyway "
                "(the other managers keep it in their Raft configuration until you run \"raftstore node rm\" there)"
            )
        if host.mode == Mode.MANAGER:
            manager = host.require_manager()
            danger = _leave_danger(manager)
            if not force:
                raise InvalidArgument(
                    "You are attempting to leave the cluster on a node that is participating as a manager. "
                    + (danger or "The safe way to remove a manager is to demote it first (\"raftstore node demote\" "
                       "on another manager), then leave.")
                    + " Use --force to leave anyway."
                )
            warning = danger or _leave_raft(host, manager)
        host.become_inactive()
        return {"left": True, "warning": warning}


def _leave_danger(manager: "Manager") -> str | None:
    """What this manager's leaving would break (the last manager, or quorum), or None."""
    members = manager.status().get("members", [])
    if len(members) <= 1:
        return "Removing the last manager erases all current state of the cluster."
    try:
        check_quorum_after_removal(manager, manager.node.node_id)
    except InvalidArgument as error:
        return (
            f"Leaving breaks quorum ({error}). Without a Raft quorum the cluster is inaccessible, and the only way "
            "to restore it is \"raftstore init --force-new-cluster\" on a remaining manager."
        )
    return None


def _leave_raft(host: "Host", manager: "Manager") -> str | None:
    """Leave Raft properly before the data goes: record says worker, then out of the configuration."""
    node_id = manager.node.node_id
    try:
        set_node_role(manager, node_id, Role.WORKER)
        remove_manager(manager, node_id, timeout=10.0)
    except RaftstoreError as error:
        return (
            f"this manager could not leave Raft properly ({error}); on another manager, run "
            f"\"raftstore node demote {node_id}\" or \"raftstore node rm --force {node_id}\""
        )
    return None


# ------------------------------------------------------------------ cluster settings


@method("join_token", allow=ADMIN)
def join_token(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    role = params.get("role")
    if role not in (Role.WORKER, Role.MANAGER):
        raise InvalidArgument("role must be worker or manager")
    manager = host.require_manager()
    if params.get("rotate"):

        def rotate(spec: dict[str, Any], _: "Manager") -> list[dict[str, Any]]:
            spec["join_tokens"][role] = str(JoinToken.parse(spec["join_tokens"][role]).rotated())
            return []

        spec = update_cluster(manager, rotate)
        host.log(f"{role} join token rotated")
    else:
        spec = cluster_spec(manager)
    return {
        "role": role,
        "token": spec["join_tokens"][role],
        "manager_addr": manager.node.advertise_addr,
        "rotated": bool(params.get("rotate")),
    }


@method("unlock_key", allow=ADMIN)
def unlock_key(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    manager = host.require_manager()
    current = cluster_spec(manager)
    if not current.get("autolock"):
        raise InvalidArgument("no unlock key is set (autolock is off); turn it on with \"raftstore update --autolock=true\"")
    if params.get("rotate"):

        def rotate(spec: dict[str, Any], _: "Manager") -> list[dict[str, Any]]:
            if not spec.get("autolock"):
                raise InvalidArgument("no unlock key is set (autolock is off)")
            spec["unlock_key"] = str(UnlockKey.generate())
            spec["kek_version"] = int(spec.get("kek_version", 1)) + 1
            return []

        spec = update_cluster(manager, rotate)
        host.log("unlock key rotated")
        return {"unlock_key": spec["unlock_key"], "rotated": True}
    return {"unlock_key": current["unlock_key"], "rotated": False}


@method("update", allow=ADMIN)
def update(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    autolock = params.get("autolock")
    expiry = cert_expiry_param(params)
    rotate_dek = bool(params.get("rotate_dek"))
    add_cas, remove_cas = external_cas_param(params), external_cas_param(params, "external_ca_rm")
    if autolock is None and expiry is None and not rotate_dek and not add_cas and not remove_cas:
        raise InvalidArgument("nothing to update: give --autolock, --cert-expiry, --rotate-dek, --external-ca "
                              "or --external-ca-rm")
    outcome: dict[str, Any] = {}
    manager = host.require_manager()
    if add_cas:
        _check_new_external_cas(manager, add_cas)

    def change(spec: dict[str, Any], manager: "Manager") -> list[dict[str, Any]]:
        extra: list[dict[str, Any]] = []
        outcome.clear()
        if add_cas or remove_cas:
            spec["external_cas"] = updated_external_cas(spec, add_cas, remove_cas)
        if expiry is not None:
            spec["cert_expiry_seconds"] = int(expiry.total_seconds())
        if autolock is not None and bool(autolock) != bool(spec.get("autolock")):
            spec["autolock"] = bool(autolock)
            spec["kek_version"] = int(spec.get("kek_version", 1)) + 1
            if autolock:
                key = UnlockKey.generate()
                spec["unlock_key"] = str(key)
                outcome["unlock_key"] = str(key)
                # Every earlier DEK term was recoverable from disk while
                # autolock was off: seal everything from now on under a new one.
                extra.append(manager.new_dek_action())
            else:
                spec["unlock_key"] = None
        if rotate_dek and not extra:
            # Vault's "operator rotate": the same rotation entry autolock uses.
            extra.append(manager.new_dek_action())
        if extra:
            outcome["dek_term"] = extra[0]["key_id"]
        return extra

    spec = update_cluster(manager, change)
    host.log("cluster settings updated" + (f"; data encryption key rotated to term {outcome['dek_term']}"
                                           if "dek_term" in outcome else ""))
    return {"autolock": bool(spec.get("autolock")), "cert_expiry_seconds": spec["cert_expiry_seconds"],
            "external_cas": [{"protocol": e["protocol"], "url": e["url"]} for e in spec.get("external_cas") or []],
            **outcome}


def _check_new_external_cas(manager: "Manager", options: list[Any]) -> None:
    """Before committing: the external CAs being added answer, and sign with the root that signs now."""
    spec = cluster_spec(manager)
    entries = updated_external_cas(spec, options, [])[-len(options):]
    require_answering(entries, signing_root(spec)[0].cert_pem)


# ------------------------------------------------------------------ CA


@method("ca", allow=ADMIN)
def ca(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    if params.get("rotate"):
        now, external_cas = host.clock.now(), external_cas_param(params)
        return start_rotation(host.require_manager(), host.log, now, params.get("ca_cert_pem"),
                              params.get("ca_key_pem"), external_cas)
    if params.get("ca_cert_pem") or params.get("ca_key_pem") or params.get("external_cas"):
        raise InvalidArgument("--ca-cert, --ca-key and --external-ca only go with --rotate")
    return rotation_status(host.require_manager(), str(params.get("consistency") or "linearizable"))


@method("ca.issue_client", allow=ADMIN)
def ca_issue_client(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    """A client certificate for the remote control API (OU swarm-client), for the key in a CSR."""
    csr = params.get("csr_pem")
    if not isinstance(csr, bytes):
        raise InvalidArgument("a CSR is required")
    name = params.get("name") or f"client-{new_id()[:12]}"
    if not isinstance(name, str) or not 0 < len(name) <= 64:
        raise InvalidArgument("a client name is 1 to 64 characters")
    manager = host.require_manager()
    spec = cluster_spec(manager)
    chain = issue_node_certificate(spec, csr, node_id=name, cluster_id=manager.node.cluster_id, role=CLIENT_ROLE,
                                   now=host.clock.now())
    serial = certificate_identity(chain).serial
    host.log(f"issued client certificate {name!r} (serial {serial}) for the remote control API")
    return {"cert_chain_pem": chain, "ca_pem": trust_bundle(spec), "name": name, "serial": serial}


@method("ca.issue_server", allow=ADMIN)
def ca_issue_server(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    """A daemon's server certificate for the remote control API (serverAuth only), naming the hosts
    clients dial, for the key in a CSR (``ca issue-server``)."""
    csr, hosts = params.get("csr_pem"), params.get("sans")
    if not isinstance(csr, bytes):
        raise InvalidArgument("a CSR is required")
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
        raise InvalidArgument("--san takes a DNS name or an IP address")
    manager = host.require_manager()
    spec = cluster_spec(manager)
    chain = issue_node_certificate(spec, csr, node_id=f"daemon-{new_id()[:12]}", cluster_id=manager.node.cluster_id,
                                   role=DAEMON_ROLE, now=host.clock.now(), hosts=hosts)
    host.log(f"issued a daemon certificate for {', '.join(hosts)} for the remote control API")
    return {"cert_chain_pem": chain, "ca_pem": trust_bundle(spec)}


@method("ca.revoke_client", allow=ADMIN)
def ca_revoke_client(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    """Refuse an admin client certificate from now on, on every manager (the list is in the cluster object)."""
    serial = params.get("serial")
    text = serial.strip().lower().removeprefix("0x") if isinstance(serial, str) else ""
    if not (0 < len(text) <= 40 and all(c in "0123456789abcdef" for c in text)):
        raise InvalidArgument(f"{serial!r} is not a certificate serial: give it in hex, as issue-client printed it")
    text = text.lstrip("0") or "0"
    outcome = {"already": False}

    def revoke(spec: dict[str, Any], _: "Manager") -> list[dict[str, Any]]:
        revoked = list(spec.get("revoked_client_serials", []))
        outcome["already"] = text in revoked
        spec["revoked_client_serials"] = sorted(set(revoked) | {text})
        return []

    update_cluster(host.require_manager(), revoke)
    host.log(f"client certificate {text} revoked")
    return {"serial": text, "revoked": True, "already_revoked": outcome["already"]}
