"""Changing a node's role: promotion, demotion, a manager leaving Raft.

As in SwarmKit, the node record holds the role the cluster wants
(``desired_role``) and each node converges to it by itself: a worker whose
record says manager renews its certificate as a manager, fetches the keys and
joins Raft; a manager whose record says worker leaves Raft, wipes its keys and
log, and renews as a worker. A role change always makes a new key pair: a
demoted manager's key would otherwise sit in plain PEM on a worker's disk
while its manager certificate stays valid, and a promoted worker's key was
plain on disk before it became a manager's. The operator's command only
changes the record (and, for a demotion, the Raft configuration, so that
quorum is checked and kept while the manager still answers).

pysyncobj cannot remove the leader from the configuration, so removing the
leader first hands leadership to a caught-up follower.
"""

from __future__ import annotations

import shutil
import time
from typing import TYPE_CHECKING, Any

from ._bootstrap import fetch_keys
from ..net._cluster_client import ClusterClient, call_any_manager
from ..storage._keystore import KeyStore
from ..storage._node_state import MANAGER, WORKER
from ._renewal import install_pair, issued_identity
from ..net._tls import TlsIdentity
from ..keyring import (
    MANAGER_ROLE,
    InvalidArgument,
    NoQuorum,
    RaftstoreError,
    Unavailable,
    generate_private_key,
    make_csr,
)

if TYPE_CHECKING:
    from ._daemon import Daemon
    from ..manager._manager import Manager

__all__ = ["check_quorum_after_removal", "remove_manager", "become_worker", "become_manager", "ask_for_readmission"]


def check_quorum_after_removal(manager: "Manager", node_id: str) -> None:
    """Refuse a removal that would leave fewer reachable managers than a quorum."""
    status = manager.status()
    members = [i for i, _ in status.get("members", [])]
    if node_id not in members:
        return
    remaining = [m for m in members if m != node_id]
    if not remaining:
        raise InvalidArgument("can't remove the last manager of the cluster")
    connected = set(status.get("connected", []))
    reachable = [m for m in remaining if m == manager.node.node_id or m in connected]
    needed = len(remaining) // 2 + 1
    if len(reachable) < needed:
        raise InvalidArgument(
            f"can't remove node {node_id}: it would leave {len(reachable)} reachable manager(s) of "
            f"{len(remaining)}, and a quorum needs {needed}"
        )


def _other_manager_call(daemon: "Daemon", exclude: str, method: str, params: dict[str, Any]) -> Any:
    manager = daemon.require_manager()
    return _manager_call(daemon, [a for i, a in manager.status().get("members", []) if i != exclude], method, params)


def _manager_call(daemon: "Daemon", addrs: list[str], method: str, params: dict[str, Any],
                  timeout: float = 15.0) -> Any:
    manager = daemon.require_manager()
    return call_any_manager(
        addrs,
        method,
        params,
        trusted_roots_pem=daemon.paths.root_ca.read_bytes(),
        identity=manager.tls_identity(),
        cluster_id=manager.node.cluster_id,
        timeout=timeout,
    )


def remove_manager(daemon: "Daemon", node_id: str, timeout: float = 20.0) -> None:
    """Take ``node_id`` out of the Raft configuration, moving leadership off it first."""
    manager = daemon.require_manager()
    me = manager.node.node_id
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = manager.status()
        members = dict((i, a) for i, a in status.get("members", []))
        if node_id not in members:
            return
        leader = status.get("leader")
        if leader is None:
            time.sleep(0.2)
            continue
        if leader == node_id:
            if node_id == me:
                manager.raft.transfer_leadership()
            else:
                try:  # the leader itself: any other manager would just say it does not lead
                    _manager_call(daemon, [members[node_id]], "raft.step_down", {"node_id": node_id})
                except RaftstoreError:
                    pass
            _wait(lambda: manager.status().get("leader") not in (None, node_id), 5.0)
            continue
        if node_id == me:
            # Ask another manager: a node cannot propose its own removal to itself.
            _other_manager_call(daemon, me, "raft.remove", {"node_id": node_id})
        else:
            manager.change_membership(False, node_id, members[node_id], timeout=max(1.0, deadline - time.monotonic()))
        return
    raise NoQuorum(f"manager {node_id} could not be removed from the Raft configuration in time")


