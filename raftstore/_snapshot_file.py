"""Snapshot files: a checksummed frame around one sealed record.

Layout (this module alone owns it)::

    magic b"RSSNAP01" | index (8, BE) | term (8, BE) | payload length (8, BE)
    | CRC-32C of everything before it and of the payload (4, BE) | payload

Index and term are in clear so that the record's AAD (which binds them) can be
rebuilt before opening it; changing them makes the record fail to open.
"""

from __future__ import annotations

import struct
from pathlib import Path

import crc32c

from ._fsutil import atomic_write
from .keyring import InvalidRecord

__all__ = ["encode_snapshot", "decode_snapshot", "read_snapshot", "write_snapshot"]

MAGIC = b"RSSNAP01"
_HEADER = struct.Struct(">8sQQQ")
_CRC = struct.Struct(">I")
_PREFIX = _HEADER.size + _CRC.size


def encode_snapshot(index: int, term: int, payload: bytes) -> bytes:
    header = _HEADER.pack(MAGIC, index, term, len(payload))
    return header + _CRC.pack(crc32c.crc32c(payload, value=crc32c.crc32c(header))) + payload


def decode_snapshot(data: bytes, source: str) -> tuple[int, int, bytes]:
    if len(data) < _PREFIX:
        raise InvalidRecord(f"snapshot damaged: {source} at offset 0: too short")
    magic, index, term, length = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise InvalidRecord(f"snapshot damaged: {source} at offset 0: not a raftstore snapshot")
    if len(data) - _PREFIX != length:
        raise InvalidRecord(
            f"snapshot damaged: {source} at offset {_PREFIX}: {len(data) - _PREFIX} payload bytes, header says {length}"
        )
    (expected,) = _CRC.unpack_from(data, _HEADER.size)
    payload = data[_PREFIX:]
    if crc32c.crc32c(payload, value=crc32c.crc32c(data[: _HEADER.size])) != expected:
        raise InvalidRecord(f"snapshot damaged: {source} at offset {_HEADER.size}: checksum mismatch")
    return index, term, payload


def read_snapshot(path: Path) -> tuple[int, int, bytes]:
    return decode_snapshot(Path(path).read_bytes(), str(path))


def write_snapshot(path: Path, index: int, term: int, payload: bytes) -> None:
    atomic_write(path, encode_snapshot(index, term, payload))
