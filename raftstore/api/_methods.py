"""Control-API methods: what each ``raftstore`` command asks its daemon to do.

Each method is registered with the callers it admits (``@method(name,
allow=...)``, kinds from ``_authz``); the daemon runs ``_authz.authorize``
with that declaration before the method, on the unix socket and the remote
control API alike. A method registered without one is refused to everyone.

Each method takes the daemon and a params map and returns plain data (the CLI
formats it). Methods that change the store read what they change through the
log (a linearizable read) and name the version they read, so concurrent
operators get ``update out of sequence`` instead of lost updates; cluster-wide
settings retry that conflict a few times, since they re-read and re-apply.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable

from ._authz import ADMIN, ADMIN_WHILE_LOCKED, Allowed
from ..node._bootstrap import bootstrap_actions, initialize_cluster, join_cluster
from ..net._cluster_client import ClusterClient
from ..net._control import Stream
from ..manager._external_ca import MAX_EXTERNAL_CAS, probe_all, require_answering, updated_external_cas
from ..storage._node_state import MANAGER, NodeState
from ..net import split_host_port
from ..node._roles import check_quorum_after_removal, remove_manager
from ..state._state_machine import StateMachine
from ..keyring import (
    MIN_CERT_VALIDITY,
    AlreadyInitialized,
    InvalidArgument,
    JoinToken,
    NoQuorum,
    NotFound,
    NotInitialized,
    RaftstoreError,
    UnlockKey,
    UpdateOutOfSequence,
)

if TYPE_CHECKING:
    from ..node._daemon import Daemon
    from ..manager._manager import Manager

__all__ = ["METHODS", "ALLOWED", "method"]

Method = Callable[["Daemon", dict[str, Any]], Any]
METHODS: dict[str, Method] = {}
#: Who may call each method (see _authz); a method missing here is refused.
ALLOWED: dict[str, Allowed] = {}

LEADER_WAIT = 15.0


def method(name: str, *, allow: Allowed | None = None) -> Callable[[Method], Method]:
    """Register a control-API method and the callers it admits."""

    def register(fn: Method) -> Method:
        METHODS[name] = fn
        if allow is not None:
            ALLOWED[name] = allow
        return fn

    return register


def _str(params: dict[str, Any], key: str, default: str | None = None) -> str:
    value = params.get(key, default)
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{key} is required")
    return value


def _read(daemon: "Daemon", params: dict[str, Any]) -> StateMachine:
    consistency = params.get("consistency") or "linearizable"
    return daemon.require_manager().read_barrier(str(consistency))


def _committed_cluster_spec(daemon: "Daemon") -> dict[str, Any]:
    """The cluster object's spec after a barrier: what every cluster-wide setting is read from."""
    cluster = daemon.require_manager().read_barrier().cluster()
    if cluster is None:
        raise NoQuorum("the cluster object is not committed yet")
    spec: dict[str, Any] = cluster["spec"]
    return spec


# ------------------------------------------------------------------ info


@method("info", allow=ADMIN_WHILE_LOCKED)
def info(daemon: "Daemon", params: dict[str, Any]) -> dict[str, Any]:
    from ..node._daemon import FAILED, INACTIVE, LOCKED

    node = daemon.node
    out: dict[str, Any] = {
        "state": daemon.mode,
        "node_id": node.node_id if node else None,
        "cluster_id": node.cluster_id if node else None,
        "role": node.role if node else None,
        "locked": daemon.mode == LOCKED,
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
        "data_dir": str(daemon.paths.root),
        "secrets_dir": str(daemon.secrets_dir.path) if daemon.delivery is not None and daemon.secrets_dir else None,
        "metrics_addr": daemon.metrics.address if daemon.metrics is not None else None,
        "error": daemon.failure if daemon.mode == FAILED else None,
    }
    if daemon.mode == INACTIVE:
        return out
    identity = daemon.certificate_identity()
    if identity is not None:
        out["cert_expiry_seconds"] = int((identity.not_after - daemon.clock.now()).total_seconds())
    if daemon.mode == LOCKED:
        out["autolock"] = True
        return out
    if daemon.worker is not None:
        out["manager_addrs"] = list(daemon.worker.node.manager_addrs)
        out["removed"] = daemon.worker.removed
        out["error"] = daemon.renewer.rejoin_error or daemon.worker.last_error
        return out
    manager = daemon.manager
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
    from ..state._durations import format_duration

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


