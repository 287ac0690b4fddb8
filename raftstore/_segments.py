"""The Raft log on disk: segment files of checksummed frames around sealed records.

This module alone owns the byte layout below. Payloads are opaque here: the
layer above has already sealed them.

Segment files live in one directory and are named
``<seq:016x>-<first index:016x>.seg``; sorted names are log order (the
sequence number decides; the first index is informational: a segment is
created by the append of its first entry, and named for it). Each file starts
with the 8-byte magic ``RSSEG001`` and then holds frames::

    offset  size
    0       4   payload length (big-endian)
    4       8   Raft index (big-endian)
    12      8   Raft term (big-endian)
    20      4   header CRC-32C, over bytes 0..19
    24      n   payload
    24+n    4   payload CRC-32C, over length | index | term | payload

The header has its own checksum so that a flipped byte in the length field is
told apart from a torn write. Indices are consecutive across the whole log.

What open() accepts
===================

- A torn write at the very end of the LAST segment -- fewer than 24 header
  bytes, a valid header whose payload runs past the end of the file, a tail of
  zero bytes, or a file that is a strict prefix of the magic -- is cut off
  (ftruncate + fsync), and ``log`` gets one line naming the file, the offset
  and the number of bytes removed.
- Anything else that does not check out refuses start-up with
  ``InvalidRecord("raft log damaged: <file> at offset <n>: <reason>")``: a bad
  magic, a header or payload checksum mismatch (even in the last complete
  frame), a gap or a step back in the indices, a torn frame in any earlier
  segment. Nothing is changed on disk in that case.

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
import re
import struct
import threading
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import crc32c

from ._fsutil import fsync_directory, storage_error
from .keyring import InvalidRecord, StorageError

__all__ = ["SegmentLog", "SegmentInfo", "MAGIC"]

MAGIC = b"RSSEG001"
_HEADER_BODY = struct.Struct(">IQQ")  # length, index, term
_HEADER = struct.Struct(">IQQI")  # ... and the header CRC
_CRC = struct.Struct(">I")
HEADER_SIZE = _HEADER.size  # 24
FRAME_OVERHEAD = _HEADER.size + _CRC.size  # 28
_MAX_PAYLOAD = 2**32 - 1
_MAX_U64 = 2**64 - 1
_NAME_RE = re.compile(r"([0-9a-f]{16})-([0-9a-f]{16})\.seg")

_logger = logging.getLogger("raftstore.segments")


@dataclass(frozen=True)
class SegmentInfo:
    """One segment file as it stands (``first_index``/``last_index`` are None when it holds no entry)."""

    path: Path
    first_index: int | None
    last_index: int | None
    size_bytes: int


@dataclass
class _Segment:
    path: Path
    seq: int
    size: int
    first_index: int | None = None  # of the first frame it holds (None while empty)
    offsets: array = field(default_factory=lambda: array("Q"))  # byte offset of each frame, in index order

    @property
    def count(self) -> int:
        return len(self.offsets)

    @property
    def last_index(self) -> int | None:
        if self.first_index is None or not self.offsets:
            return None
        return self.first_index + len(self.offsets) - 1

    def info(self) -> SegmentInfo:
        return SegmentInfo(self.path, self.first_index if self.offsets else None, self.last_index, self.size)


def _frame(index: int, term: int, payload: bytes) -> bytes:
    body = _HEADER_BODY.pack(len(payload), index, term)
    body_crc = crc32c.crc32c(body)
    return b"".join(
        (body, _CRC.pack(body_crc), payload, _CRC.pack(crc32c.crc32c(payload, value=body_crc)))
    )


def _damaged(path: Path, offset: int, reason: str) -> InvalidRecord:
    return InvalidRecord(f"raft log damaged: {path} at offset {offset}: {reason}")


@dataclass
class _Repair:
    path: Path
    offset: int  # cut here
    removed: int
    what: str
    rewrite_magic: bool = False


class SegmentLog:
    """An append-only log of ``(index, term, payload)`` in segment files of one directory.

    Create it with ``SegmentLog.open``. Appends, truncations and rolls come
    from one thread (the Raft tick thread); ``sync`` may also be called from
    others. Every method takes the same lock.
    """

    def __init__(self, directory: Path, segment_bytes: int, log: Callable[[str], None]) -> None:
        self.directory = directory
        self._segment_bytes = segment_bytes
        self._log = log
        self._segments: list[_Segment] = []
        self._next_seq = 1
        self._fd: int | None = None  # the active (last) segment, O_APPEND
        self._loaded: list[tuple[int, int, bytes]] = []
        self._data_pending = False  # the active segment has unsynced writes or a cut
        self._dir_pending = False  # files were created or deleted since the last directory fsync
        self._unlink_unsynced = False  # a deletion is not yet durable (the next one waits for it)
        self._failed: StorageError | None = None
        self._closed = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ open

    @classmethod
    def open(
        cls,
        directory: os.PathLike[str] | str,
        *,
        segment_bytes: int = 64 * 2**20,
        log: Callable[[str], None] | None = None,
    ) -> "SegmentLog":
        """Open (or create) the log in ``directory``, verify every frame and repair a torn tail.

        Raises:
            InvalidRecord: a segment is damaged anywhere but in a torn tail of
                the last one; nothing on disk was changed.
            StorageError: the directory or a file cannot be read or written.
        """
        if segment_bytes < 1:
            raise ValueError("segment_bytes must be positive")
        directory = Path(directory)
        self = cls(directory, segment_bytes, log if log is not None else _logger.warning)
        try:
            _make_private_dirs(directory)
            found = self._list_segments()
        except OSError as error:
            raise storage_error(error, directory, "opening the raft log in") from None
        repair: _Repair | None = None
        for position, (seq, path) in enumerate(found):
            repair = self._scan(path, seq, last=position == len(found) - 1)
        # Everything checked out: only now may the disk change.
        try:
            if repair is not None:
                self._repair(repair)
            if self._segments:  # appends continue in the last segment
                self._next_seq = self._segments[-1].seq + 1
                self._fd = _open_append(self._segments[-1].path)
        except OSError as error:
            self.close_quietly()
            raise storage_error(error, directory, "opening the raft log in") from None
        return self

    def _list_segments(self) -> list[tuple[int, Path]]:
        found: dict[int, Path] = {}
        for entry in os.scandir(self.directory):
            if not entry.name.endswith(".seg"):
                continue
            path = self.directory / entry.name
            match = _NAME_RE.fullmatch(entry.name)
            if match is None:
                raise _damaged(path, 0, "not a segment file name (<seq:016x>-<first index:016x>.seg)")
            seq = int(match.group(1), 16)
            if seq in found:
                raise _damaged(path, 0, f"a second segment with sequence number {seq} (the other is {found[seq]})")
            found[seq] = path
        return sorted(found.items())

    def _scan(self, path: Path, seq: int, last: bool) -> _Repair | None:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise storage_error(error, path, "reading") from None
        end = len(data)
        segment = _Segment(path, seq, end)
        if not data.startswith(MAGIC):
            if last and MAGIC.startswith(data):  # torn while the segment was being created
                segment.size = len(MAGIC)
                self._segments.append(segment)
                return _Repair(path, 0, end, "an incomplete segment header", rewrite_magic=True)
            raise _damaged(path, 0, "not a raftstore log segment (bad magic)")
        previous = self.last_index
        view = memoryview(data)
        pos = len(MAGIC)
        repair: _Repair | None = None
        while pos < end:
            remaining = end - pos
            if remaining < HEADER_SIZE:
                if last:
                    what = "a zero-filled tail" if data.count(0, pos) == remaining else "an incomplete frame header"
                    repair = _Repair(path, pos, remaining, what)
                    break
                raise _damaged(path, pos, f"incomplete frame header ({remaining} of {HEADER_SIZE} bytes)")
            length, index, term, header_crc = _HEADER.unpack_from(data, pos)
            body_crc = crc32c.crc32c(view[pos : pos + _HEADER_BODY.size])
            if body_crc != header_crc:
                if last and data.count(0, pos) == remaining:
                    repair = _Repair(path, pos, remaining, "a zero-filled tail")
                    break
                raise _damaged(path, pos, "frame header checksum mismatch")
            frame_end = pos + FRAME_OVERHEAD + length
            if frame_end > end:
                if last:
                    repair = _Repair(path, pos, remaining, "an incomplete frame")
                    break
                raise _damaged(
                    path, pos, f"frame of {FRAME_OVERHEAD + length} bytes runs past the end of the file ({remaining} left)"
                )
            payload_end = frame_end - _CRC.size
            (payload_crc,) = _CRC.unpack_from(data, payload_end)
            if crc32c.crc32c(view[pos + HEADER_SIZE : payload_end], value=body_crc) != payload_crc:
                raise _damaged(path, pos, "payload checksum mismatch")
            if previous is not None and index != previous + 1:
                raise _damaged(path, pos, f"entry {index} where entry {previous + 1} should follow entry {previous}")
            if segment.first_index is None:
                segment.first_index = index
            segment.offsets.append(pos)
            self._loaded.append((index, term, data[pos + HEADER_SIZE : payload_end]))
            previous = index
            pos = frame_end
        if repair is not None:
            segment.size = repair.offset
        self._segments.append(segment)
        return repair

    def _repair(self, repair: _Repair) -> None:
        fd = os.open(repair.path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, repair.offset)
            if repair.rewrite_magic:
                _write_all(fd, MAGIC)
            os.fsync(fd)
        finally:
            os.close(fd)
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
        for segment in self._segments:
            if segment.offsets:
                return segment.first_index
        return None

    @property
    def last_index(self) -> int | None:
        for segment in reversed(self._segments):
            if segment.offsets:
                return segment.last_index
        return None

    def segments(self) -> list[SegmentInfo]:
        """The segment files in log order (the last one receives appends)."""
        with self._lock:
            return [s.info() for s in self._segments]

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
        if not 0 <= index <= _MAX_U64 or not 0 <= term <= _MAX_U64:
            raise ValueError(f"index {index} or term {term} out of range")
        if len(payload) > _MAX_PAYLOAD:
            raise ValueError(f"payload of {len(payload)} bytes is too large for one frame")
        frame = _frame(index, term, payload)
        with self._lock:
            self._check_usable()
            last = self.last_index
            if last is not None and index != last + 1:
                raise ValueError(f"append of entry {index} after entry {last}")
            if self._fd is not None:
                active = self._segments[-1]
                if active.offsets and active.size + len(frame) > self._segment_bytes:
                    self._roll_locked()
            if self._fd is None:
                self._guard(lambda: self._create_segment(index), self.directory, "creating a segment in", fatal=False)
            active = self._segments[-1]
            fd = self._fd
            assert fd is not None
            try:
                _write_all(fd, frame)
            except OSError as error:
                failure = storage_error(error, active.path, "appending to")
                try:
                    os.ftruncate(fd, active.size)  # leave no partial frame behind
                except OSError:
                    raise self._fail(failure) from None
                raise failure from None
            if not active.offsets:
                active.first_index = index
            active.offsets.append(active.size)
            active.size += len(frame)
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
            self._fd = _open_append(segment.path)
        assert segment.first_index is not None
        frames = index - segment.first_index + 1
        if frames < segment.count:
            new_size = segment.offsets[frames]
            os.ftruncate(self._fd, new_size)
            del segment.offsets[frames:]
            segment.size = new_size
            self._data_pending = True

    def drop_before(self, index: int) -> list[Path]:
        """Delete the segment files whose entries are all before ``index`` (log compaction).

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
            if not covered:
                return []
            dropped: list[Path] = []

            def drop() -> None:
                while len(dropped) < covered:
                    segment = self._segments[0]
                    if len(self._segments) == 1:
                        self._close_fd()
                    self._ordered_unlink(segment.path)
                    self._segments.pop(0)
                    dropped.append(segment.path)
                if not self._segments:
                    self._data_pending = False  # what was pending went with the files

            self._guard(drop, self.directory, "dropping old segments in")
            return dropped

    def reset(self, entries: Iterable[tuple[int, int, bytes]]) -> None:
        """Replace the whole log by ``entries`` (a snapshot was installed); durable on return.

        Old segment files are deleted newest first, each deletion durable
        before the next, then one fresh segment is written and synced. A crash
        leaves the old log, a prefix of it, or a prefix of ``entries``.

        Raises:
            ValueError: the indices of ``entries`` are not consecutive or a
                field is out of range.
            StorageError: a step failed; this object refuses further use.
        """
        frames = []
        previous = None
        for index, term, payload in entries:
            if previous is not None and index != previous + 1:
                raise ValueError(f"reset with entry {index} after entry {previous}")
            if not 0 <= index <= _MAX_U64 or not 0 <= term <= _MAX_U64 or len(payload) > _MAX_PAYLOAD:
                raise ValueError(f"entry {index}: field out of range")
            frames.append((index, _frame(index, term, payload)))
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
                    _write_all(self._fd, b"".join(frame for _, frame in frames))
                    segment.first_index = frames[0][0]
                    for _, frame in frames:
                        segment.offsets.append(segment.size)
                        segment.size += len(frame)
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

    def _create_segment(self, first_index: int) -> _Segment:
        """Create the next segment (magic written, fd kept as the active one).

        Every earlier creation and deletion is made durable first: a new
        segment never appears on disk next to files that should be gone, or
        without the segments before it.
        """
        if self._dir_pending:
            self._guard(self._dir_barrier, self.directory, "syncing")
        seq = self._next_seq
        path = self.directory / f"{seq:016x}-{first_index:016x}.seg"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            _write_all(fd, MAGIC)
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
        segment = _Segment(path, seq, len(MAGIC))
        self._segments.append(segment)
        self._dir_pending = True
        self._data_pending = True
        return segment

    def _ordered_unlink(self, path: Path) -> None:
        if self._unlink_unsynced:
            self._dir_barrier()  # deletions reach the disk in the order they are made
        os.unlink(path)
        self._unlink_unsynced = True
        self._dir_pending = True

    def _dir_barrier(self) -> None:
        fsync_directory(self.directory)
        self._dir_pending = False
        self._unlink_unsynced = False

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)


def _make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and missing parents with mode 0700, each entry made durable."""
    if directory.is_dir():
        return
    missing = []
    current = directory
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        os.chmod(path, 0o700)
        fsync_directory(path.parent)
