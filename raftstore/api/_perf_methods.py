"""The daemon's side of ``raftstore check perf`` (see ``_check_perf``): two admin methods.

``perf.stats`` is a snapshot of this process's commit and fsync histograms,
its leader-change counter and Raft's state (on the leader, how far each other
manager's log reaches); ``perf.cleanup`` deletes the load's keys, and only
those (the reserved prefix), in one transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..telemetry import FSYNC_SECONDS, LEADER_CHANGES, PROPOSAL_SECONDS, counter_value, histogram_snapshot
from ..tools import PERF_PREFIX
from ._authz import ADMIN
from ._registry import method

if TYPE_CHECKING:
    from ._host import Host

__all__ = ["perf_stats", "perf_cleanup"]


@method("perf.stats", allow=ADMIN)
def perf_stats(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    """What ``check perf`` compares before and after its load: this process's series and Raft's state."""
    manager = host.require_manager()
    status = manager.status()
    return {
        "node_id": manager.node.node_id,
        "leader": status.get("leader"),
        "is_leader": bool(status.get("is_leader")),
        "term": status.get("term"),
        "commit_index": status.get("commit_index"),
        "members": [node_id for node_id, _ in status.get("members", [])],
        "match_index": dict(status.get("match_index") or {}),
        "leader_changes": counter_value(LEADER_CHANGES),
        "commit_seconds": histogram_snapshot(PROPOSAL_SECONDS),
        "fsync_seconds": histogram_snapshot(FSYNC_SECONDS),
    }


@method("perf.cleanup", allow=ADMIN)
def perf_cleanup(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    """Delete the keys ``check perf`` loads wrote (under ``PERF_PREFIX`` only), a few thousand per transaction."""
    manager = host.require_manager()
    keys = [record["key"] for record in manager.read_barrier().kv_list(PERF_PREFIX)]
    for start in range(0, len(keys), _DELETES_PER_TRANSACTION):
        manager.propose([{"op": "kv_delete", "key": key} for key in keys[start:start + _DELETES_PER_TRANSACTION]])
    return {"deleted": len(keys)}


#: Far below the 1.5 MiB transaction limit with the load's short keys.
_DELETES_PER_TRANSACTION = 5000