# ------------------------------------------------------------------ init / join / unlock / leave


def _cert_expiry(params: dict[str, Any]) -> timedelta | None:
    seconds = params.get("cert_expiry_seconds")
    if seconds is None:
        return None
    expiry = timedelta(seconds=float(seconds))
    if expiry < MIN_CERT_VALIDITY:
        raise InvalidArgument("minimum certificate expiry time is: 1h0m0s")
    return expiry


def _external_cas(params: dict[str, Any], key: str = "external_cas") -> list[Any]:
    """The ``--external-ca`` options (or ``--external-ca-rm`` URLs) a command sent; _external_ca checks each."""
    value = params.get(key) or []
    if not isinstance(value, list) or len(value) > MAX_EXTERNAL_CAS:
        raise InvalidArgument(f"give at most {MAX_EXTERNAL_CAS} external CAs")
    return value


def _addresses(daemon: "Daemon", params: dict[str, Any]) -> tuple[str, str]:
    listen = params.get("listen_addr") or daemon.default_listen_addr or "0.0.0.0:2377"
    host, port = split_host_port(str(listen), 2377)
    listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    advertise = params.get("advertise_addr")
    if advertise:
        ahost, aport = split_host_port(str(advertise), port)
        advertise = f"[{ahost}]:{aport}" if ":" in ahost else f"{ahost}:{aport}"
    elif host in ("0.0.0.0", "::"):
        raise InvalidArgument(
            "could not choose an address to advertise: the listen address is unspecified; use --advertise-addr"
        )
    else:
        advertise = listen
    return listen, advertise


@method("init", allow=ADMIN)
def init(daemon: "Daemon", params: dict[str, Any]) -> dict[str, Any]:
    from ..node._daemon import INACTIVE

    with daemon.lock:
        if params.get("force_new_cluster"):
            from ..node._force_new_cluster import force_new_cluster

            return force_new_cluster(daemon)
        if daemon.mode != INACTIVE:
            raise AlreadyInitialized()
        listen, advertise = _addresses(daemon, params)
        result = initialize_cluster(
            daemon.paths,
            listen_addr=listen,
            advertise_addr=advertise,
            autolock=bool(params.get("autolock")),
            cert_expiry=_cert_expiry(params) or timedelta(hours=2160),
            ca_cert_pem=params.get("ca_cert_pem"),
            ca_key_pem=params.get("ca_key_pem"),
            external_cas=_external_cas(params),
            now=daemon.clock.now(),
        )
        try:
            manager = daemon._start_manager(result.node, result.keyring, result.kek, result.node_key_pem)
            if not daemon.wait_for_leader(LEADER_WAIT):
                raise NoQuorum("the new manager did not become leader")
            manager.propose(bootstrap_actions(result))
            result.node.save(daemon.paths.state_file)
        except BaseException:
            daemon.become_inactive()
            raise
        daemon.log(f"initialized cluster {result.node.cluster_id} as manager {result.node.node_id}")
        return {
            "node_id": result.node.node_id,
            "cluster_id": result.node.cluster_id,
            "advertise_addr": advertise,
            "worker_token": str(result.worker_token),
            "unlock_key": str(result.unlock_key) if result.unlock_key else None,
        }


