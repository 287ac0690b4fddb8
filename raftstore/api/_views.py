"""Read-only views of a node that more than one caller shows: ``info``, a node's row, the CA settings.

``raftstore info``, ``/metrics`` and ``/healthz`` (``_http``) read the same
``node_info``, so a scrape and the command line never disagree; ``node ls``,
``node rm`` and ``doctor`` judge a node ready or down by the same
``node_row``. Nothing here changes anything.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..manager import probe_all
from ..node import Mode
from ..state import format_duration
from ..storage import Role

if TYPE_CHECKING:
    from ..manager import Manager
    from ._host import Host

__all__ = ["node_info", "ca_config", "node_row", "WORKER_DOWN_AFTER"]

#: A worker that has not sent a heartbeat for this long is shown as down.
WORKER_DOWN_AFTER = 15.0


def node_info(host: "Host") -> dict[str, Any]:
    """What ``raftstore info`` shows: mode, identity, Raft, certificates and keys, as far as the mode allows."""
    node = host.node
    out: dict[str, Any] = {
        "state": host.mode,
        "node_id": node.node_id if node else None,
        "cluster_id": node.cluster_id if node else None,
        "role": node.role if node else None,
        "locked": host.mode == Mode.LOCKED,
        "autolock": None,
        "leader": None,
        "is_leader": False,
        "managers": None,
        "nodes": None,
        "raft": None,
        "cert_expiry_seconds": None,
        "ca_rotation_in_progress": None,
        "ca_config": None,
        "listen_addr": node.listen_addr if node else None,
        "advertise_addr": node.advertise_addr if node else None,
        "data_dir": str(host.paths.root),
        "secrets_dir": str(host.secrets_dir.path) if host.delivery is not None and host.secrets_dir else None,
        "metrics_addr": host.metrics.address if host.metrics is not None else None,
        "error": host.failure if host.mode == Mode.FAILED else None,
    }
    if host.mode == Mode.INACTIVE:
        return out
    identity = host.certificate_identity()
    if identity is not None:
        out["cert_expiry_seconds"] = int((identity.not_after - host.clock.now()).total_seconds())
    if host.mode == Mode.LOCKED:
        out["autolock"] = True
        return out
    if host.worker is not None:
        out["manager_addrs"] = list(host.worker.node.manager_addrs)
        out["removed"] = host.worker.removed
        out["error"] = host.renewer.rejoin_error or host.worker.last_error
        return out
    manager = host.manager
    if manager is None:
        return out
    status = manager.status()
    cluster = manager.state.cluster()
    out["leader"] = status.get("leader")
    out["is_leader"] = bool(status.get("is_leader"))
    out["managers"] = len(status.get("members", []))
    out["nodes"] = len(manager.state.list("nodes"))
    out["raft"] = {
        "term": status.get("term"),
        "commit_index": status.get("commit_index"),
        "applied_index": status.get("applied_index"),
        "log_entries": status.get("log_entries"),
        "members": [{"node_id": i, "addr": a} for i, a in status.get("members", [])],
        "connected": status.get("connected", []),
    }
    if cluster is not None:
        spec = cluster["spec"]
        out["autolock"] = bool(spec.get("autolock"))
        out["ca_rotation_in_progress"] = spec.get("root_rotation") is not None
        out["cluster_cert_expiry_seconds"] = spec.get("cert_expiry_seconds")
        out["ca_config"] = ca_config(spec)
        out["external_cas"] = probe_all(spec)
    out["kek_version"] = manager.kek.version
    keyring = manager.keys.keyring
    out["dek_terms"] = list(keyring.key_ids)
    out["dek_active"] = keyring.active_id
    out["dek_records"] = manager.state.records_sealed(keyring.active_id)
    return out


def ca_config(spec: dict[str, Any]) -> dict[str, Any]:
    """The cluster's CA settings as ``docker system info`` shows them ("CA Configuration")."""
    seconds = int(spec["cert_expiry_seconds"])
    external = []
    for entry in spec.get("external_cas") or []:  # a map, or the --external-ca text protocol=cfssl,url=...
        fields = entry if isinstance(entry, dict) else dict(
            part.partition("=")[::2] for part in str(entry).split(",") if "=" in part)
        external.append({"protocol": str(fields.get("protocol", "cfssl")), "url": str(fields.get("url", ""))})
    return {
        "expiry_seconds": seconds,
        "expiry": format_duration(timedelta(seconds=seconds)),
        "external_cas": external,
        "root_rotation_in_progress": spec.get("root_rotation") is not None,
        "force_rotate": int(spec.get("force_rotate", 0)),
    }


def node_row(manager: "Manager", record: dict[str, Any], heartbeats: dict[str, float]) -> dict[str, Any]:
    """One node as ``node ls`` shows it: a manager is ready while Raft reaches it, a worker while it reports.

    ``heartbeats`` is when each worker last reported to this manager (``time.monotonic()``).
    """
    status = manager.status()
    members = {i for i, _ in status.get("members", [])}
    connected = set(status.get("connected", []))
    spec = record["spec"]
    node_id = record["id"]
    if spec.get("role") == Role.MANAGER or node_id in members:
        if node_id == status.get("leader"):
            manager_status = "Leader"
        elif node_id == manager.node.node_id or node_id in connected:
            manager_status = "Reachable"
        else:
            manager_status = "Unreachable"
        ready = manager_status != "Unreachable"
    else:
        manager_status = ""
        seen = heartbeats.get(node_id)
        ready = seen is not None and time.monotonic() - seen < WORKER_DOWN_AFTER
    return {
        "id": node_id,
        "hostname": spec.get("hostname", ""),
        "role": spec.get("role"),
        "status": "ready" if ready else "down",
        "availability": spec.get("availability", "active"),
        "manager_status": manager_status,
        "addr": spec.get("addr"),
        "version": record["version"],
        "created_at": record["created_at"],
        "updated_at": record["updated_at"],
        "labels": record["labels"],
        "self": node_id == manager.node.node_id,
    }
