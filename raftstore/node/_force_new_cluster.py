"""Kept only until the API layer imports from the new home (issue 13): see _transitions.force_new_cluster."""

from __future__ import annotations

from ._transitions import force_new_cluster

__all__ = ["force_new_cluster"]