@method("join", allow=ADMIN)
def join(daemon: "Daemon", params: dict[str, Any]) -> dict[str, Any]:
    from ..node._daemon import INACTIVE

    with daemon.lock:
        if daemon.mode != INACTIVE:
            raise AlreadyInitialized()
        remote = _str(params, "remote_addr")
        host, port = split_host_port(remote, 2377)
        remote = f"{host}:{port}"
        listen, advertise = _addresses(daemon, params)
        result = join_cluster(
            daemon.paths,
            token_text=_str(params, "token"),
            manager_addr=remote,
            listen_addr=listen,
            advertise_addr=advertise,
        )
        node = result.node
        try:
            if node.role == MANAGER:
                manager = daemon._start_manager(node, result.keyring, result.kek, result.node_key_pem, joining=True)
                node.save(daemon.paths.state_file)
                with ClusterClient(
                    remote,
                    trusted_roots_pem=daemon.paths.root_ca.read_bytes(),
                    identity=manager.tls_identity(),
                    cluster_id=node.cluster_id,
                ) as client:
                    client.call("raft.join", {})
                if not manager.wait_applied(1, LEADER_WAIT) or not daemon.wait_for_leader(LEADER_WAIT):
                    raise NoQuorum("joined the Raft configuration but no leader was heard from")
            else:
                node.save(daemon.paths.state_file)
                daemon._start_worker(node)
        except BaseException:
            daemon.become_inactive()
            raise
        daemon.log(f"joined cluster {node.cluster_id} as {node.role} {node.node_id}")
        return {"node_id": node.node_id, "cluster_id": node.cluster_id, "role": node.role}


@method("unlock", allow=ADMIN_WHILE_LOCKED)
def unlock(daemon: "Daemon", params: dict[str, Any]) -> dict[str, Any]:
    daemon.unlock(str(params.get("key") or ""))
    return {"unlocked": True}


@method("leave", allow=ADMIN)
def leave(daemon: "Daemon", params: dict[str, Any]) -> dict[str, Any]:
    """Leave the cluster and erase this node's cluster data.

    A worker just leaves. A manager needs ``force``, as in Swarm: the safe way
    out is a demotion first. Forced, a manager whose leaving keeps a reachable
    quorum first leaves Raft properly (its record says worker, it hands
    leadership over if it leads, another manager takes it out of Raft), so
    that the records and Raft agree; one whose leaving would break quorum, or
    that cannot take part (locked, failed), just goes, and the answer carries
    the warning.
    """
    from ..node._daemon import FAILED, INACTIVE, LOCKED, MANAGER_MODE

    force = bool(params.get("force"))
    warning: str | None = None
    with daemon.lock:
        if daemon.mode == INACTIVE:
            raise NotInitialized()
        if daemon.mode in (LOCKED, FAILED) and not force:
            raise InvalidArgument(
                "this manager cannot take part in the cluster right now; use --force to leave anyway "
                "(the other managers keep it in their Raft configuration until you run \"raftstore node rm\" there)"
            )
        if daemon.mode == MANAGER_MODE:
            manager = daemon.require_manager()
            danger = _leave_danger(manager)
            if not force:
                raise InvalidArgument(
                    "You are attempting to leave the cluster on a node that is participating as a manager. "
                    + (danger or "The safe way to remove a manager is to demote it first (\"raftstore node demote\" "
                       "on another manager), then leave.")
                    + " Use --force to leave anyway."
                )
            warning = danger or _leave_raft(daemon, manager)
        daemon.become_inactive()
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


def _leave_raft(daemon: "Daemon", manager: "Manager") -> str | None:
    """Leave Raft properly before the data goes: record says worker, then out of the configuration."""
    node_id = manager.node.node_id
    try:
        _set_role(daemon, node_id, "worker")
        remove_manager(daemon, node_id, timeout=10.0)
    except RaftstoreError as error:
        return (
            f"this manager could not leave Raft properly ({error}); on another manager, run "
            f"\"raftstore node demote {node_id}\" or \"raftstore node rm --force {node_id}\""
        )
    return None