def ask_for_readmission(daemon: "Daemon", manager: "Manager") -> str | None:
    """Cut off from the leader: ask another manager what our record says, and if manager, to be in Raft.

    A manager that Raft removed while its record said worker, and whose record
    then said manager again (a promote racing a demote), is a running manager
    that no leader talks to. Asking to join again is what a promoted worker
    does too (``raft.join`` adds it only if missing, and only for a manager on
    record). Returns the role on record, as the other manager sees it.
    """
    me = manager.node.node_id
    addrs = [a for i, a in manager.status().get("members", []) if i != me]
    addrs += [a for a in manager.node.manager_addrs if a not in addrs and a != manager.node.advertise_addr]
    if not addrs:
        return None
    reply = _manager_call(daemon, addrs, "node.heartbeat", {}, timeout=3.0) or {}
    desired = reply.get("desired_role")
    if desired == "manager" and manager.node.advertise_addr not in reply.get("manager_addrs", []):
        daemon.log("this manager is missing from the Raft configuration: asking to be added back")
        _manager_call(daemon, addrs, "raft.join", {})
    return desired if isinstance(desired, str) else None


def _wait(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def _renew(identity: TlsIdentity, addrs: list[str], cluster_id: str) -> tuple[dict[str, Any], bytes]:
    """A certificate, with the role this node's record now names, for a new key; returns (reply, key)."""
    key = generate_private_key()
    reply = call_any_manager(
        addrs,
        "node.renew",
        {"csr_pem": make_csr(key)},
        trusted_roots_pem=identity.trusted_roots_pem,
        identity=identity,
        cluster_id=cluster_id,
    )
    return reply, key


def become_worker(daemon: "Daemon") -> None:
    """This manager was demoted: leave Raft's files behind and carry on as a worker, with a new key."""
    with daemon.lock:
        manager = daemon.manager
        node = daemon.node
        if manager is None or node is None or node.role != MANAGER:
            return
        identity = manager.tls_identity()
        addrs = [a for i, a in manager.status().get("members", []) if i != node.node_id] or list(node.manager_addrs)
        reply, key = _renew(identity, addrs, node.cluster_id)
        if reply.get("role") == MANAGER_ROLE:
            daemon.renewer.install(reply, key)  # the record changed back meanwhile: a plain renewal
            return
        daemon.log("demoted: leaving Raft and continuing as a worker")
        daemon._stop_roles()
        install_pair(daemon, bytes(reply["cert_chain_pem"]), key, None)  # replaces the manager's key
        for folder in (daemon.paths.raft, daemon.paths.keys):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(mode=0o700)
        worker = node.replace(role=WORKER, bootstrap_members=[], manager_addrs=[str(a) for a in reply["manager_addrs"]])
        worker.save(daemon.paths.state_file)
        daemon._start_worker(worker)


def become_manager(daemon: "Daemon") -> None:
    """This worker was promoted: new key and certificate, keys, Raft."""
    with daemon.lock:
        agent = daemon.worker
        node = daemon.node
        if agent is None or node is None or node.role != WORKER:
            return
        identity = agent.identity()
        reply, key = _renew(identity, list(agent.node.manager_addrs), node.cluster_id)
        if reply.get("role") != MANAGER_ROLE:
            daemon.renewer.install(reply, key)  # the record changed back meanwhile: a plain renewal
            return
        chain = bytes(reply["cert_chain_pem"])
        issued_identity(daemon, chain)
        manager_identity = TlsIdentity(chain, key, identity.trusted_roots_pem)
        addrs = [str(a) for a in reply["manager_addrs"]]
        keyring = kek = autolock = None
        last_error: RaftstoreError = Unavailable("no manager reachable")
        for addr in addrs:
            try:
                keyring, kek, autolock = fetch_keys(addr, manager_identity, node.cluster_id)
                break
            except RaftstoreError as error:
                last_error = error
        if keyring is None or kek is None:
            raise last_error
        daemon.log("promoted: joining Raft as a manager")
        daemon._stop_roles()
        # The keyring first, then the new key with its certificate (crash-safe pair), as a renewal installs them.
        KeyStore(daemon.paths, node.cluster_id).save(keyring, kek, autolock=bool(autolock), node_key_pem=key,
                                                     cert_chain_pem=chain)
        manager_node = node.replace(
            role=MANAGER,
            bootstrap_members=[list(m) for m in reply["members"]],
            manager_addrs=addrs,
        )
        manager_node.save(daemon.paths.state_file)
        manager = daemon._start_manager(manager_node, keyring, kek, key, joining=True)
        call_any_manager(
            addrs,
            "raft.join",
            {},
            trusted_roots_pem=identity.trusted_roots_pem,
            identity=manager.tls_identity(),
            cluster_id=node.cluster_id,
        )
        daemon.log("promotion complete: this node is a manager")


__all__ += ["ClusterClient"]
