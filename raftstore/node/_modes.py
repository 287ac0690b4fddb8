"""What a daemon is doing right now: its mode, a leaf every layer above may read.

The mode follows the data directory (see the daemon's module doc). The values
are the strings ``info`` reports as ``state`` and ``ping`` as ``mode``, so
they are wire format: a ``StrEnum`` keeps them plain strings for msgpack, JSON
and logs, and lets a comparison with the literal still hold.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Mode"]


class Mode(StrEnum):
    #: No ``state.json``: serves ``info``, ``init`` and ``join``.
    INACTIVE = "inactive"
    #: A manager whose keys need the unlock key: no Raft, no key in memory.
    LOCKED = "locked"
    #: Raft running; serves everything.
    MANAGER = "manager"
    #: A member without Raft: heartbeats to managers, reads secrets.
    WORKER = "worker"
    #: A manager that met damage it will not guess around; ``info`` says why.
    FAILED = "failed"