# ------------------------------------------------------------------ cluster settings


def update_cluster(
    daemon: "Daemon",
    mutate: Callable[[dict[str, Any], "Manager"], list[dict[str, Any]]],
    attempts: int = 5,
) -> dict[str, Any]:
    """Read the cluster object, change its spec with ``mutate`` and commit (retrying races)."""
    manager = daemon.require_manager()
    for attempt in range(attempts):
        state = manager.read_barrier()
        cluster = state.cluster()
        if cluster is None:
            raise NoQuorum("the cluster object is not committed yet")
        spec = _copy(cluster["spec"])
        extra = mutate(spec, manager)
        try:
            manager.propose(
                [{"op": "update", "table": "cluster", "id": cluster["id"], "version": cluster["version"], "spec": spec}]
                + extra
            )
            return spec
        except UpdateOutOfSequence:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


@method("join_token", allow=ADMIN)
def join_token(daemon: "Daemon", params: dict[str, Any]) -> dict[str, Any]:
    role = params.get("role")
    if role not in ("worker", "manager"):
        raise InvalidArgument("role must be worker or manager")
    manager = daemon.require_manager()
    if params.get("rotate"):

        def rotate(spec: dict[str, Any], _: "Manager") -> list[dict[str, Any]]:
            spec["join_tokens"][role] = str(JoinToken.parse(spec["join_tokens"][role]).rotated())
            return []

        spec = update_cluster(daemon, rotate)
        daemon.log(f"{role} join token rotated")
    else:
        spec = _committed_cluster_spec(daemon)
    return {
        "role": role,
        "token": spec["join_tokens"][role],
        "manager_addr": manager.node.advertise_addr,
        "rotated": bool(params.get("rotate")),
    }


@method("unlock_key", allow=ADMIN)
def unlock_key(daemon: "Daemon", params: dict[str, Any]) -> dict[str, Any]:
    current = _committed_cluster_spec(daemon)
    if not current.get("autolock"):
        raise InvalidArgument("no unlock key is set (autolock is off); turn it on with \"raftstore update --autolock=true\"")
    if params.get("rotate"):

        def rotate(spec: dict[str, Any], _: "Manager") -> list[dict[str, Any]]:
            if not spec.get("autolock"):
                raise InvalidArgument("no unlock key is set (autolock is off)")
            spec["unlock_key"] = str(UnlockKey.generate())
            spec["kek_version"] = int(spec.get("kek_version", 1)) + 1
            return []

        spec = update_cluster(daemon, rotate)
        daemon.log("unlock key rotated")
        return {"unlock_key": spec["unlock_key"], "rotated": True}
    return {"unlock_key": current["unlock_key"], "rotated": False}


@method("update", allow=ADMIN)
def update(daemon: "Daemon", params: dict[str, Any]) -> dict[str, Any]:
    autolock = params.get("autolock")
    expiry = _cert_expiry(params)
    rotate_dek = bool(params.get("rotate_dek"))
    add_cas, remove_cas = _external_cas(params), _external_cas(params, "external_ca_rm")
    if autolock is None and expiry is None and not rotate_dek and not add_cas and not remove_cas:
        raise InvalidArgument("nothing to update: give --autolock, --cert-expiry, --rotate-dek, --external-ca "
                              "or --external-ca-rm")
    outcome: dict[str, Any] = {}
    if add_cas:
        _check_new_external_cas(daemon, add_cas)

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

    spec = update_cluster(daemon, change)
    daemon.log("cluster settings updated" + (f"; data encryption key rotated to term {outcome['dek_term']}"
                                             if "dek_term" in outcome else ""))
    return {"autolock": bool(spec.get("autolock")), "cert_expiry_seconds": spec["cert_expiry_seconds"],
            "external_cas": [{"protocol": e["protocol"], "url": e["url"]} for e in spec.get("external_cas") or []],
            **outcome}


