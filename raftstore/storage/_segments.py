"""The Raft log on disk: appends, truncation, compaction, reset and group commit over segment files.

The bytes of a segment file (frames, headers, CRCs, the chain of tags) and the
scan that verifies them at open (what it accepts, what it refuses) are
``_segment_format``'s; this module writes what that one encodes, and decides
when each write, cut, creation and deletion reaches the disk.

Durability
==========

``append`` only writes. ``sync`` is the group-commit point: one fsync of the
active segment covers every append and truncation since the last sync, plus
one fsync of the directory when segment files were created or deleted. It
costs no system call when nothing is pending, so it can run before every
network message.

The operations that create or delete files order their steps so that a crash
at any moment leaves a log that opens, and is the old log, a prefix or suffix
of it, or (for ``reset``) a prefix of the new one:

- a segment's data and its directory entry are durable before the next
  segment is created (on a roll), so only the last segment can ever be torn;
  a new segment never appears before earlier creations and deletions are
  durable;
- files are deleted one at a time, newest first (``truncate_after``,
  ``reset``) or oldest first (``drop_before``), with a directory fsync
  between two deletions, and the deletions are durable before a surviving
  file is cut or a new one is created.

After a failed fsync nothing is known about what reached the disk (Linux may
drop the dirty pages and report success on a retry), so the log refuses all
further use with the same ``StorageError``; the node restarts and ``open``
verifies the disk again. The same holds for a failure in the middle of
``truncate_after``, ``drop_before`` or ``reset``. A failed append (a full disk)
is undone and leaves the log usable.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Callable, Iterable

from ..keyring import CHAIN_START, LogChain, StorageError
from ._discard import OrderedDeletions, remove_leftovers
from ._fsutil import cut_file, fsync_directory, make_private_dirs, open_append, storage_error, write_all
from ._segment_format import (
    FRAME_OVERHEAD,
    MAX_PAYLOAD,
    MAX_U64,
    SEGMENT_HEADER_SIZE,
    Repair,
    Segment,
    SegmentInfo,
    chain_head,
    encode_frame,
    encode_segment_header,
    first_index_of,
    last_index_of,
    list_segment_files,
    scan_segments,
    segment_file_name,
)

__all__ = ["SegmentLog", "SegmentInfo"]

_logger = logging.getLogger("raftstore.segments")


class SegmentLog(OrderedDeletions):
    """An append-only log of ``(index, term, payload)`` in segment files of one directory.

    Create it with ``SegmentLog.open``. Appends, truncations and rolls come
    from one thread (the Raft tick thread); ``sync`` may also be called from
    others. Every method takes the same lock.
    """

    def __init__(self, directory: Path, chain: LogChain, segment_bytes: int, log: Callable[[str], None]) -> None:
        self.directory = directory
        self._chain = chain
        self._segment_bytes = segment_bytes
        self._log = log
        self._segments: list[Segment] = []
        self._next_seq = 1
        self._fd: int | None = None  # the active (last) segment, O_APPEND
        self._loaded: list[tuple[int, int, bytes]] = []
        self._data_pending = False  # the active segment has unsynced writes or a cut
        self._dir_pending = False  # files were created or deleted since the last directory fsync
        self._unlink_unsynced = False  # a deletion is not yet durable (the next one waits for it)
        self._failed: StorageError | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def chain(self) -> LogChain:
        """What binds this log's entries to their place (a reopened log of the same directory needs it)."""
        return self._chain

    # ------------------------------------------------------------------ open

    @classmethod
    def open(
        cls,
        directory: os.PathLike[str] | str,
        *,
        chain: LogChain,
        segment_bytes: int = 64 * 2**20,
        log: Callable[[str], None] | None = None,
    ) -> "SegmentLog":
        """Open (or create) the log in ``directory``, verify every frame and its chain tag, repair a torn tail.

        ``chain`` signs appends with the active DEK term and checks what is
        read with the term each frame names.

        Raises:
            InvalidRecord: a segment is damaged anywhere but in a torn tail of
                the last one, or a record is not where it was appended;
                nothing on disk was changed.
            StorageError: the directory or a file cannot be read or written.
        """
        if segment_bytes < 1:
            raise ValueError("segment_bytes must be positive")
        directory = Path(directory)
        self = cls(directory, chain, segment_bytes, log if log is not None else _logger.warning)
        try:
            make_private_dirs(directory)
            found = list_segment_files(directory)
        except OSError as error:
            raise storage_error(error, directory, "opening the raft log in") from None
        scan = scan_segments(found, chain)
        self._segments, self._loaded = scan.segments, scan.entries
        # Everything checked out: only now may the disk change.
        try:
            remove_leftovers(directory)
            if scan.repair is not None:
                self._repair(scan.repair)
            if self._segments:  # appends continue in the last segment
                self._next_seq = self._segments[-1].seq + 1
                self._fd = open_append(self._segments[-1].path)
        except OSError as error:
            self.close_quietly()
            raise storage_error(error, directory, "opening the raft log in") from None
        return self

    def _repair(self, repair: Repair) -> None:
        cut_file(repair.path, repair.offset, repair.rewrite_header)
        self._log(
            f"raft log: cut a torn write of {repair.removed} bytes ({repair.what}) at the end of "
            f"{repair.path} at offset {repair.offset}; the entries before it are intact"
        )

    # ------------------------------------------------------------------ reading

    def entries(self) -> list[tuple[int, int, bytes]]:
        """Every ``(index, term, payload)`` found by ``open``, in order; handed over once (later calls return [])."""
        loaded, self._loaded = self._loaded, []
        return loaded

    @property
    def first_index(self) -> int | None:
        return first_index_of(self._segments)

    @property
    def last_index(self) -> int | None:
        return last_index_of(self._segments)

    def segments(self) -> list[SegmentInfo]:
        """The segment files in log order (the last one receives appends)."""
        with self._lock:
            return [s.info() for s in self._segments]

    def chain_key_ids(self) -> set[int]:
        """Every DEK term whose chain key tagged a frame still on disk (the keyring must keep them)."""
        with self._lock:
            return {key_id for segment in self._segments for key_id in set(segment.key_ids)}

    # ------------------------------------------------------------------ writing

    def append(self, index: int, term: int, payload: bytes) -> None:
        """Write one entry to the active segment; durable at the next ``sync``.

        A new segment, named for ``index``, is started first when there is no
        active one (a fresh log, after ``roll``, or after every segment went)
        or when this frame would take the active one past ``segment_bytes``
        (a segment always takes at least one frame). Leaving a full segment
        costs its fsync, once per ``segment_bytes``.

        Raises:
            ValueError: ``index`` does not follow the last index (unless the log
                is empty), or a field is out of range, or the log is closed.
            StorageError: the write failed (it was undone: the log is unchanged
                and usable), or the log failed earlier.
        """
        if not 0 <= index <= MAX_U64 or not 0 <= term <= MAX_U64:
            raise ValueError(f"index {index} or term {term} out of range")
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"payload of {len(payload)} bytes is too large for one frame")
        frame_size = FRAME_OVERHEAD + len(payload)
        with self._lock:
            self._check_usable()
            last = self.last_index
            if last is not None and index != last + 1:
                raise ValueError(f"append of entry {index} after entry {last}")
            if self._fd is not None:
                active = self._segments[-1]
                if active.offsets and active.size + frame_size > self._segment_bytes:
                    self._roll_locked()
            key_id, tag = self._chain.sign(index, term, chain_head(self._segments), payload)
            frame = encode_frame(index, term, key_id, payload, tag)
            if self._fd is None:
                self._guard(lambda: self._create_segment(index), self.directory, "creating a segment in", fatal=False)
            active = self._segments[-1]
            fd = self._fd
            assert fd is not None
            try:
                write_all(fd, frame)
            except OSError as error:
                failure = storage_error(error, active.path, "appending to")
                try:
                    os.ftruncate(fd, active.size)  # leave no partial frame behind
                except OSError:
                    raise self._fail(failure) from None
                raise failure from None
            active.add_frame(index, key_id, tag, len(frame))
            self._data_pending = True

    def sync(self) -> bool:
        """Make every append, truncation, creation and deletion so far durable.

        One fsync of the active segment and, if files were created or deleted,
        one of the directory. Returns whether anything was pending; when
        nothing is, no system call is made.

        Raises:
            StorageError: an fsync failed; the log refuses all further use.
        """
        if not (self._data_pending or self._dir_pending):
            return False
        with self._lock:
            self._check_usable()
            return self._sync_locked()

    def _sync_locked(self) -> bool:
        did = False
        fd = self._fd
        if self._data_pending and fd is not None:
            self._guard(lambda: os.fsync(fd), self._segments[-1].path, "syncing")
            did = True
        self._data_pending = False
        if self._dir_pending:
            self._guard(self._dir_barrier, self.directory, "syncing")
            did = True
        return did

    def roll(self) -> None:
        """Close the active segment; the next append starts a new one.

        A no-op while the active segment holds no entry. The segment it
        leaves is made durable first (data and directory entry), so that no
        segment but the last can ever end torn.

        Raises:
            StorageError: the fsync failed; the log refuses all further use.
        """
        with self._lock:
            self._check_usable()
            if self._fd is not None and self._segments[-1].offsets:
                self._roll_locked()

    def _roll_locked(self) -> None:
        self._sync_locked()
        self._close_fd()

    def truncate_after(self, index: int) -> None:
        """Remove every entry after ``index`` (Raft conflict resolution); durable at the next ``sync``.

        The segment holding ``index`` is cut right after its frame and takes
        the next append; later segment files are deleted first, newest first,
        and their deletion is durable before the cut. An ``index`` before the
        first entry deletes every segment.

        Raises:
            StorageError: a step failed; the disk holds a log that opens (the
                old one or a prefix of it), and this object refuses further use.
        """
        with self._lock:
            self._check_usable()
            last = self.last_index
            if last is None or index >= last:
                return
            self._guard(lambda: self._truncate_after_locked(index), self.directory, "truncating the raft log in")

    def _truncate_after_locked(self, index: int) -> None:
        keep = -1  # position of the segment that will hold ``index``
        for position, segment in enumerate(self._segments):
            if segment.offsets and segment.first_index is not None and segment.first_index <= index:
                keep = position
        doomed = self._segments[keep + 1 :]
        if doomed:
            self._close_fd()
            for segment in reversed(doomed):
                self._ordered_unlink(segment.path)
                self._segments.pop()
        if keep < 0:
            return  # nothing left; the next append creates a segment
        if doomed:
            self._dir_barrier()  # never a cut segment followed by stale ones
        segment = self._segments[-1]
        if self._fd is None:
            self._fd = open_append(segment.path)
        assert segment.first_index is not None
        frames = index - segment.first_index + 1
        if frames < segment.count:
            new_size = segment.offsets[frames]
            os.ftruncate(self._fd, new_size)
            segment.keep_frames(frames)
            segment.size = new_size
            self._data_pending = True

    def drop_before(self, index: int, limit: int | None = None) -> list[Path]:
        """Delete the segment files whose entries are all before ``index`` (log compaction), at most ``limit`` of them.

        Returns the deleted paths, oldest first. The segment holding ``index``
        and every later one stay; entries before ``index`` in the segment that
        holds it stay on disk too (callers skip them). When every entry is
        before ``index`` every segment goes and the next append starts a new
        one. Deletions are made oldest first, each durable before the next;
        the last one is durable at the next ``sync``.

        Raises:
            StorageError: a deletion failed; the disk holds a log that opens (a
                suffix of the old one), and this object refuses further use.
        """
        with self._lock:
            self._check_usable()
            covered = 0
            for segment in self._segments:
                last = segment.last_index
                if last is not None and last >= index:
                    break
                covered += 1
            if limit is not None:
                covered = min(covered, limit)
            if not covered:
                return []
            dropped: list[Path] = []

            def drop() -> None:
                while len(dropped) < covered:
                    segment = self._segments[0]
                    if len(self._segments) == 1:
                        self._close_fd()
                    self._ordered_discard(segment.path)
                    self._segments.pop(0)
                    dropped.append(segment.path)
                if not self._segments:
                    self._data_pending = False  # what was pending went with the files

            self._guard(drop, self.directory, "dropping old segments in")
            return dropped

    def reset(self, entries: Iterable[tuple[int, int, bytes]]) -> None:
        """Replace the whole log by ``entries`` (a snapshot was installed); durable on return.

        Old segment files are deleted newest first, each deletion durable
        before the next, then one fresh segment is written and synced; its
        chain starts anew. A crash leaves the old log, a prefix of it, or a
        prefix of ``entries``.

        Raises:
            ValueError: the indices of ``entries`` are not consecutive or a
                field is out of range.
            StorageError: a step failed; this object refuses further use.
        """
        frames = []
        previous = None
        tag = CHAIN_START
        for index, term, payload in entries:
            if previous is not None and index != previous + 1:
                raise ValueError(f"reset with entry {index} after entry {previous}")
            if not 0 <= index <= MAX_U64 or not 0 <= term <= MAX_U64 or len(payload) > MAX_PAYLOAD:
                raise ValueError(f"entry {index}: field out of range")
            key_id, tag = self._chain.sign(index, term, tag, payload)
            frames.append((index, key_id, tag, encode_frame(index, term, key_id, payload, tag)))
            previous = index
        with self._lock:
            self._check_usable()

            def replace() -> None:
                self._close_fd()
                while self._segments:
                    self._ordered_unlink(self._segments[-1].path)
                    self._segments.pop()
                self._data_pending = False
                if frames:
                    segment = self._create_segment(frames[0][0])
                    assert self._fd is not None
                    write_all(self._fd, b"".join(frame for *_, frame in frames))
                    for index, key_id, tag, frame in frames:
                        segment.add_frame(index, key_id, tag, len(frame))
                self._sync_locked()

            self._guard(replace, self.directory, "resetting the raft log in")

    def close(self) -> None:
        """Sync what is pending and close the active segment; idempotent.

        Raises:
            StorageError: the final sync failed (the file is closed anyway).
        """
        with self._lock:
            if self._closed:
                return
            try:
                if self._failed is None:
                    self._sync_locked()
            finally:
                self._closed = True
                self._close_fd()

    def close_quietly(self) -> None:
        """Close without syncing (after an error)."""
        with self._lock:
            self._closed = True
            self._close_fd()

    # ------------------------------------------------------------------ helpers

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise self._failed
        if self._closed:
            raise ValueError(f"the raft log in {self.directory} is closed")

    def _fail(self, error: StorageError) -> StorageError:
        if self._failed is not None:
            return self._failed
        self._failed = StorageError(f"{error}; the raft log in {self.directory} must be reopened")
        self._data_pending = True  # so that sync() reaches the check and raises
        return self._failed

    def _guard(self, step: Callable[[], object], path: Path, doing: str, fatal: bool = True) -> None:
        """Run ``step``; turn an OSError into a StorageError (and, if ``fatal``, poison the log)."""
        try:
            step()
        except OSError as error:
            failure = storage_error(error, path, doing)
            raise (self._fail(failure) if fatal else failure) from None
        except StorageError as error:  # from fsync_directory
            raise (self._fail(error) if fatal else error) from None

    def _create_segment(self, first_index: int) -> Segment:
        """Create the next segment (header written, fd kept as the active one).

        Every earlier creation and deletion is made durable first: a new
        segment never appears on disk next to files that should be gone, or
        without the segments before it. Its anchor continues the chain of the
        segment before it; with none left, the chain starts anew.
        """
        if self._dir_pending:
            self._guard(self._dir_barrier, self.directory, "syncing")
        seq = self._next_seq
        path = self.directory / segment_file_name(seq, first_index)
        anchor = chain_head(self._segments)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            write_all(fd, encode_segment_header(anchor))
        except OSError:
            # a file without its magic must neither stay behind nor block a retry
            os.close(fd)
            try:
                os.unlink(path)
            except OSError:
                pass
            raise
        self._next_seq = seq + 1
        self._close_fd()
        self._fd = fd
        segment = Segment(path, seq, SEGMENT_HEADER_SIZE, anchor)
        self._segments.append(segment)
        self._dir_pending = True
        self._data_pending = True
        return segment

    def _dir_barrier(self) -> None:
        fsync_directory(self.directory)
        self._dir_pending = False
        self._unlink_unsynced = False

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
