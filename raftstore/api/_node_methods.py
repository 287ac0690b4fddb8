"""Control-API methods for nodes: list, inspect, promote, demote, remove.

The operator's command only changes a node's record (and, for a demotion or
removal of a manager, the Raft configuration, so that quorum is checked and
kept while the manager still answers); each node converges to its record by
itself (``node._transitions``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..keyring import InvalidArgument, UpdateOutOfSequence
from ..manager import check_quorum_after_removal, remove_manager, update_cluster
from ..storage import Role
from ._authz import ADMIN
from ._params import read_state, text_param
from ._registry import method
from ._views import node_row

if TYPE_CHECKING:
    from ..manager import Manager
    from ._host import Host

__all__ = ["set_node_role", "node_ls", "node_inspect", "node_promote", "node_demote", "node_rm"]


@method("node.ls", allow=ADMIN)
def node_ls(host: "Host", params: dict[str, Any]) -> list[dict[str, Any]]:
    state = read_state(host, params)
    manager = host.require_manager()
    return [node_row(manager, r, host.heartbeats) for r in state.list("nodes")]


@method("node.inspect", allow=ADMIN)
def node_inspect(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    state = read_state(host, params)
    manager = host.require_manager()
    return node_row(manager, state.get("nodes", text_param(params, "node")), host.heartbeats)


def set_node_role(manager: "Manager", ref: str, role: str, attempts: int = 5) -> dict[str, Any]:
    """Set a node's role on record; re-read and retry when the node's own renewal changed the record meanwhile.

    Returns the record as read before the change.
    """
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
def node_promote(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    ref = text_param(params, "node")
    record = set_node_role(host.require_manager(), ref, Role.MANAGER)
    host.log(f"node {record['id']} promoted to manager")
    return {"id": record["id"], "role": Role.MANAGER}


@method("node.demote", allow=ADMIN)
def node_demote(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    manager = host.require_manager()
    record = manager.read_barrier().get("nodes", text_param(params, "node"))
    node_id = record["id"]
    members = {i for i, _ in manager.status().get("members", [])}
    if node_id in members:
        check_quorum_after_removal(manager, node_id)
    set_node_role(manager, node_id, Role.WORKER)
    if node_id in members:
        remove_manager(manager, node_id)
    host.log(f"manager {node_id} demoted to worker")
    return {"id": node_id, "role": Role.WORKER}


@method("node.rm", allow=ADMIN)
def node_rm(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    manager = host.require_manager()
    state = manager.read_barrier()
    record = state.get("nodes", text_param(params, "node"))
    node_id = record["id"]
    if node_id == manager.node.node_id:
        raise InvalidArgument(
            f"can't remove node {node_id}: it is the manager you are talking to; "
            "run \"raftstore leave\" on it, or \"node rm\" on another manager"
        )
    row = node_row(manager, record, host.heartbeats)
    if row["status"] == "ready" and not params.get("force"):
        raise InvalidArgument(
            f"node {node_id} is not down and can't be removed; use --force to remove it anyway"
        )
    if record["spec"].get("role") == Role.MANAGER and not params.get("force"):
        raise InvalidArgument(
            f"node {node_id} is a manager; demote it first (\"raftstore node demote\") or use --force"
        )
    if node_id in {i for i, _ in manager.status().get("members", [])}:
        check_quorum_after_removal(manager, node_id)
        remove_manager(manager, node_id)

    def forget(spec: dict[str, Any], _: "Manager") -> list[dict[str, Any]]:
        if node_id not in spec["removed_nodes"]:
            spec["removed_nodes"].append(node_id)
        current = manager.state.find("nodes", node_id)
        return [{"op": "delete", "table": "nodes", "id": node_id}] if current else []

    update_cluster(manager, forget)
    host.heartbeats.pop(node_id, None)
    host.log(f"node {node_id} removed from the cluster")
    return {"id": node_id, "removed": True}