def _check_new_external_cas(daemon: "Daemon", options: list[Any]) -> None:
    """Before committing: the external CAs being added answer, and sign with the root that signs now."""
    from ..manager._ca_rotation import signing_root

    spec = _committed_cluster_spec(daemon)
    entries = updated_external_cas(spec, options, [])[-len(options):]
    require_answering(entries, signing_root(spec)[0].cert_pem)


# ------------------------------------------------------------------ nodes


def node_row(daemon: "Daemon", manager: "Manager", record: dict[str, Any]) -> dict[str, Any]:
    status = manager.status()
    members = {i for i, _ in status.get("members", [])}
    connected = set(status.get("connected", []))
    spec = record["spec"]
    node_id = record["id"]
    if spec.get("role") == "manager" or node_id in members:
        if node_id == status.get("leader"):
            manager_status = "Leader"
        elif node_id == manager.node.node_id or node_id in connected:
            manager_status = "Reachable"
        else:
            manager_status = "Unreachable"
        ready = manager_status != "Unreachable"
    else:
        manager_status = ""
        seen = daemon.heartbeats.get(node_id)
        ready = seen is not None and time.monotonic() - seen < 15.0
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


@method("node.ls", allow=ADMIN)
def node_ls(daemon: "Daemon", params: dict[str, Any]) -> list[dict[str, Any]]:
    state = _read(daemon, params)
    manager = daemon.require_manager()
    return [node_row(daemon, manager, r) for r in state.list("nodes")]


@method("node.inspect", allow=ADMIN)
def node_inspect(daemon: "Daemon", params: dict[str, Any]) -> dict[str, Any]:
    state = _read(daemon, params)
    manager = daemon.require_manager()
    return node_row(daemon, manager, state.get("nodes", _str(params, "node")))


def _set_role(daemon: "Daemon", ref: str, role: str, attempts: int = 5) -> dict[str, Any]:
    """Set a node's role on record; re-read and retry when the node's own renewal changed the record meanwhile."""
    manager = daemon.require_manager()
    for _ in range(attempts):
        record = manager.read_barrier().get("nodes", ref)
        spec = dict(record["spec"], role=role, desired_role=role)
        try:
            manager.propose(
                [{"op": "update", "table": "nodes", "id": record["id"], "version": record["version"], "spec": spec}]
            )
            return record
        except UpdateOutOfSequence:
            continue
    raise UpdateOutOfSequence()


@method("node.promote", allow=ADMIN)
def node_promote(daemon: "Daemon", params: dict[str, Any]) -> dict[str, Any]:
    record = _set_role(daemon, _str(params, "node"), "manager")
    daemon.log(f"node {record['id']} promoted to manager")
    return {"id": record["id"], "role": "manager"}


@method("node.demote", allow=ADMIN)
def node_demote(daemon: "Daemon", params: dict[str, Any]) -> dict[str, Any]:
    manager = daemon.require_manager()
    record = manager.read_barrier().get("nodes", _str(params, "node"))
    node_id = record["id"]
    members = {i for i, _ in manager.status().get("members", [])}
    if node_id in members:
        check_quorum_after_removal(manager, node_id)
    _set_role(daemon, node_id, "worker")
    if node_id in members:
        remove_manager(daemon, node_id)
    daemon.log(f"manager {node_id} demoted to worker")
    return {"id": node_id, "role": "worker"}


