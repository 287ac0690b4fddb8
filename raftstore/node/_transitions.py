"""Every way a node's role changes, in one place.

A node is inactive, a manager or a worker (see _modes). These functions move
it between them, and each one is called with the node's lock held or takes
it:

- ``start_manager``, ``start_worker``, ``stop_roles``: the building blocks;
  ``open_manager`` starts a manager whose keys are open (the daemon's start
  and ``unlock``), finishing a pending restore first;
- ``join_raft``: the tail every manager's join shares (``join`` with a
  manager token, a promoted worker): state.json, Raft started without
  elections, then a manager asked to add this node;
- ``become_manager``, ``become_worker``, ``ask_for_readmission``: promotion
  and demotion, converging on the node record;
- ``force_new_cluster``: a one-manager configuration rebuilt after quorum loss;
- ``stage_restore``, ``complete_restore``: a one-manager cluster rebuilt from a
  backup (the backup's format is manager/_backup's).

Promotion and demotion: as in SwarmKit, the node record holds the role the
cluster wants (``desired_role``) and each node converges to it by itself: a
worker whose record says manager renews its certificate as a manager, fetches
the keys and joins Raft; a manager whose record says worker leaves Raft, wipes
its keys and log, and renews as a worker. A role change always makes a new key
pair: a demoted manager's key would otherwise sit in plain PEM on a worker's
disk while its manager certificate stays valid, and a promoted worker's key was
plain on disk before it became a manager's. The operator's command only
changes the record (and, for a demotion, the Raft configuration, so that
quorum is checked and kept while the manager still answers).

``init --force-new-cluster``: when most managers are gone for good, the
survivors can never commit again. This rebuilds a one-manager Raft
configuration from this manager's own data, as ``docker swarm init
--force-new-cluster`` does: every committed record is kept (Raft's commit
index on this disk is the line), entries this manager appended but never saw
committed are dropped, and the other managers leave the configuration (their
records become workers', so that nothing adds them back). They can rejoin with
a fresh join token afterwards. How: stop Raft, write a snapshot of the state at
the commit index whose Raft configuration lists only this manager, and start
Raft again on it.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import msgpack

from ..keyring import (
    MANAGER_ROLE,
    InvalidArgument,
    InvalidRecord,
    KeyEncryptionKey,
    Keyring,
    NoQuorum,
    RaftstoreError,
    generate_private_key,
    make_csr,
    new_id,
)
from ..manager import (
    PENDING_RESTORE,
    Manager,
    ask_managers,
    demote_absent_managers,
    issue_node_certificate,
    read_backup,
    write_pending_restore,
)
from ..net import ClusterListener, TlsIdentity, call_any_manager, try_each_manager
from ..raft import CurrentKeyring, install_single_member
from ..state import StateMachine
from ..storage import KeyStore, NodeState, Role, StatePaths, atomic_write
from ._bootstrap import clear_partial, fetch_keys, node_record_action
from ._clock import Clock
from ._modes import Mode
from ._renewal import install_certificate, install_pair, issued_identity
from ._worker import WorkerAgent

if TYPE_CHECKING:
    from ._host import NodeHost

__all__ = [
    "start_manager", "stop_roles", "start_worker", "open_manager", "join_raft",
    "become_manager", "become_worker", "ask_for_readmission", "force_new_cluster",
    "stage_restore", "complete_restore", "restored_node_record",
]


# ------------------------------------------------------------------ starting and stopping roles


def start_manager(host: "NodeHost", node: NodeState, keyring: Any, kek: Any, node_key_pem: bytes, *,
                  joining: bool = False) -> Manager:
    """Start Raft and the cluster port for ``node``; ``joining`` holds elections until a leader adds it."""
    keystore = KeyStore(host.paths, node.cluster_id)
    manager = Manager(
        paths=host.paths,
        node=node,
        keystore=keystore,
        keyring=keyring,
        kek=kek,
        node_key_pem=node_key_pem,
        clock=host.clock.stamp,
        on_fatal=host.on_manager_fatal,
        raft_config=host.raft_config,
        event_log=host.log,
        hold_elections=joining,
        fetch_keyring=lambda: _fetch_keyring_from_peers(host, node),
        on_root_change=host.on_root_change,
        benchmark=host.benchmark,
    )
    host.manager = manager
    host.node = node
    host.reset_tls()  # the cluster port serves this manager's certificate
    listener = ClusterListener(
        node.listen_addr,
        server_context=host.server_context,
        check_raft=host.admit_raft_peer,
        adopt_raft=lambda sock, ident: manager.raft.adopt_connection(ident.node_id, sock),
        on_api=host.cluster_service.handle,
        log=host.log,
    )
    try:
        listener.start()
    except RaftstoreError:
        manager.stop()
        host.manager = None
        raise
    host.listener = listener
    manager.start()
    host.mode = Mode.MANAGER
    host.log(f"manager {node.node_id} started (cluster {node.cluster_id}, listening on {node.listen_addr})")
    return manager


def _fetch_keyring_from_peers(host: "NodeHost", node: NodeState) -> Any:
    """The keyring from another manager (a DEK rotation this manager missed while it was down)."""
    manager = host.manager
    assert manager is not None
    members = [tuple(m) for m in manager.status().get("members", [])] or [tuple(m) for m in node.bootstrap_members]
    return try_each_manager(
        [address for node_id, address in members if node_id != node.node_id],
        lambda address: fetch_keys(address, manager.tls_identity(), node.cluster_id, timeout=3.0)[0],
        move_on=RaftstoreError,
        none_known="no other manager is known",
    )


def stop_roles(host: "NodeHost") -> None:
    """Stop the cluster port, Raft and the heartbeat, whichever run."""
    if host.listener is not None:
        host.listener.stop()
        host.listener = None
    if host.manager is not None:
        host.manager.stop()
        host.manager = None
    if host.worker is not None:
        host.worker.stop()
        host.worker = None


def start_worker(host: "NodeHost", node: NodeState) -> None:
    """Start the heartbeat of a worker."""

    def adopt(changed: NodeState) -> None:
        host.node = changed

    keystore = KeyStore(host.paths, node.cluster_id)
    host.worker = WorkerAgent(node, keystore.read_node_key(None), host.paths, log=host.log,
                              trust_bundle=host.install_trust_bundle, renew_now=host.renewer.request,
                              node_changed=adopt)
    host.worker.start()
    host.node = node
    host.mode = Mode.WORKER
    host.log(f"worker {node.node_id} started (cluster {node.cluster_id})")


def open_manager(host: "NodeHost", node: NodeState, keystore: KeyStore, keyring: Any, kek: Any) -> None:
    """Start the manager whose keys are open; first finish a restore from a backup if one is pending."""
    if not (host.paths.root / PENDING_RESTORE).exists():
        start_manager(host, node, keyring, kek, keystore.read_node_key(kek if keystore.needs_unlock_key() else None))
        return
    node_key = complete_restore(host.paths, node, keyring, kek, clock=host.clock, log=host.log)
    with host.cluster_service.membership.hold():  # the backup's other managers are another history now
        manager = start_manager(host, node, keyring, kek, node_key)
        if host.wait_for_leader(15.0):
            if manager.read_barrier().find("nodes", node.node_id) is None:
                manager.propose([restored_node_record(node)])
            demote_absent_managers(manager)


def join_raft(host: "NodeHost", node: NodeState, keyring: Any, kek: Any, node_key_pem: bytes,
              manager_addrs: list[str]) -> Manager:
    """The tail of a manager's join: state.json, Raft started without elections, then a manager adds us.

    The keys must be on disk already. A crash after state.json is written
    leaves a manager that no leader knows; its cut-off check asks to be added
    (``ask_for_readmission``).
    """
    node.save(host.paths.state_file)
    manager = start_manager(host, node, keyring, kek, node_key_pem, joining=True)
    call_any_manager(
        manager_addrs,
        "raft.join",
        {},
        trusted_roots_pem=host.paths.root_ca.read_bytes(),
        identity=manager.tls_identity(),
        cluster_id=node.cluster_id,
    )
    return manager


# ------------------------------------------------------------------ promotion and demotion


def ask_for_readmission(host: "NodeHost", manager: Manager) -> str | None:
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
    reply = ask_managers(manager, addrs, "node.heartbeat", {}, timeout=3.0) or {}
    desired = reply.get("desired_role")
    if desired == Role.MANAGER and manager.node.advertise_addr not in reply.get("manager_addrs", []):
        host.log("this manager is missing from the Raft configuration: asking to be added back")
        ask_managers(manager, addrs, "raft.join", {})
    return desired if isinstance(desired, str) else None


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


def become_worker(host: "NodeHost") -> None:
    """This manager was demoted: leave Raft's files behind and carry on as a worker, with a new key."""
    with host.lock:
        manager = host.manager
        node = host.node
        if manager is None or node is None or node.role != Role.MANAGER:
            return
        identity = manager.tls_identity()
        addrs = [a for i, a in manager.status().get("members", []) if i != node.node_id] or list(node.manager_addrs)
        reply, key = _renew(identity, addrs, node.cluster_id)
        if reply.get("role") == MANAGER_ROLE:
            install_certificate(host, reply, key)  # the record changed back meanwhile: a plain renewal
            return
        host.log("demoted: leaving Raft and continuing as a worker")
        stop_roles(host)
        install_pair(host.paths, node, bytes(reply["cert_chain_pem"]), key, None)  # replaces the manager's key
        for folder in (host.paths.raft, host.paths.keys):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(mode=0o700)
        worker = node.replace(role=Role.WORKER, bootstrap_members=[], manager_addrs=[str(a) for a in reply["manager_addrs"]])
        worker.save(host.paths.state_file)
        start_worker(host, worker)


