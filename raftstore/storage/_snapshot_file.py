"""Snapshot files: checksummed frames around sealed records.

Two layouts, both owned by this module alone. Version 2 is what raftstore
writes; version 1 is still read (snapshots written before it).

Version 2, a stream of chunks, written and read without holding the whole
snapshot in memory::

    offset  size
    0       8   magic b"RSSNAP02"
    8       8   Raft index (big-endian)
    16      8   Raft term (big-endian)
    24      4   CRC-32C over bytes 0..23
    28          frames, to the end of the file, each:
                4   payload length n (big-endian, at most MAX_CHUNK_BYTES)
                4   CRC-32C over the length and the payload
                n   payload (a sealed record)

What the frames mean (their order, which one is last) is bound inside each
sealed record (``keyring.snapshot_chunk_context``); a file cut at a frame
boundary is caught there, a frame cut or damaged is caught here.

Version 1, one frame around one sealed record::

    offset  size
    0       8   magic b"RSSNAP01"
    8       8   Raft index (big-endian)
    16      8   Raft term (big-endian)
    24      8   payload length (big-endian)
    32      4   CRC-32C over bytes 0..31 and the payload
    36      n   payload (a sealed record)

Index and term are in clear so that the record's AAD (which binds them) can be
rebuilt before opening it; changing them makes the record fail to open even
where the checksum was forged. Either version is written to a temporary file,
fsynced and renamed over the old one, and the directory is fsynced: a crash
leaves the old snapshot or the new one.
"""

from __future__ import annotations

import os
import secrets
import struct
from pathlib import Path
from typing import BinaryIO, Iterator

import crc32c

from ..keyring import InvalidRecord
from ._fsutil import atomic_write, discard_temporary, fsync_directory, storage_error, write_all

__all__ = [
    "MAGIC",
    "MAGIC_V2",
    "MAX_CHUNK_BYTES",
    "encode_snapshot",
    "decode_snapshot",
    "read_snapshot",
    "write_snapshot",
    "SnapshotWriter",
    "SnapshotReader",
]

MAGIC = b"RSSNAP01"
_HEADER = struct.Struct(">8sQQQ")
_CRC = struct.Struct(">I")
_LENGTH_OFFSET = 24
_PREFIX = _HEADER.size + _CRC.size  # 36
_MAX_U64 = 2**64 - 1


def _damaged(source: str, offset: int, reason: str) -> InvalidRecord:
    return InvalidRecord(f"snapshot damaged: {source} at offset {offset}: {reason}")


def encode_snapshot(index: int, term: int, payload: bytes) -> bytes:
    """The bytes of a snapshot file holding ``payload`` (a sealed record) at ``index``/``term``.

    Raises:
        ValueError: index or term outside 0..2**64-1.
    """
    if not 0 <= index <= _MAX_U64 or not 0 <= term <= _MAX_U64:
        raise ValueError(f"snapshot index {index} or term {term} out of range")
    header = _HEADER.pack(MAGIC, index, term, len(payload))
    return b"".join((header, _CRC.pack(crc32c.crc32c(payload, value=crc32c.crc32c(header))), payload))


def decode_snapshot(data: bytes, source: str) -> tuple[int, int, bytes]:
    """``(index, term, payload)`` from a snapshot file's bytes; ``source`` names it in errors.

    Raises:
        InvalidRecord: anything does not check out; the message names
            ``source`` and the offset.
    """
    if len(data) < _PREFIX:
        if not MAGIC.startswith(data[: len(MAGIC)]):
            raise _damaged(source, 0, "not a raftstore snapshot (bad magic)")
        raise _damaged(source, len(data), f"truncated: {len(data)} bytes, the header alone takes {_PREFIX}")
    magic, index, term, length = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise _damaged(source, 0, "not a raftstore snapshot (bad magic)")
    if len(data) - _PREFIX != length:
        raise _damaged(
            source, _LENGTH_OFFSET, f"the header says {length} payload bytes, the file holds {len(data) - _PREFIX}"
        )
    (expected,) = _CRC.unpack_from(data, _HEADER.size)
    payload = data[_PREFIX:]
    if crc32c.crc32c(payload, value=crc32c.crc32c(data[: _HEADER.size])) != expected:
        raise _damaged(source, _HEADER.size, "checksum mismatch")
    return index, term, payload


