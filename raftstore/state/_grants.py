"""Grants: which node may read which secret or config, decided from the store alone.

A secret's or config's ``spec.grants`` lists the node ids that may read it.
The cluster service (a worker asking over the cluster port), the control API
(``secret.read`` on a manager) and delivery to files all ask here, so that a
node without a grant learns the same nothing everywhere: ``permission
denied``, whether or not the object exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..keyring import PermissionDenied

if TYPE_CHECKING:
    from ._state_machine import StateMachine

__all__ = ["read_granted", "granted_objects", "GRANTABLE_TABLES"]

#: The tables whose objects are granted to nodes.
GRANTABLE_TABLES = ("secrets", "configs")


def read_granted(state: "StateMachine", table: str, node_id: str, ref: str) -> bytes:
    """The data of secret or config ``ref`` if ``node_id`` holds a grant; otherwise nothing about it.

    Raises:
        PermissionDenied: no such object, or no grant to ``node_id`` (the same answer for both).
    """
    obj = state.find_exact(table, ref)
    if obj is None or node_id not in obj["spec"].get("grants", []):
        raise PermissionDenied("permission denied")
    return bytes(obj["spec"]["data"])


def granted_objects(state: "StateMachine", node_id: str) -> dict[str, list[dict[str, Any]]]:
    """What is granted to ``node_id``: per table, each object's id, name and version (never its data)."""
    return {table: [{"id": o["id"], "name": o["name"], "version": o["version"]}
                    for o in state.list(table) if node_id in o["spec"].get("grants", [])]
            for table in GRANTABLE_TABLES}
