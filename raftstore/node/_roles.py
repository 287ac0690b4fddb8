"""Kept only until the API layer imports from the new homes (issue 13): nothing here is new.

Role transitions live in _transitions; taking a manager out of Raft and its
quorum check live in manager/_membership, where they take the manager itself.
"""

from __future__ import annotations

from ..manager._membership import check_quorum_after_removal
from ..manager._membership import remove_manager as _remove_manager
from ._delivery import RunningManager

__all__ = ["check_quorum_after_removal", "remove_manager"]


def remove_manager(daemon: RunningManager, node_id: str, timeout: float = 20.0) -> None:
    """manager/_membership's ``remove_manager`` for this node's running manager (refused in any other mode)."""
    _remove_manager(daemon.require_manager(), node_id, timeout)