@method("node.rm", allow=ADMIN)
def node_rm(daemon: "Daemon", params: dict[str, Any]) -> dict[str, Any]:
    manager = daemon.require_manager()
    state = manager.read_barrier()
    record = state.get("nodes", _str(params, "node"))
    node_id = record["id"]
    if node_id == manager.node.node_id:
        raise InvalidArgument(
            f"can't remove node {node_id}: it is the manager you are talking to; "
            "run \"raftstore leave\" on it, or \"node rm\" on another manager"
        )
    row = node_row(daemon, manager, record)
    if row["status"] == "ready" and not params.get("force"):
        raise InvalidArgument(
            f"node {node_id} is not down and can't be removed; use --force to remove it anyway"
        )
    if record["spec"].get("role") == "manager" and not params.get("force"):
        raise InvalidArgument(
            f"node {node_id} is a manager; demote it first (\"raftstore node demote\") or use --force"
        )
    if node_id in {i for i, _ in manager.status().get("members", [])}:
        check_quorum_after_removal(manager, node_id)
        remove_manager(daemon, node_id)

    def forget(spec: dict[str, Any], _: "Manager") -> list[dict[str, Any]]:
        if node_id not in spec["removed_nodes"]:
            spec["removed_nodes"].append(node_id)
        current = manager.state.find("nodes", node_id)
        return [{"op": "delete", "table": "nodes", "id": node_id}] if current else []

    update_cluster(daemon, forget)
    daemon.heartbeats.pop(node_id, None)
    daemon.log(f"node {node_id} removed from the cluster")
    return {"id": node_id, "removed": True}


# ------------------------------------------------------------------ kv


def _value(params: dict[str, Any]) -> bytes:
    value = params.get("value")
    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, bytes):
        raise InvalidArgument("a value is required")
    return value


@method("kv.put", allow=ADMIN)
def kv_put(daemon: "Daemon", params: dict[str, Any]) -> dict[str, Any]:
    results = daemon.require_manager().propose(
        [{"op": "put", "key": _str(params, "key"), "value": _value(params)}],
        proposal_id=_proposal_id(params),
    )
    return results[0]


@method("kv.cas", allow=ADMIN)
def kv_cas(daemon: "Daemon", params: dict[str, Any]) -> dict[str, Any]:
    version = params.get("version")
    if not isinstance(version, int) or version < 0:
        raise InvalidArgument("version must be a whole number (0: the key must not exist)")
    results = daemon.require_manager().propose(
        [{"op": "cas", "key": _str(params, "key"), "value": _value(params), "version": version}],
        proposal_id=_proposal_id(params),
    )
    return results[0]


@method("kv.rm", allow=ADMIN)
def kv_rm(daemon: "Daemon", params: dict[str, Any]) -> dict[str, Any]:
    action: dict[str, Any] = {"op": "kv_delete", "key": _str(params, "key")}
    if params.get("version") is not None:
        action["version"] = int(params["version"])
    return daemon.require_manager().propose([action], proposal_id=_proposal_id(params))[0]


@method("kv.get", allow=ADMIN)
def kv_get(daemon: "Daemon", params: dict[str, Any]) -> dict[str, Any]:
    return dict(_read(daemon, params).kv_get(_str(params, "key")))


@method("kv.ls", allow=ADMIN)
def kv_ls(daemon: "Daemon", params: dict[str, Any]) -> list[dict[str, Any]]:
    prefix = params.get("prefix") or ""
    if not isinstance(prefix, str):
        raise InvalidArgument("prefix must be a string")
    return [dict(r) for r in _read(daemon, params).kv_list(prefix)]


def _proposal_id(params: dict[str, Any]) -> bytes | None:
    value = params.get("request_id")
    if value is None:
        return None
    if not isinstance(value, bytes) or len(value) != 16:
        raise InvalidArgument("request_id must be 16 bytes")
    return value


