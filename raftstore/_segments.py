"""The Raft log on disk: segment files of checksummed frames around sealed records.

Each segment file starts with the magic ``RSSEG001`` and holds frames::

    length (4, BE) | index (8, BE) | term (8, BE) | header CRC-32C (4)   -- 24-byte header
    | payload (length bytes) | CRC-32C over length|index|term|payload (4)

The header has its own checksum so that a flipped byte in the length field is
told apart from a torn write. Payloads are opaque here (the layer above has
sealed them). File names are ``<seq:016x>-<first index:016x>.seg``; sorted
names are log order.

Crash rules:

- a frame that is incomplete (the write was torn), or a tail of zero bytes,
  at the very end of the LAST segment is cut off at start-up, and ``log``
  says which file, where and how much;
- anything else that does not check out (a bad checksum even in the last
  complete frame, a gap in the indices, a torn frame in an earlier segment)
  refuses start-up with the file and the offset. Nothing is cut in silence.

Group commit: ``append`` only writes; ``sync`` makes everything since the last
sync durable with one fdatasync (plus a directory fsync when files were
created or deleted), and costs nothing when nothing is pending.
"""

from __future__ import annotations

import os
import re
import struct
import threading
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import crc32c

from ._fsutil import fsync_directory, storage_error
from .keyring import InvalidRecord

__all__ = ["SegmentLog", "SegmentInfo", "MAGIC"]

MAGIC = b"RSSEG001"
_HEADER = struct.Struct(">IQQI")
_HEADER_BODY = struct.Struct(">IQQ")
_CRC = struct.Struct(">I")
_FRAME_OVERHEAD = _HEADER.size + _CRC.size
_NAME_RE = re.compile(r"([0-9a-f]{16})-([0-9a-f]{16})\.seg")


@dataclass
class SegmentInfo:
    path: Path
    seq: int
    first_index: int | None  # of the entries it holds
    last_index: int | None
    size_bytes: int


@dataclass
class _Segment:
    path: Path
    seq: int
    size: int
    first_index: int | None = None
    offsets: array | None = None  # byte offset of each frame, in index order

    def __post_init__(self) -> None:
        if self.offsets is None:
            self.offsets = array("Q")

    @property
    def count(self) -> int:
        return len(self.offsets)  # type: ignore[arg-type]

    @property
    def last_index(self) -> int | None:
        return None if self.first_index is None or not self.count else self.first_index + self.count - 1

    def info(self) -> SegmentInfo:
        return SegmentInfo(self.path, self.seq, self.first_index if self.count else None, self.last_index, self.size)


def _frame(index: int, term: int, payload: bytes) -> bytes:
    body = _HEADER_BODY.pack(len(payload), index, term)
    header = body + _CRC.pack(crc32c.crc32c(body))
    return header + payload + _CRC.pack(crc32c.crc32c(payload, value=crc32c.crc32c(body)))


def _damaged(path: Path, offset: int, reason: str) -> InvalidRecord:
    return InvalidRecord(f"raft log damaged: {path} at offset {offset}: {reason}")


