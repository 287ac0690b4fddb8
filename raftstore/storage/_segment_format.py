"""The byte layout of the Raft log's segment files, and the scan that reads and verifies them.

This module alone owns the byte layout below; ``_segments.SegmentLog`` writes
what this module encodes and opens the log through ``scan_segments``. Payloads
are opaque here: the layer above has already sealed them. The chain tags come
from ``keyring.LogChain`` (which alone owns the MAC recipe); this module
decides where they sit and what each one chains to.

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

What the scan accepts
=====================

- A torn write at the very end of the LAST segment -- fewer than 24 header
  bytes, a valid header whose payload runs past the end of the file, a tail of
  zero bytes, or a file that is a strict prefix of the magic -- is reported as
  a ``Repair`` for the caller to cut off (``SegmentLog.open`` does it with
  ftruncate + fsync and logs one line naming the file, the offset and the
  number of bytes removed).
- Anything else that does not check out raises
  ``InvalidRecord("raft log damaged: <file> at offset <n>: <reason>")``: a bad
  magic or an older format, a segment header or an anchor that does not check
  out, a header or payload checksum mismatch (even in the last complete frame),
  a chain tag that does not match or names a DEK term the keyring lacks, a gap
  or a step back in the indices, a torn frame in any earlier segment. The scan
  only reads; nothing on disk is changed.
"""

from __future__ import annotations

import os
import re
import struct
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import crc32c

from ..keyring import CHAIN_START, CHAIN_TAG_SIZE, InvalidRecord, LogChain
from ._fsutil import storage_error

__all__ = [
    "MAGIC",
    "SEGMENT_HEADER_SIZE",
    "HEADER_SIZE",
    "FRAME_OVERHEAD",
    "MAX_PAYLOAD",
    "MAX_U64",
    "SegmentInfo",
    "Segment",
    "Repair",
    "LogScan",
    "encode_frame",
    "encode_segment_header",
    "segment_file_name",
    "first_index_of",
    "last_index_of",
    "chain_head",
    "list_segment_files",
    "scan_segments",
]

MAGIC = b"RSSEG002"
_FORMAT_1_MAGIC = b"RSSEG001"
_CRC = struct.Struct(">I")
SEGMENT_HEADER_SIZE = len(MAGIC) + CHAIN_TAG_SIZE + _CRC.size  # 28
_HEADER_BODY = struct.Struct(">IQQI")  # length, index, term, chain key id
_HEADER = struct.Struct(">IQQII")  # ... and the header CRC
HEADER_SIZE = _HEADER.size  # 28
FRAME_OVERHEAD = _HEADER.size + CHAIN_TAG_SIZE + _CRC.size  # 48
MAX_PAYLOAD = 2**32 - 1
MAX_U64 = 2**64 - 1
_NAME_RE = re.compile(r"([0-9a-f]{16})-([0-9a-f]{16})\.seg")


@dataclass(frozen=True)
class SegmentInfo:
    """One segment file as it stands (``first_index``/``last_index`` are None when it holds no entry)."""

    path: Path
    first_index: int | None
    last_index: int | None
    size_bytes: int


@dataclass
class Segment:
    """What the log keeps in memory about one segment file: where each frame starts, its tag and key id."""

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

    def add_frame(self, index: int, key_id: int, tag: bytes, frame_size: int) -> None:
        """Record the frame of entry ``index`` that now ends the file."""
        if not self.offsets:
            self.first_index = index
        self.offsets.append(self.size)
        self.tags += tag
        self.key_ids.append(key_id)
        self.size += frame_size

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


@dataclass
class Repair:
    """A torn tail the scan found at the end of the last segment, to be cut off before appends resume."""

    path: Path
    offset: int  # cut here
    removed: int
    what: str
    rewrite_header: bytes = b""  # written after the cut (a torn segment header)


@dataclass
class LogScan:
    """What ``scan_segments`` found: the segments in log order, every entry, and the torn tail to cut (if any)."""

    segments: list[Segment]
    entries: list[tuple[int, int, bytes]]
    repair: Repair | None


def encode_frame(index: int, term: int, key_id: int, payload: bytes, tag: bytes) -> bytes:
    """The bytes of one frame (the caller has checked the fields' ranges)."""
    body = _HEADER_BODY.pack(len(payload), index, term, key_id)
    body_crc = crc32c.crc32c(body)
    trailer_crc = crc32c.crc32c(tag, value=crc32c.crc32c(payload, value=body_crc))
    return b"".join((body, _CRC.pack(body_crc), payload, tag, _CRC.pack(trailer_crc)))


def encode_segment_header(anchor: bytes) -> bytes:
    """The bytes a segment file starts with, chaining its first frame to ``anchor``."""
    head = MAGIC + anchor
    return head + _CRC.pack(crc32c.crc32c(head))