def become_manager(host: "NodeHost") -> None:
    """This worker was promoted: new key and certificate, keys, Raft."""
    with host.lock:
        agent = host.worker
        node = host.node
        if agent is None or node is None or node.role != Role.WORKER:
            return
        identity = agent.identity()
        reply, key = _renew(identity, list(agent.node.manager_addrs), node.cluster_id)
        if reply.get("role") != MANAGER_ROLE:
            install_certificate(host, reply, key)  # the record changed back meanwhile: a plain renewal
            return
        chain = bytes(reply["cert_chain_pem"])
        issued_identity(node, chain)
        manager_identity = TlsIdentity(chain, key, identity.trusted_roots_pem)
        addrs = [str(a) for a in reply["manager_addrs"]]
        keyring, kek, autolock = try_each_manager(
            addrs,
            lambda addr: fetch_keys(addr, manager_identity, node.cluster_id),
            move_on=RaftstoreError,
            none_known="no manager reachable",
        )
        host.log("promoted: joining Raft as a manager")
        stop_roles(host)
        # The keyring first, then the new key with its certificate (crash-safe pair), as a renewal installs them.
        KeyStore(host.paths, node.cluster_id).save(keyring, kek, autolock=bool(autolock), node_key_pem=key,
                                                   cert_chain_pem=chain)
        manager_node = node.replace(
            role=Role.MANAGER,
            bootstrap_members=[list(m) for m in reply["members"]],
            manager_addrs=addrs,
        )
        join_raft(host, manager_node, keyring, kek, key, addrs)
        host.log("promotion complete: this node is a manager")


