"""raftstore.raft: Raft for the managers, on pysyncobj, with everything it writes sealed.

What this package owns:

- every use of pysyncobj, and in one module (``_seams.py``) every use of its
  private internals; no other package imports pysyncobj;
- the entry envelope (``_envelope.py``): an entry id and a sealed record, or
  the unsealed marker of the benchmark control; the manager builds and opens
  entries only through ``seal_envelope``, ``unsealed_envelope`` and
  ``parse_envelope``;
- the sealed journal (``_journal.py``): pysyncobj's log on our segment files;
- sealed snapshots (``_snapshots.py``): taking, loading and receiving them,
  written only through ``storage``'s snapshot file;
- persist-before-send (``_outbox.py``): ``Outbox.send`` is the one path of
  every outgoing Raft message and the durability duty's description;
- the Raft transport between managers (``_raft_transport.py``, mutual TLS);
- ``RaftNode`` (``_node.py``), which wires these together and runs the tick
  thread; the manager holds one.

The callers' side of the contract is on ``RaftNode``: the callbacks it runs
on the tick thread, and ``CurrentKeyring``, the keyring in force that the
manager swaps when keys change.
"""

from ._current_keyring import CurrentKeyring
from ._envelope import Envelope, parse_envelope, seal_envelope, unsealed_envelope
from ._node import FAIL_REASONS, RaftConfig, RaftNode
from ._raft_transport import DIAL_MAP_ENV
from ._snapshot_format import snapshot_key_id
from ._snapshots import install_single_member

__all__ = [
    "CurrentKeyring",
    "DIAL_MAP_ENV",
    "Envelope",
    "FAIL_REASONS",
    "RaftConfig",
    "RaftNode",
    "install_single_member",
    "parse_envelope",
    "seal_envelope",
    "snapshot_key_id",
    "unsealed_envelope",
]
