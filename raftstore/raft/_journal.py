"""The sealed journal: pysyncobj's Raft log on our segment files.

pysyncobj keeps its log in a ``Journal`` object it builds itself (``_seams.py``
hands it this one instead). Memory holds pysyncobj's view (commands, indices,
terms); disk holds each command in its sealed on-disk form (``_envelope.py``),
chained to its index and term with a key derived from the DEK active when it
was appended (``keyring.LogChain``) and checked when the log is opened. Term,
vote and commit index live beside the log in ``meta``.

Nothing here is durable until ``sync``: the group-commit point. Only the
outbox (``_outbox.py``) calls it on the Raft path, before the messages and the
steps that depend on the disk.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

import msgpack
from pysyncobj.journal import Journal

from ..keyring import InvalidRecord, LogChain
from ..storage import SegmentLog, atomic_write
from ..telemetry import FSYNC_SECONDS
from ._envelope import EntryCodec

__all__ = ["SealedJournal"]


class SealedJournal(Journal):
    """pysyncobj's journal on our segment log (see the module docstring)."""

    def __init__(
        self, directory: Path, codec: EntryCodec, first_index: int, log_line: Callable[[str], None], fsync: bool = True
    ):
        self._dir = directory
        self._fsync = fsync
        self._codec = codec
        self._meta_path = directory / "meta"
        keys = codec.keys
        chain = LogChain(lambda: keys.keyring, keys.cluster_id)
        self._segments = SegmentLog.open(directory / "log", chain=chain, log=log_line)
        self._entries: list[tuple[bytes, int, int]] = []
        # (index, DEK term) of every record on disk, including the ones before
        # the first entry pysyncobj keeps, so that a term leaves the keyring
        # only when no record on this disk needs it.
        self._disk_keys: list[tuple[int, int]] = []
        for index, term, payload in self._segments.entries():
            self._disk_keys.append((index, codec.key_id(payload)))
            if index < first_index:
                continue
            where = f"{directory / 'log'} entry {index}"
            self._entries.append((codec.from_disk(payload, where), index, term))
        self._drop_before = 0  # segment files before this index are left to delete (compact_step)
        self._meta = self._read_meta()
        self._meta_dirty = False
        self._commit_dirty = False
        self._lock = threading.Lock()

    def _read_meta(self) -> dict[str, Any]:
        try:
            raw = self._meta_path.read_bytes()
        except FileNotFoundError:
            return {"term": 0, "voted_for": None, "commit_index": 1}
        try:
            meta = msgpack.unpackb(raw, raw=False)
            return {
                "term": int(meta["term"]),
                "voted_for": meta["voted_for"],
                "commit_index": int(meta["commit_index"]),
            }
        except Exception:
            raise InvalidRecord(f"raft state damaged: {self._meta_path}") from None

    def _write_meta(self) -> None:
        atomic_write(self._meta_path, msgpack.packb(self._meta))

    # pysyncobj's Journal interface -------------------------------------

    def add(self, command: bytes, idx: int, term: int) -> None:
        payload = self._codec.to_disk(command, idx)
        self._segments.append(idx, term, payload)
        self._entries.append((command, idx, term))
        self._disk_keys.append((idx, self._codec.key_id(payload)))

    def clear(self) -> None:
        self._entries = []
        self._disk_keys = []
        self._segments.reset([])

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        if entryFrom >= len(self._entries):
            return
        first_removed = self._entries[entryFrom][1]
        self._segments.truncate_after(first_removed - 1)
        del self._entries[entryFrom:]
        self._disk_keys = [(i, k) for i, k in self._disk_keys if i < first_removed]

    def deleteEntriesTo(self, entryTo: int) -> None:
        """pysyncobj's log compaction: forget the entries a snapshot now covers.

        Memory lets go at once; the segment files they fill go one per tick
        (``compact_step``): each deletion is made durable before the next, and
        a snapshot's worth of them at once held the tick thread for hundreds
        of milliseconds.
        """
        self._entries = self._entries[entryTo:]
        if self._entries:
            self._drop_before = self._entries[0][1]
            self.compact_step()

    def compact_step(self) -> None:
        """Delete at most one segment file that compaction left behind (the tick thread calls this every turn)."""
        if not self._drop_before or not self._segments.drop_before(self._drop_before, limit=1):
            self._drop_before = 0
            return
        segments = self._segments.segments()
        on_disk_from = segments[0].first_index if segments else self._drop_before
        self._disk_keys = [(i, k) for i, k in self._disk_keys if i >= on_disk_from]

    def __getitem__(self, item: Any) -> Any:
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    def _destroy(self) -> None:
        self.close()

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        if raftCommitIndex != self._meta["commit_index"]:
            self._meta["commit_index"] = raftCommitIndex
            self._commit_dirty = True

    def getRaftCommitIndex(self) -> int:
        last = self._entries[-1][1] if self._entries else 1
        return max(1, min(self._meta["commit_index"], last))

    def setCurrentTerm(self, term: int, votedForNodeId: Any) -> None:
        # Raft needs term and vote durable before any message that reflects
        # them leaves; sync() (the outbox calls it before every such send) writes them.
        self._meta["term"] = term
        self._meta["voted_for"] = votedForNodeId
        self._meta_dirty = True

    def getCurrentTerm(self) -> int:
        return self._meta["term"]

    def getVotedForNodeId(self) -> Any:
        return self._meta["voted_for"]

    def onOneSecondTimer(self) -> None:
        if self._commit_dirty:
            with self._lock:
                self._commit_dirty = False
                self._write_meta()

    # ours --------------------------------------------------------------

    def sync(self) -> None:
        """Make every append, truncation, term and vote durable (cheap when there are none)."""
        if self._fsync:  # off only in the benchmark control (see _benchmark_switches)
            started = time.perf_counter()
            if self._segments.sync():
                FSYNC_SECONDS.observe(time.perf_counter() - started)
        if self._meta_dirty:
            with self._lock:
                if self._meta_dirty:
                    self._meta_dirty = False
                    self._commit_dirty = False
                    self._write_meta()

    def close(self) -> None:
        """Sync and close the segment files (pysyncobj's ``_destroy``)."""
        self.sync()
        self._segments.close()

    def reset_to(self, prev: tuple[bytes, int, int], last: tuple[bytes, int, int]) -> None:
        """Replace the whole log with ``prev`` and ``last``, committed up to ``last`` (Raft must not run).

        For a one-member Raft installed beside a snapshot at ``last``
        (force-new-cluster, restoring a backup); durable once ``close`` returns.
        """
        self.clear()
        self.add(*prev)
        self.add(*last)
        self.setRaftCommitIndex(last[1])
        self._meta_dirty = True

    def entries(self) -> list[tuple[bytes, int, int]]:
        """A copy of the entries pysyncobj holds: ``(command, index, term)``."""
        return list(self._entries)

    def roll(self) -> None:
        self._segments.roll()

    def disk_bytes(self) -> int:
        return sum(segment.size_bytes for segment in self._segments.segments())

    def disk_key_ids(self) -> set[int]:
        """Every DEK term that seals a log record, or keys a chain tag, still on this disk."""
        return {key_id for _, key_id in self._disk_keys} | self._segments.chain_key_ids()
