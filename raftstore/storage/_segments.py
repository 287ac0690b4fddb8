"""The Raft log on disk: segment files of checksummed, chained frames around sealed records.

This module alone owns the byte layout below. Payloads are opaque here: the
layer above has already sealed them. The chain tags come from
``keyring.LogChain`` (which alone owns the MAC recipe); this module decides
where they sit and what each one chains to.

Segment files live in one directory and are named
``<seq:016x>-<first index:016x>.seg``; sorted names are log order (the
sequence number decides; the first index is informational: a segment is
created by the append of its first entry, and named for it). Each file starts
with a 28-byte segment header and then holds frames::

    segment header
    0       8   magic ``RSSEG002`` (format 2)
    8       16  chain anchor: the tag of the entry before this segment's first
                (the previous segment's last), or 16 zero bytes where the chain starts
    24      4   CRC-32C over bytes 0..23

    frame
    offset  size
    0       4   payload length (big-endian)
    4       8   Raft index (big-endian)
    12      8   Raft term (big-endian)
    20      4   chain key id: the DEK term whose chain key made the tag (big-endian)
    24      4   header CRC-32C, over bytes 0..23
    28      n   payload
    28+n    16  chain tag: LogChain MAC over (key id, index, term, previous tag, payload)
    44+n    4   payload CRC-32C, over length | index | term | key id | payload | tag

The header has its own checksum so that a flipped byte in the length field is
told apart from a torn write. Indices are consecutive across the whole log.

The chain
=========

The CRCs catch accidents; the tags catch someone who writes the disk. Each
entry's tag is made when it is appended, with a key derived from the DEK, over
its Raft index and term and the tag of the entry before it, so a payload moved
to another index, two payloads swapped, an entry replayed from an older log or
a segment replaced or reordered no longer checks out, even with every CRC
rewritten. The previous tag of the first entry of a segment is the segment's
anchor, and every segment's anchor must equal the last tag of the segment
before it. The first segment's anchor is taken as it stands: that is where the
chain restarts after compaction deletes older segments, and after a snapshot
replaces the whole log (``reset`` starts from zeros). A truncation by Raft
keeps the chain: the entries appended after the cut chain to the entry kept
before it. What the chain cannot see is the loss of whole segments at either
end of the log (an older log put back entire, or the newest segments deleted):
that is a rollback of this manager's disk, which Raft's own checks and the
other managers' copies have to catch.

Format 1 segments (``RSSEG001``, from before the chain) are refused at open:
reading them as before would let anyone who can write the disk turn a format 2
segment back into format 1 and swap records unseen. A manager with such a log
joins the cluster again (or is restored from a backup), and gets a format 2 log.

What open() accepts
===================

- A torn write at the very end of the LAST segment -- fewer than 24 header
  bytes, a valid header whose payload runs past the end of the file, a tail of
  zero bytes, or a file that is a strict prefix of the magic -- is cut off
  (ftruncate + fsync), and ``log`` gets one line naming the file, the offset
  and the number of bytes removed.
- Anything else that does not check out refuses start-up with
  ``InvalidRecord("raft log damaged: <file> at offset <n>: <reason>")``: a bad
  magic or an older format, a segment header or an anchor that does not check
  out, a header or payload checksum mismatch (even in the last complete frame),
  a chain tag that does not match or names a DEK term the keyring lacks, a gap
  or a step back in the indices, a torn frame in any earlier segment. Nothing
  is changed on disk in that case.

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
from ..keyring import CHAIN_START, CHAIN_TAG_SIZE, InvalidRecord, LogChain, StorageError

__all__ = ["SegmentLog", "SegmentInfo", "MAGIC", "SEGMENT_HEADER_SIZE"]

MAGIC = b"RSSEG002"
_FORMAT_1_MAGIC = b"RSSEG001"
_CRC = struct.Struct(">I")
SEGMENT_HEADER_SIZE = len(MAGIC) + CHAIN_TAG_SIZE + _CRC.size  # 28
_HEADER_BODY = struct.Struct(">IQQI")  # length, index, term, chain key id
_HEADER = struct.Struct(">IQQII")  # ... and the header CRC
HEADER_SIZE = _HEADER.size  # 28
FRAME_OVERHEAD = _HEADER.size + CHAIN_TAG_SIZE + _CRC.size  # 48
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
    anchor: bytes  # the chain tag its first frame follows
    first_index: int | None = None  # of the first frame it holds (None while empty)
    offsets: array = field(default_factory=lambda: array("Q"))  # byte offset of each frame, in index order
    tags: bytearray = field(default_factory=bytearray)  # the chain tag of each frame, 16 bytes each
    key_ids: array = field(default_factory=lambda: array("I"))  # the chain key id of each frame

    @property
    def last_tag(self) -> bytes:
        """The tag the next frame appended here chains to."""
        return bytes(self.tags[-CHAIN_TAG_SIZE:]) if self.tags else self.anchor

    def keep_frames(self, count: int) -> None:
        del self.offsets[count:]
        del self.tags[count * CHAIN_TAG_SIZE :]
        del self.key_ids[count:]

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


def _frame(index: int, term: int, key_id: int, payload: bytes, tag: bytes) -> bytes:
    body = _HEADER_BODY.pack(len(payload), index, term, key_id)
    body_crc = crc32c.crc32c(body)
    trailer_crc = crc32c.crc32c(tag, value=crc32c.crc32c(payload, value=body_crc))
    return b"".join((body, _CRC.pack(body_crc), payload, tag, _CRC.pack(trailer_crc)))


def _segment_header(anchor: bytes) -> bytes:
    head = MAGIC + anchor
    return head + _CRC.pack(crc32c.crc32c(head))


def _damaged(path: Path, offset: int, reason: str) -> InvalidRecord:
    return InvalidRecord(f"raft log damaged: {path} at offset {offset}: {reason}")


@dataclass
class _Repair:
    path: Path
    offset: int  # cut here
    removed: int
    what: str
    rewrite_header: bytes = b""  # written after the cut (a torn segment header)


class SegmentLog:
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
        expected_anchor = self._chain_head()
        if end < SEGMENT_HEADER_SIZE or data[: len(MAGIC)] != MAGIC:
            header = _segment_header(expected_anchor)
            if last and header.startswith(data):  # torn while the segment was being created
                self._segments.append(_Segment(path, seq, SEGMENT_HEADER_SIZE, expected_anchor))
                return _Repair(path, 0, end, "an incomplete segment header", rewrite_header=header)
            if data.startswith(_FORMAT_1_MAGIC):
                raise _damaged(
                    path, 0, "a format 1 segment (written before log entries were chained to their place) is refused; "
                    "join this manager to the cluster again, or restore it from a backup"
                )
            raise _damaged(path, 0, "not a raftstore log segment (bad magic)")
        (header_crc,) = _CRC.unpack_from(data, SEGMENT_HEADER_SIZE - _CRC.size)
        if crc32c.crc32c(data[: SEGMENT_HEADER_SIZE - _CRC.size]) != header_crc:
            raise _damaged(path, 0, "segment header checksum mismatch")
        anchor = data[len(MAGIC) : len(MAGIC) + CHAIN_TAG_SIZE]
        if self._segments and anchor != expected_anchor:
            raise _damaged(path, 0, "the chain anchor is not the last tag of the segment before (a segment was replaced)")
        segment = _Segment(path, seq, end, anchor)
        previous = self.last_index
        tag_before = anchor
        view = memoryview(data)
        pos = SEGMENT_HEADER_SIZE
        repair: _Repair | None = None
        while pos < end:
            remaining = end - pos
            if remaining < HEADER_SIZE:
                if last:
                    what = "a zero-filled tail" if data.count(0, pos) == remaining else "an incomplete frame header"
                    repair = _Repair(path, pos, remaining, what)
                    break
                raise _damaged(path, pos, f"incomplete frame header ({remaining} of {HEADER_SIZE} bytes)")
            length, index, term, key_id, header_crc = _HEADER.unpack_from(data, pos)
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
            payload_end = pos + HEADER_SIZE + length
            tag_end = payload_end + CHAIN_TAG_SIZE
            (payload_crc,) = _CRC.unpack_from(data, tag_end)
            if crc32c.crc32c(view[pos + HEADER_SIZE : tag_end], value=body_crc) != payload_crc:
                raise _damaged(path, pos, "payload checksum mismatch")
            if previous is not None and index != previous + 1:
                raise _damaged(path, pos, f"entry {index} where entry {previous + 1} should follow entry {previous}")
            payload, tag = data[pos + HEADER_SIZE : payload_end], data[payload_end:tag_end]
            try:
                self._chain.check(key_id, index, term, tag_before, payload, tag)
            except InvalidRecord as error:
                raise _damaged(path, pos, f"entry {index}: {error}") from None
            if segment.first_index is None:
                segment.first_index = index
            segment.offsets.append(pos)
            segment.tags += tag
            segment.key_ids.append(key_id)
            self._loaded.append((index, term, payload))
            previous = index
            tag_before = tag
            pos = frame_end
        if repair is not None:
            segment.size = repair.offset
        self._segments.append(segment)
        return repair

    def _repair(self, repair: _Repair) -> None:
        fd = os.open(repair.path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, repair.offset)
            if repair.rewrite_header:
                _write_all(fd, repair.rewrite_header)
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

    def chain_key_ids(self) -> set[int]:
        """Every DEK term whose chain key tagged a frame still on disk (the keyring must keep them)."""
        with self._lock:
            return {key_id for segment in self._segments for key_id in set(segment.key_ids)}

    def _chain_head(self) -> bytes:
        """The tag the next appended frame chains to (only the last segment can be empty)."""
        return self._segments[-1].last_tag if self._segments else CHAIN_START

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
            key_id, tag = self._chain.sign(index, term, self._chain_head(), payload)
            frame = _frame(index, term, key_id, payload, tag)
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
            active.tags += tag
            active.key_ids.append(key_id)
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
            segment.keep_frames(frames)
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
            if not 0 <= index <= _MAX_U64 or not 0 <= term <= _MAX_U64 or len(payload) > _MAX_PAYLOAD:
                raise ValueError(f"entry {index}: field out of range")
            key_id, tag = self._chain.sign(index, term, tag, payload)
            frames.append((index, key_id, tag, _frame(index, term, key_id, payload, tag)))
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
                    _write_all(self._fd, b"".join(frame for *_, frame in frames))
                    segment.first_index = frames[0][0]
                    for _, key_id, tag, frame in frames:
                        segment.offsets.append(segment.size)
                        segment.tags += tag
                        segment.key_ids.append(key_id)
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
        """Create the next segment (header written, fd kept as the active one).

        Every earlier creation and deletion is made durable first: a new
        segment never appears on disk next to files that should be gone, or
        without the segments before it. Its anchor continues the chain of the
        segment before it; with none left, the chain starts anew.
        """
        if self._dir_pending:
            self._guard(self._dir_barrier, self.directory, "syncing")
        seq = self._next_seq
        path = self.directory / f"{seq:016x}-{first_index:016x}.seg"
        anchor = self._chain_head()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            _write_all(fd, _segment_header(anchor))
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
        segment = _Segment(path, seq, SEGMENT_HEADER_SIZE, anchor)
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