@method("events", allow=ADMIN)
def events(daemon: "Daemon", params: dict[str, Any]) -> Stream:
    """Events after ``since`` (default: now), optionally of one ``table`` and names starting with ``prefix``.

    ``since`` past the newest version waits for it when following, as an etcd
    watch does, and is refused with ``follow`` off (nothing could ever come).
    ``since`` below the compacted history names the oldest version left.
    """
    from ..state._state_machine import TABLES

    manager = daemon.require_manager()
    since = params.get("since")
    follow = params.get("follow", True)
    head = manager.read_barrier().applied_index
    if since is None:
        since = head
    if not isinstance(since, int) or since < 0:
        raise InvalidArgument("--since takes a version (a whole number)")
    until = params.get("until")
    if until is not None and (not isinstance(until, int) or until < since):
        raise InvalidArgument(f"--until takes a version no lower than --since ({since})")
    table, prefix = params.get("table"), params.get("prefix") or ""
    if table is not None and table not in TABLES:
        raise InvalidArgument(f"unknown table {table!r}: one of {', '.join(TABLES)}")
    if not isinstance(prefix, str):
        raise InvalidArgument("prefix must be a string")
    if since > head and not follow:
        raise InvalidArgument(f"version {since} is in the future: the newest version is {head}")
    state = manager.state
    state.events_since(since)  # raises now if that history is compacted

    def wanted(event: dict[str, Any]) -> bool:
        return (table is None or event["table"] == table) and event["name"].startswith(prefix)

    # The last version to stream: the head without follow (or --until if lower), --until with it, else none.
    last_version = until if follow else min(head, until if until is not None else head)

    def items(stop: Any) -> Any:
        if last_version is None:  # follow, no end: new events as they are applied
            yield from (item for item in manager.iter_events(since, stop) if wanted(item))
            return
        last = since
        while not stop.is_set():
            applied = state.applied_index  # before the events: none up to it can be missed
            for event in state.events_since(last):
                if event.version > last_version:
                    return
                last = event.version
                if wanted(event.to_dict()):
                    yield event.to_dict()
            if applied >= last_version:
                return
            with manager.applied:
                manager.applied.wait(0.5)

    return Stream(items)


@method("debug.digest", allow=ADMIN)
def debug_digest(daemon: "Daemon", params: dict[str, Any]) -> dict[str, Any]:
    """A hash of this manager's replicated state and the index it reflects (for convergence checks)."""
    state = daemon.require_manager().state
    with state.lock:
        return {"applied_index": state.applied_index, "digest": state.digest()}


@method("snapshot.save", allow=ADMIN)
def snapshot_save(daemon: "Daemon", params: dict[str, Any]) -> dict[str, Any]:
    from ..manager._backup import create_backup, read_backup

    data = create_backup(daemon.require_manager(), daemon.clock.stamp())
    backup = read_backup(data)
    daemon.log(f"backup written at index {backup.index}")
    return {"data": data, "index": backup.index, "cluster_id": backup.cluster_id, "autolock": backup.autolock}


@method("snapshot.restore", allow=ADMIN)
def snapshot_restore(daemon: "Daemon", params: dict[str, Any]) -> dict[str, Any]:
    from ..node._transitions import stage_restore
    from ..node._daemon import LOCKED

    data = params.get("data")
    if not isinstance(data, bytes):
        raise InvalidArgument("a backup file is required")
    with daemon.lock:
        listen, advertise = _addresses(daemon, params)
        node = stage_restore(daemon, data, force=bool(params.get("force")), listen_addr=listen,
                             advertise_addr=advertise)
        daemon.load()
        return {"node_id": node.node_id, "cluster_id": node.cluster_id, "locked": daemon.mode == LOCKED}


@method("ping", allow=ADMIN_WHILE_LOCKED)
def ping(daemon: "Daemon", params: dict[str, Any]) -> dict[str, Any]:
    return {"mode": daemon.mode}


def _not_found(what: str) -> RaftstoreError:
    return NotFound(what)


__all__ += ["update_cluster", "NodeState"]


# ------------------------------------------------------------------ CA