def read_snapshot(path: os.PathLike[str] | str) -> tuple[int, int, bytes]:
    """Read and verify the snapshot file at ``path``.

    Raises:
        FileNotFoundError: there is no snapshot.
        InvalidRecord: the file is damaged (path and offset in the message).
        StorageError: the file cannot be read.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise
    except OSError as error:
        raise storage_error(error, path, "reading") from None
    return decode_snapshot(data, os.fspath(path))


def write_snapshot(path: os.PathLike[str] | str, index: int, term: int, payload: bytes) -> None:
    """Atomically replace the snapshot at ``path`` (mode 0600); durable on return.

    Raises:
        StorageError: the disk refused; the old snapshot is intact.
    """
    atomic_write(path, encode_snapshot(index, term, payload), mode=0o600)


# ------------------------------------------------------------------ version 2

MAGIC_V2 = b"RSSNAP02"
#: The largest frame a reader accepts: checked before a byte of the payload is read or allocated.
MAX_CHUNK_BYTES = 64 * 2**20
_HEADER_V2 = struct.Struct(">8sQQ")
_PREFIX_V2 = _HEADER_V2.size + _CRC.size  # 28
_FRAME = struct.Struct(">II")  # length, CRC-32C
_LENGTH = struct.Struct(">I")
_READ_AHEAD = 2**20
#: The writer syncs its data every so many bytes: a snapshot of gigabytes must not
#: leave that much dirty in the page cache, or the next fsync of the Raft log
#: (another file, the same disk) waits behind it, on the tick thread.
SYNC_EVERY_BYTES = 4 * 2**20


class SnapshotWriter:
    """Writes a version 2 snapshot frame by frame to a temporary file; ``commit`` puts it in place.

    A crash or ``abort`` at any point leaves the snapshot at ``path`` as it
    was. Use as a context manager: leaving the block without ``commit``
    aborts.

    Raises (every method):
        StorageError: the disk refused.
    """

    def __init__(self, path: os.PathLike[str] | str, index: int, term: int) -> None:
        if not 0 <= index <= _MAX_U64 or not 0 <= term <= _MAX_U64:
            raise ValueError(f"snapshot index {index} or term {term} out of range")
        self.path = Path(path)
        self._tmp = self.path.with_name(f".{self.path.name}.tmp-{secrets.token_hex(4)}")
        self.bytes_written = 0
        self._unsynced = 0
        try:
            self._fd: int | None = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as error:
            raise storage_error(error, self._tmp) from None
        header = _HEADER_V2.pack(MAGIC_V2, index, term)
        self._write(header + _CRC.pack(crc32c.crc32c(header)))

    def _write(self, data: bytes) -> None:
        assert self._fd is not None, "the snapshot writer is closed"
        try:
            write_all(self._fd, data)
            self._unsynced += len(data)
            if self._unsynced >= SYNC_EVERY_BYTES:
                os.fdatasync(self._fd)
                self._unsynced = 0
        except OSError as error:
            self.abort()
            raise storage_error(error, self._tmp) from None
        self.bytes_written += len(data)

    def add(self, payload: bytes) -> None:
        """Append one frame holding ``payload`` (a sealed record of at most ``MAX_CHUNK_BYTES``)."""
        if len(payload) > MAX_CHUNK_BYTES:
            raise ValueError(f"a snapshot chunk of {len(payload)} bytes is over the {MAX_CHUNK_BYTES}-byte limit")
        length = _LENGTH.pack(len(payload))
        checksum = crc32c.crc32c(payload, value=crc32c.crc32c(length))
        self._write(length + _CRC.pack(checksum))
        self._write(payload)

    def commit(self) -> None:
        """Sync the file, rename it over ``path`` and sync the directory: durable on return."""
        assert self._fd is not None, "the snapshot writer is closed"
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            os.replace(self._tmp, self.path)
        except OSError as error:
            self.abort()
            raise storage_error(error, self.path) from None
        fsync_directory(self.path.parent)

    def abort(self) -> None:
        """Drop the temporary file; the snapshot at ``path`` stays as it was."""
        fd, self._fd = self._fd, None
        discard_temporary(fd, self._tmp)

    def __enter__(self) -> "SnapshotWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None or self._tmp.exists():
            self.abort()


class SnapshotReader:
    """Reads a snapshot file of either version: its index and term at once, its payloads one at a time.

    ``payloads()`` yields each frame's payload, checking each checksum as it
    goes, so a snapshot of gigabytes is never held in memory whole. A version 1
    file yields its one payload. Call ``close`` (or use ``with``) when done.

    Raises:
        FileNotFoundError: there is no snapshot.
        InvalidRecord: the file is damaged (path and offset in the message),
            from the constructor or from ``payloads()``.
        StorageError: the file cannot be read.
    """

    def __init__(self, path: os.PathLike[str] | str) -> None:
        self.path = os.fspath(path)
        try:
            self._file: BinaryIO = open(self.path, "rb", buffering=_READ_AHEAD)
        except FileNotFoundError:
            raise
        except OSError as error:
            raise storage_error(error, self.path, "reading") from None
        try:
            head = self._read(_PREFIX_V2)
            if head[: len(MAGIC)] == MAGIC:
                self.version = 1
                self._whole = decode_snapshot(head + self._read_rest(), self.path)
                self.index, self.term = self._whole[0], self._whole[1]
            elif head[: len(MAGIC_V2)] == MAGIC_V2 and len(head) == _PREFIX_V2:
                (expected,) = _CRC.unpack_from(head, _HEADER_V2.size)
                if crc32c.crc32c(head[: _HEADER_V2.size]) != expected:
                    raise _damaged(self.path, _HEADER_V2.size, "header checksum mismatch")
                self.version = 2
                _magic, self.index, self.term = _HEADER_V2.unpack_from(head)
            elif MAGIC_V2.startswith(head[: len(MAGIC_V2)]) and len(head) < _PREFIX_V2:
                raise _damaged(self.path, len(head), f"truncated: {len(head)} bytes, the header alone takes {_PREFIX_V2}")
            else:
                raise _damaged(self.path, 0, "not a raftstore snapshot (bad magic)")
        except BaseException:
            self._file.close()
            raise

    def _read(self, size: int) -> bytes:
        try:
            return self._file.read(size)
        except OSError as error:
            raise storage_error(error, self.path, "reading") from None

    def _read_rest(self) -> bytes:
        try:
            return self._file.read()
        except OSError as error:
            raise storage_error(error, self.path, "reading") from None

    def payloads(self) -> Iterator[bytes]:
        if self.version == 1:
            yield self._whole[2]
            return
        offset = _PREFIX_V2
        while True:
            head = self._read(_FRAME.size)
            if not head:
                return
            if len(head) < _FRAME.size:
                raise _damaged(self.path, offset, f"truncated frame header ({len(head)} of {_FRAME.size} bytes)")
            length, expected = _FRAME.unpack(head)
            if length > MAX_CHUNK_BYTES:
                raise _damaged(self.path, offset, f"a frame of {length} bytes is over the {MAX_CHUNK_BYTES}-byte limit")
            payload = self._read(length)
            if len(payload) < length:
                raise _damaged(self.path, offset, f"truncated frame: {len(payload)} of {length} bytes")
            if crc32c.crc32c(payload, value=crc32c.crc32c(head[:4])) != expected:
                raise _damaged(self.path, offset, "frame checksum mismatch")
            yield payload
            offset += _FRAME.size + length

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "SnapshotReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
