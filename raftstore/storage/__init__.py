"""raftstore.storage: everything a node keeps on its own disk, and the only code that lays it out.

It owns the data directory (``StatePaths``, ``default_data_dir``) and
``state.json`` (``NodeState``: what this node is); ``keys/`` and the node key
(``KeyStore``, the only writer of ``keys/``); the Raft log's segment files
(``SegmentLog``: frames, the chain of tags, group commit); snapshot files; and
the durable-write helpers everything above uses (``atomic_write``: a crash
leaves the old file or the new one). Payloads arrive sealed: this package
never sees a key it did not store. It imports only ``keyring``, for the error
tree and the log chain.
"""

from __future__ import annotations

from ..keyring import surface


# The public names of each module, listed here so that __all__ needs no import: a
# name loads with its module on first use (tests/test_package_surfaces.py checks
# this table against each module's __all__).
_PUBLIC = {
    "_paths": ["default_data_dir"],
    "_node_state": ["StatePaths", "NodeState", "Role"],
    "_keystore": ["KeyStore"],
    "_segments": ["SegmentLog"],
    "_snapshot_file": ["encode_snapshot", "decode_snapshot", "read_snapshot", "write_snapshot", "SnapshotWriter",
                       "SnapshotReader", "MAX_CHUNK_BYTES"],
    "_fsutil": ["atomic_write", "discard_temporary", "fsync_directory"],
    "_benchmark_switches": ["BenchmarkSwitches"],
}

_LAZY = {name: f".{module}" for module, names in _PUBLIC.items() for name in names}

__all__ = [*_LAZY]


__getattr__, __dir__ = surface(__name__, _LAZY)
