"""``init --force-new-cluster``: recover from quorum loss on a surviving manager.

When most managers are gone for good, the survivors can never commit again.
This rebuilds a one-manager Raft configuration from this manager's own data,
as ``docker swarm init --force-new-cluster`` does: every committed record is
kept (Raft's commit index on this disk is the line), entries this manager
appended but never saw committed are dropped, and the other managers leave the
configuration (their records become workers', so that nothing adds them back).
They can rejoin with a fresh join token afterwards.

How: stop Raft, write a snapshot of the state at the commit index whose Raft
configuration lists only this manager, and start Raft again on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..manager._membership import demote_absent_managers
from ..keyring import InvalidArgument, NoQuorum

if TYPE_CHECKING:
    from ._daemon import Daemon

__all__ = ["force_new_cluster"]


def force_new_cluster(daemon: "Daemon") -> dict[str, Any]:
    from ._daemon import MANAGER_MODE

    if daemon.mode != MANAGER_MODE or daemon.manager is None or daemon.node is None:
        raise InvalidArgument(
            "--force-new-cluster needs a running, unlocked manager of the cluster to rebuild "
            "(unlock it first if it is locked)"
        )
    manager = daemon.manager
    node = daemon.node
    keyring, kek, node_key = manager.keys.keyring, manager.kek, manager.node_key_pem
    daemon.log("force-new-cluster: stopping Raft to rebuild a one-manager configuration")
    with daemon.cluster_service.membership.hold():
        manager.stop()
        daemon._stop_roles()
        applied = manager.raft.rewrite_as_single_member(manager.state.encode(), manager.state.applied_index)
        # Membership is rebuilt from the rewritten snapshot; the bootstrap list must agree.
        node = node.replace(bootstrap_members=[[node.node_id, node.advertise_addr]],
                            manager_addrs=[node.advertise_addr])
        node.save(daemon.paths.state_file)
        restarted = daemon._start_manager(node, keyring, kek, node_key)
        if not daemon.wait_for_leader(15.0):
            raise NoQuorum("the rebuilt manager did not elect itself leader")
        # The other managers carry the old history: workers on record, so nothing adds them back.
        demote_absent_managers(restarted)
    daemon.log(f"force-new-cluster: this manager is the only member, state kept up to index {applied}")
    return {"node_id": node.node_id, "cluster_id": node.cluster_id, "applied_index": applied}