# ------------------------------------------------------------------ one-manager rebuilds


def force_new_cluster(host: "NodeHost") -> dict[str, Any]:
    """Rebuild a one-manager Raft configuration from this manager's committed state (see the module doc)."""
    if host.mode != Mode.MANAGER or host.manager is None or host.node is None:
        raise InvalidArgument(
            "--force-new-cluster needs a running, unlocked manager of the cluster to rebuild "
            "(unlock it first if it is locked)"
        )
    manager = host.manager
    node = host.node
    keyring, kek, node_key = manager.keys.keyring, manager.kek, manager.node_key_pem
    host.log("force-new-cluster: stopping Raft to rebuild a one-manager configuration")
    with host.cluster_service.membership.hold():
        manager.stop()
        stop_roles(host)
        applied = manager.raft.rewrite_as_single_member(manager.state.snapshot_parts(), manager.state.applied_index)
        # Membership is rebuilt from the rewritten snapshot; the bootstrap list must agree.
        node = node.replace(bootstrap_members=[[node.node_id, node.advertise_addr]],
                            manager_addrs=[node.advertise_addr])
        node.save(host.paths.state_file)
        restarted = start_manager(host, node, keyring, kek, node_key)
        if not host.wait_for_leader(15.0):
            raise NoQuorum("the rebuilt manager did not elect itself leader")
        # The other managers carry the old history: workers on record, so nothing adds them back.
        demote_absent_managers(restarted)
    host.log(f"force-new-cluster: this manager is the only member, state kept up to index {applied}")
    return {"node_id": node.node_id, "cluster_id": node.cluster_id, "applied_index": applied}


