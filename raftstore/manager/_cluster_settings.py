"""Cluster-wide settings: the cluster object's spec, read after a barrier and changed with retries.

Every cluster-wide setting (join tokens, the unlock key, autolock, certificate
expiry, external CAs, a CA rotation, removed nodes, revoked client
certificates) lives in the one cluster object. A change reads it through the
log, edits a copy and proposes it with the version it read; when another
change won the race (``UpdateOutOfSequence``) it reads again and re-applies,
a few times, since a setting is a function of the spec it is applied to.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

from ..keyring import NoQuorum, UpdateOutOfSequence

if TYPE_CHECKING:
    from ._manager import Manager

__all__ = ["ClusterMutation", "cluster_spec", "update_cluster"]

#: Changes a copy of the spec in place and returns more actions to commit with it (often none).
ClusterMutation = Callable[[dict[str, Any], "Manager"], list[dict[str, Any]]]


def cluster_spec(manager: "Manager") -> dict[str, Any]:
    """The cluster object's spec after a barrier: what every cluster-wide setting is read from.

    Raises:
        NoQuorum: the cluster object is not committed yet.
    """
    cluster = manager.read_barrier().cluster()
    if cluster is None:
        raise NoQuorum("the cluster object is not committed yet")
    spec: dict[str, Any] = cluster["spec"]
    return spec


def update_cluster(manager: "Manager", mutate: ClusterMutation, attempts: int = 5) -> dict[str, Any]:
    """Read the cluster object, change its spec with ``mutate`` and commit (retrying races); the new spec.

    Raises:
        NoQuorum: the cluster object is not committed yet.
        UpdateOutOfSequence: another change won the race ``attempts`` times.
    """
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