def segment_file_name(seq: int, first_index: int) -> str:
    return f"{seq:016x}-{first_index:016x}.seg"


def _damaged(path: Path, offset: int, reason: str) -> InvalidRecord:
    return InvalidRecord(f"raft log damaged: {path} at offset {offset}: {reason}")


def list_segment_files(directory: Path) -> list[tuple[int, Path]]:
    """The ``(seq, path)`` of every segment file in ``directory``, in log order.

    Raises:
        InvalidRecord: a ``.seg`` file is misnamed, or two share a sequence number.
        OSError: the directory cannot be read.
    """
    found: dict[int, Path] = {}
    for entry in os.scandir(directory):
        if not entry.name.endswith(".seg"):
            continue
        path = directory / entry.name
        match = _NAME_RE.fullmatch(entry.name)
        if match is None:
            raise _damaged(path, 0, "not a segment file name (<seq:016x>-<first index:016x>.seg)")
        seq = int(match.group(1), 16)
        if seq in found:
            raise _damaged(path, 0, f"a second segment with sequence number {seq} (the other is {found[seq]})")
        found[seq] = path
    return sorted(found.items())


def scan_segments(found: list[tuple[int, Path]], chain: LogChain) -> LogScan:
    """Read and verify every frame and chain tag of the segment files ``found`` (in log order).

    Raises:
        InvalidRecord: a segment is damaged anywhere but in a torn tail of the
            last one, or a record is not where it was appended.
        StorageError: a file cannot be read.
    """
    scan = LogScan([], [], None)
    for position, (seq, path) in enumerate(found):
        scan.repair = _scan_segment(scan, path, seq, chain, last=position == len(found) - 1)
    return scan


def first_index_of(segments: list[Segment]) -> int | None:
    """The index of the first entry the segments hold (None when they hold none)."""
    for segment in segments:
        if segment.offsets:
            return segment.first_index
    return None


def last_index_of(segments: list[Segment]) -> int | None:
    """The index of the last entry the segments hold (None when they hold none)."""
    for segment in reversed(segments):
        if segment.offsets:
            return segment.last_index
    return None


def chain_head(segments: list[Segment]) -> bytes:
    """The tag the next frame after ``segments`` chains to (only the last segment can be empty)."""
    return segments[-1].last_tag if segments else CHAIN_START


def _scan_segment(scan: LogScan, path: Path, seq: int, chain: LogChain, last: bool) -> Repair | None:
    """Verify one segment file, which follows ``scan.segments``; append it and its entries to ``scan``."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise storage_error(error, path, "reading") from None
    end = len(data)
    expected_anchor = chain_head(scan.segments)
    if end < SEGMENT_HEADER_SIZE or data[: len(MAGIC)] != MAGIC:
        header = encode_segment_header(expected_anchor)
        if last and header.startswith(data):  # torn while the segment was being created
            scan.segments.append(Segment(path, seq, SEGMENT_HEADER_SIZE, expected_anchor))
            return Repair(path, 0, end, "an incomplete segment header", rewrite_header=header)
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
    if scan.segments and anchor != expected_anchor:
        raise _damaged(path, 0, "the chain anchor is not the last tag of the segment before (a segment was replaced)")
    segment = Segment(path, seq, SEGMENT_HEADER_SIZE, anchor)
    previous = last_index_of(scan.segments)
    tag_before = anchor
    view = memoryview(data)
    pos = SEGMENT_HEADER_SIZE
    repair: Repair | None = None
    while pos < end:
        remaining = end - pos
        if remaining < HEADER_SIZE:
            if last:
                what = "a zero-filled tail" if data.count(0, pos) == remaining else "an incomplete frame header"
                repair = Repair(path, pos, remaining, what)
                break
            raise _damaged(path, pos, f"incomplete frame header ({remaining} of {HEADER_SIZE} bytes)")
        length, index, term, key_id, header_crc = _HEADER.unpack_from(data, pos)
        body_crc = crc32c.crc32c(view[pos : pos + _HEADER_BODY.size])
        if body_crc != header_crc:
            if last and data.count(0, pos) == remaining:
                repair = Repair(path, pos, remaining, "a zero-filled tail")
                break
            raise _damaged(path, pos, "frame header checksum mismatch")
        frame_end = pos + FRAME_OVERHEAD + length
        if frame_end > end:
            if last:
                repair = Repair(path, pos, remaining, "an incomplete frame")
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
            chain.check(key_id, index, term, tag_before, payload, tag)
        except InvalidRecord as error:
            raise _damaged(path, pos, f"entry {index}: {error}") from None
        segment.add_frame(index, key_id, tag, frame_end - pos)
        scan.entries.append((index, term, payload))
        previous = index
        tag_before = tag
        pos = frame_end
    scan.segments.append(segment)  # its size is where the verified frames end: a torn tail is not counted
    return repair