def stage_restore(host: "NodeHost", data: bytes, *, force: bool, listen_addr: str, advertise_addr: str) -> NodeState:
    """Write what the restored node needs to open (keys, state.json, the pending backup); nothing Raft yet.

    Restoring on a fresh node, or with ``force`` over a node of another
    cluster, makes that node the only manager of the backup's cluster at the
    backup's position; with autolock it starts locked and the source
    cluster's unlock key opens it. ``complete_restore`` finishes once the keys
    are open.
    """
    backup = read_backup(data)
    node = host.node
    if node is not None and not force:
        if node.cluster_id != backup.cluster_id:
            raise InvalidArgument(
                f"this backup is of cluster {backup.cluster_id}, and this node belongs to cluster {node.cluster_id}; "
                "use --force to replace this node's data with it"
            )
        raise InvalidArgument(
            f"this node is already part of cluster {node.cluster_id}; restoring replaces its data: use --force"
        )
    host.become_inactive()
    clear_partial(host.paths)
    write_pending_restore(host.paths, backup, data)
    restored = NodeState.sole_manager(backup.cluster_id, new_id(), listen_addr, advertise_addr)
    restored.save(host.paths.state_file)
    return restored


def complete_restore(paths: StatePaths, node: NodeState, keyring: Keyring, kek: KeyEncryptionKey, *,
                     clock: Clock, log: Callable[[str], None]) -> bytes:
    """With the keys open: certificates for this node, and a one-member Raft at the backup's position.

    Returns the node's private key (PEM). The pending file is removed last, so
    a crash anywhere before that repeats the whole step.
    """
    pending: Path = paths.root / PENDING_RESTORE
    backup = read_backup(pending.read_bytes(), str(pending))
    state_bytes = backup.open_state(keyring)
    state = StateMachine()
    state.load(msgpack.unpackb(state_bytes, raw=False))
    cluster = state.cluster()
    if cluster is None:
        raise InvalidRecord(f"{pending} holds no cluster object")
    spec = cluster["spec"]
    key_pem = generate_private_key()
    chain = issue_node_certificate(spec, make_csr(key_pem), node_id=node.node_id, cluster_id=node.cluster_id,
                                   role=MANAGER_ROLE, now=clock.now())
    atomic_write(paths.root_ca, spec["root_ca"]["cert_pem"], mode=0o644)
    atomic_write(paths.node_cert, chain, mode=0o644)
    keystore = KeyStore(paths, node.cluster_id)
    keystore.write_node_key(key_pem, None if keystore.has_plain_kek() else kek)
    last = (bytes([1]), backup.index, backup.term)
    prev = (bytes([1]), backup.index - 1, backup.term)
    install_single_member(
        paths.raft, CurrentKeyring(keyring, node.cluster_id), last, prev, (node.node_id, node.advertise_addr),
        state.snapshot_parts(), log,
    )
    pending.unlink()
    log(f"restored cluster {node.cluster_id} from a backup at index {backup.index}; this node is its only manager")
    return key_pem


def restored_node_record(node: NodeState) -> dict[str, Any]:
    """The record a restored manager writes for itself once it leads (the backup's copy named another node)."""
    return node_record_action(node.node_id, Role.MANAGER, node.advertise_addr, socket.gethostname())