class SegmentLog:
    def __init__(self, directory: Path, segment_bytes: int, log: Callable[[str], None]) -> None:
        self.directory = Path(directory)
        self._segment_bytes = segment_bytes
        self._log = log
        self._segments: list[_Segment] = []
        self._fd: int | None = None
        self._loaded: list[tuple[int, int, bytes]] = []
        self._data_pending = False
        self._dir_pending = False
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- open

    @classmethod
    def open(
        cls, directory: Path, *, segment_bytes: int = 64 * 2**20, log: Callable[[str], None] | None = None
    ) -> "SegmentLog":
        directory = Path(directory)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self = cls(directory, segment_bytes, log or (lambda line: None))
        names = sorted(p for p in directory.iterdir() if p.name.endswith(".seg"))
        for position, path in enumerate(names):
            match = _NAME_RE.fullmatch(path.name)
            if match is None:
                raise _damaged(path, 0, "not a segment file name")
            self._scan(path, int(match.group(1), 16), last=position == len(names) - 1)
        if not self._segments:
            self._create_segment(1, 0)
        self._open_active()
        return self

    def _scan(self, path: Path, seq: int, last: bool) -> None:
        data = path.read_bytes()
        if not data.startswith(MAGIC):
            if last and MAGIC.startswith(data):  # torn while the segment was being created
                self._repair(path, 0, len(data), rewrite_magic=True)
                self._segments.append(_Segment(path, seq, len(MAGIC)))
                return
            raise _damaged(path, 0, "not a raftstore log segment (bad magic)")
        segment = _Segment(path, seq, len(data))
        expected = self.last_index + 1 if self.last_index is not None else None
        pos = len(MAGIC)
        end = len(data)
        while pos < end:
            remaining = end - pos
            if remaining < _HEADER.size:
                if last:
                    self._repair(path, pos, remaining)
                    segment.size = pos
                    break
                raise _damaged(path, pos, "incomplete frame header")
            length, index, term, header_crc = _HEADER.unpack_from(data, pos)
            if crc32c.crc32c(data[pos : pos + 20]) != header_crc:
                if last and not data[pos:].strip(b"\0"):
                    self._repair(path, pos, remaining)
                    segment.size = pos
                    break
                raise _damaged(path, pos, "frame header checksum mismatch")
            frame_end = pos + _FRAME_OVERHEAD + length
            if frame_end > end:
                if last:
                    self._repair(path, pos, remaining)
                    segment.size = pos
                    break
                raise _damaged(path, pos, "frame runs past the end of the file")
            payload = data[pos + _HEADER.size : frame_end - _CRC.size]
            (payload_crc,) = _CRC.unpack_from(data, frame_end - _CRC.size)
            if crc32c.crc32c(payload, value=crc32c.crc32c(data[pos : pos + 20])) != payload_crc:
                raise _damaged(path, pos, "payload checksum mismatch")
            if expected is not None and index != expected:
                raise _damaged(path, pos, f"entry {index} follows entry {expected - 1}")
            if segment.first_index is None:
                segment.first_index = index
            segment.offsets.append(pos)  # type: ignore[union-attr]
            self._loaded.append((index, term, payload))
            expected = index + 1
            pos = frame_end
        self._segments.append(segment)

    def _repair(self, path: Path, offset: int, removed: int, rewrite_magic: bool = False) -> None:
        with open(path, "r+b") as f:
            f.truncate(offset)
            if rewrite_magic:
                f.write(MAGIC)
            f.flush()
            os.fsync(f.fileno())
        self._log(
            f"raft log: cut a torn write of {removed} bytes at the end of {path} (offset {offset}); "
            "the entries before it are intact"
        )

    def _create_segment(self, seq: int, first_index: int) -> _Segment:
        path = self.directory / f"{seq:016x}-{first_index:016x}.seg"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                written = 0
                while written < len(MAGIC):
                    written += os.write(fd, MAGIC[written:])
            finally:
                os.close(fd)
        except OSError:
            # a file that never got its magic must not block the next attempt
            # (O_EXCL) nor stay behind
            try:
                os.unlink(path)
            except OSError:
                pass
            raise
        segment = _Segment(path, seq, len(MAGIC))
        self._segments.append(segment)
        self._dir_pending = True
        self._data_pending = True
        return segment

    def _open_active(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = os.open(self._segments[-1].path, os.O_WRONLY | os.O_APPEND)

    # ----------------------------------------------------------------- reading

    def entries(self) -> list[tuple[int, int, bytes]]:
        """Every entry found at open (once: the caller keeps its own copy)."""
        loaded, self._loaded = self._loaded, []
        return loaded

    @property
    def first_index(self) -> int | None:
        for segment in self._segments:
            if segment.count:
                return segment.first_index
        return None

    @property
    def last_index(self) -> int | None:
        for segment in reversed(self._segments):
            if segment.count:
                return segment.last_index
        return None

    def segments(self) -> list[SegmentInfo]:
        return [s.info() for s in self._segments]

    # ----------------------------------------------------------------- writing

    def append(self, index: int, term: int, payload: bytes) -> None:
        last = self.last_index
        if last is not None and index != last + 1:
            raise ValueError(f"append of entry {index} after entry {last}")
        with self._lock:
            active = self._segments[-1]
            if active.size >= self._segment_bytes:
                try:
                    self._roll_locked()
                except OSError as error:
                    raise storage_error(error, self.directory, "starting a new segment in") from None
                active = self._segments[-1]
            frame = _frame(index, term, payload)
            assert self._fd is not None
            try:
                written = os.write(self._fd, frame)
                while written < len(frame):
                    written += os.write(self._fd, frame[written:])
            except OSError as error:
                os.ftruncate(self._fd, active.size)  # leave no partial frame behind
                raise storage_error(error, active.path, "appending to") from None
            if active.first_index is None:
                active.first_index = index
            active.offsets.append(active.size)  # type: ignore[union-attr]
            active.size += len(frame)
            self._data_pending = True

    def sync(self) -> bool:
        if not (self._data_pending or self._dir_pending):
            return False
        with self._lock:
            did = False
            try:
                if self._data_pending and self._fd is not None:
                    self._data_pending = False
                    os.fdatasync(self._fd)
                    did = True
                if self._dir_pending:
                    fsync_directory(self.directory)
                    self._dir_pending = False
                    did = True
            except OSError as error:
                self._data_pending = True  # _dir_pending stays set if the directory fsync failed
                raise storage_error(error, self.directory, "syncing") from None
            return did

    def roll(self) -> None:
        """Start a new segment for the next append (a no-op while the current one is empty)."""
        with self._lock:
            if self._segments[-1].count:
                self._roll_locked()

    def _roll_locked(self) -> None:
        assert self._fd is not None
        os.fdatasync(self._fd)  # an earlier segment must never end torn
        last = self.last_index
        self._create_segment(self._segments[-1].seq + 1, (last + 1) if last is not None else 0)
        self._open_active()

    def truncate_after(self, index: int) -> None:
        """Remove every entry after ``index`` (durable at the next ``sync``)."""
        last = self.last_index
        if last is None or index >= last:
            return
        with self._lock:
            # Whole segments after ``index`` go first, last one first, and their
            # removal is made durable before any earlier file is cut: a crash in
            # between must leave the old log or a prefix of it, never a cut
            # segment followed by stale ones (a gap, or entries that should be
            # gone coming back behind an emptied first segment).
            doomed = [
                s for s in self._segments[1:] if s.count and s.first_index is not None and s.first_index > index
            ]
            for segment in reversed(doomed):
                os.unlink(segment.path)
            if doomed:
                fsync_directory(self.directory)
            keep: list[_Segment] = []
            for segment in self._segments:
                if any(segment is d for d in doomed):
                    continue
                first = segment.first_index
                if segment.count and first is not None and first > index:
                    # even the first segment goes: keep its file, empty
                    self._cut(segment, 0)
                elif segment.count and first is not None and segment.last_index is not None and segment.last_index > index:
                    self._cut(segment, index - first + 1)
                keep.append(segment)
            self._segments = keep
            self._open_active()
            self._data_pending = True

    def _cut(self, segment: _Segment, keep_frames: int) -> None:
        offsets = segment.offsets
        assert offsets is not None
        new_size = offsets[keep_frames] if keep_frames < len(offsets) else segment.size
        os.truncate(segment.path, new_size)
        del offsets[keep_frames:]
        segment.size = new_size
        if not offsets:
            segment.first_index = None
        if segment is not self._segments[-1]:
            fd = os.open(segment.path, os.O_WRONLY)
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)

    def drop_before(self, index: int) -> list[Path]:
        """Delete segment files whose entries are all before ``index`` (never the active one)."""
        dropped = []
        with self._lock:
            while len(self._segments) > 1:
                segment = self._segments[0]
                last = segment.last_index
                if last is not None and last >= index:
                    break
                os.unlink(segment.path)
                dropped.append(segment.path)
                self._segments.pop(0)
                self._dir_pending = True
        return dropped

    def reset(self, entries: Iterable[tuple[int, int, bytes]]) -> None:
        """Replace the whole log with ``entries`` (a snapshot was installed); durable on return."""
        entries = list(entries)
        with self._lock:
            seq = self._segments[-1].seq + 1 if self._segments else 1
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            for segment in self._segments:
                os.unlink(segment.path)
            self._segments = []
            self._create_segment(seq, entries[0][0] if entries else 0)
            self._open_active()
        for index, term, payload in entries:
            self.append(index, term, payload)
        self._data_pending = True
        self.sync()

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
