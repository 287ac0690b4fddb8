"""Snapshot files: a checksummed frame around one sealed record.

Layout (this module alone owns it)::

    offset  size
    0       8   magic b"RSSNAP01"
    8       8   Raft index (big-endian)
    16      8   Raft term (big-endian)
    24      8   payload length (big-endian)
    32      4   CRC-32C over bytes 0..31 and the payload
    36      n   payload (a sealed record)

Index and term are in clear so that the record's AAD (which binds them) can be
rebuilt before opening it; changing them makes the record fail to open even
where the checksum was forged. The file is replaced atomically
(``atomic_write``): a crash leaves the old snapshot or the new one.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import crc32c

from ..keyring import InvalidRecord
from ._fsutil import atomic_write, storage_error

__all__ = ["MAGIC", "encode_snapshot", "decode_snapshot", "read_snapshot", "write_snapshot"]

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
