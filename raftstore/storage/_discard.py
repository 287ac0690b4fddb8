"""Unlinking files on a thread of its own: the segment files compaction takes out of the Raft log.

Unlinking a large file frees its blocks and its cached pages, which takes
tens of milliseconds, more beside heavy writes; the Raft tick thread cannot
wait that long. A segment leaves the log by a rename to ``*.seg.dropped``
(``SegmentLog._ordered_discard``), and this thread unlinks it later; a file a
crash left behind is removed when the log is next opened.
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path

__all__ = ["DROPPED_SUFFIX", "OrderedDeletions", "discard_later", "remove_leftovers"]

#: The suffix of a segment file taken out of the log and waiting to be unlinked.
DROPPED_SUFFIX = ".dropped"
_discards: "queue.SimpleQueue[Path]" = queue.SimpleQueue()
_discarder: threading.Thread | None = None
_discarder_lock = threading.Lock()


def discard_later(path: Path) -> None:
    """Unlink ``path`` on the discarder thread (started on first use); a failure only leaves the file."""
    global _discarder
    _discards.put(path)
    with _discarder_lock:
        if _discarder is None or not _discarder.is_alive():
            _discarder = threading.Thread(target=_discard_forever, name="segment-discarder", daemon=True)
            _discarder.start()


def _discard_forever() -> None:
    while True:
        path = _discards.get()
        try:
            os.unlink(path)
        except OSError:
            pass  # gone already, or the disk refuses: the next open removes it


def remove_leftovers(directory: Path) -> None:
    """Unlink what a crash left renamed but not yet unlinked in ``directory`` (the log's open calls this)."""
    for leftover in directory.glob("*" + DROPPED_SUFFIX):
        try:
            os.unlink(leftover)
        except FileNotFoundError:
            pass  # the discarder thread got there first (an earlier open of this log, in this process)


class OrderedDeletions:
    """How ``SegmentLog`` deletes its files: one at a time, each durable before the next.

    The log provides ``_dir_barrier`` (a directory fsync) and the two flags.
    """

    _unlink_unsynced: bool
    _dir_pending: bool

    def _dir_barrier(self) -> None:
        raise NotImplementedError

    def _ordered_unlink(self, path: Path) -> None:
        if self._unlink_unsynced:
            self._dir_barrier()  # deletions reach the disk in the order they are made
        os.unlink(path)
        self._unlink_unsynced = True
        self._dir_pending = True

    def _ordered_discard(self, path: Path) -> None:
        """``_ordered_unlink``, but a rename: the unlink itself is slow, and another thread's (``_discard.py``)."""
        if self._unlink_unsynced:
            self._dir_barrier()
        trash = path.with_name(path.name + DROPPED_SUFFIX)
        os.rename(path, trash)
        self._unlink_unsynced = True
        self._dir_pending = True
        discard_later(trash)
