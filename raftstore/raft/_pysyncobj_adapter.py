"""The old home of the Raft layer, now split by noun across ``raftstore.raft``.

Kept only so that existing ``from ..raft._pysyncobj_adapter import ...`` lines
in other packages keep working until they import the package surface
(``from ..raft import RaftConfig``); then this module goes. Nothing new
imports it.
"""

from __future__ import annotations

from ._current_keyring import CurrentKeyring
from ._envelope import ENTRY_TYPE
from ._node import FAIL_REASONS, RaftConfig, RaftNode
from ._seams import RaftMember
from ._snapshots import install_single_member, write_snapshot_file

#: The old, misleading name of ``CurrentKeyring`` (it is not ``keyring.KeySource``),
#: for importers not yet switched; it goes with this module.
KeySource = CurrentKeyring

__all__ = [
    "ENTRY_TYPE",
    "install_single_member",
    "write_snapshot_file",
    "FAIL_REASONS",
    "RaftConfig",
    "RaftMember",
    "RaftNode",
]