@method("ca", allow=ADMIN)
def ca(daemon: "Daemon", params: dict[str, Any]) -> dict[str, Any]:
    from ..manager._ca_rotation import rotation_status, start_rotation

    if params.get("rotate"):
        return start_rotation(daemon, daemon.clock.now(), params.get("ca_cert_pem"), params.get("ca_key_pem"),
                              _external_cas(params))
    if params.get("ca_cert_pem") or params.get("ca_key_pem") or params.get("external_cas"):
        raise InvalidArgument("--ca-cert, --ca-key and --external-ca only go with --rotate")
    return rotation_status(daemon, str(params.get("consistency") or "linearizable"))


@method("ca.issue_client", allow=ADMIN)
def ca_issue_client(daemon: "Daemon", params: dict[str, Any]) -> dict[str, Any]:
    """A client certificate for the remote control API (OU swarm-client), for the key in a CSR."""
    from ..manager._ca_rotation import trust_bundle
    from ..manager._external_ca import issue_node_certificate
    from ..keyring import CLIENT_ROLE, certificate_identity, new_id

    csr = params.get("csr_pem")
    if not isinstance(csr, bytes):
        raise InvalidArgument("a CSR is required")
    name = params.get("name") or f"client-{new_id()[:12]}"
    if not isinstance(name, str) or not 0 < len(name) <= 64:
        raise InvalidArgument("a client name is 1 to 64 characters")
    manager = daemon.require_manager()
    spec = _committed_cluster_spec(daemon)
    chain = issue_node_certificate(spec, csr, node_id=name, cluster_id=manager.node.cluster_id, role=CLIENT_ROLE,
                                   now=daemon.clock.now())
    serial = certificate_identity(chain).serial
    daemon.log(f"issued client certificate {name!r} (serial {serial}) for the remote control API")
    return {"cert_chain_pem": chain, "ca_pem": trust_bundle(spec), "name": name, "serial": serial}


@method("ca.issue_server", allow=ADMIN)
def ca_issue_server(daemon: "Daemon", params: dict[str, Any]) -> dict[str, Any]:
    """A daemon's server certificate for the remote control API (serverAuth only), naming the hosts
    clients dial, for the key in a CSR (``ca issue-server``)."""
    from ..manager._ca_rotation import signing_root, trust_bundle
    from ..keyring import issue_daemon_certificate, new_id

    csr, hosts = params.get("csr_pem"), params.get("sans")
    if not isinstance(csr, bytes):
        raise InvalidArgument("a CSR is required")
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
        raise InvalidArgument("--san takes a DNS name or an IP address")
    manager = daemon.require_manager()
    spec = _committed_cluster_spec(daemon)
    root, intermediates = signing_root(spec)
    if root.key_pem is None:
        raise InvalidArgument("the cluster does not hold its root key (external CA): have your CA sign a server "
                              "certificate with serverAuth and the hosts clients dial, and give it to daemon --tlscert")
    chain = issue_daemon_certificate(
        root,
        csr,
        name=f"daemon-{new_id()[:12]}",
        cluster_id=manager.node.cluster_id,
        hosts=hosts,
        now=daemon.clock.now(),
        validity=timedelta(seconds=int(spec["cert_expiry_seconds"])),
        intermediates_pem=intermediates,
    )
    daemon.log(f"issued a daemon certificate for {', '.join(hosts)} for the remote control API")
    return {"cert_chain_pem": chain, "ca_pem": trust_bundle(spec)}


@method("ca.revoke_client", allow=ADMIN)
def ca_revoke_client(daemon: "Daemon", params: dict[str, Any]) -> dict[str, Any]:
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

    update_cluster(daemon, revoke)
    daemon.log(f"client certificate {text} revoked")
    return {"serial": text, "revoked": True, "already_revoked": outcome["already"]}


@method("doctor", allow=ADMIN)
def doctor(daemon: "Daemon", params: dict[str, Any]) -> list[dict[str, str]]:
    from ._doctor import audit

    return [finding.to_dict() for finding in audit(daemon)]


# Methods for secrets and configs live in their own module; importing it registers them.
from . import _object_methods, _perf_methods, _txn_methods  # noqa: E402,F401
