"""Sealed records: the one byte format for everything raftstore encrypts at rest.

Layout (this module alone packs and parses it)::

    version (1) | algorithm (1) | key id (4, big-endian) | nonce (12) | ciphertext and tag (16)

The additional authenticated data binds a record to its place, so that a record
copied to another kind, cluster, position or key id fails to open::

    b"raftstore-seal" | header[:6] (version, algorithm, key id)
                      | kind (1) | len(cluster id) (2, BE) | cluster id
                      | len(context) (4, BE) | context

``context`` is the record's position: a log entry's 128-bit id, a snapshot's
Raft index and term, or a fixed label for keyring records. The key id in the
header selects the key; readers never try keys in turn. Every failure to open
is ``InvalidRecord`` with one message, as Fernet folds every failure into
``InvalidToken``; only an unknown key id says which id, because the id is not
secret and an operator needs it.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol, Union

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from ._errors import InvalidRecord

__all__ = [
    "Algorithm",
    "RecordKind",
    "DataKey",
    "KeySource",
    "HEADER_SIZE",
    "RECORD_VERSION",
    "seal",
    "open_record",
    "record_key_id",
    "entry_context",
    "snapshot_context",
]

RECORD_VERSION = 1
NONCE_SIZE = 12
TAG_SIZE = 16
_HEADER = struct.Struct(">BBI12s")
HEADER_SIZE = _HEADER.size  # 18
_AAD_PREFIX = b"raftstore-seal"
_FAILED = "sealed record failed to open"


class Algorithm(IntEnum):
    AES_256_GCM = 1
    CHACHA20_POLY1305 = 2


class RecordKind(IntEnum):
    ENTRY = 1
    SNAPSHOT = 2
    KEYRING = 3
    NODE_KEY = 4


_AEADS = {Algorithm.AES_256_GCM: AESGCM, Algorithm.CHACHA20_POLY1305: ChaCha20Poly1305}


@dataclass(frozen=True)
class DataKey:
    """One DEK (or KEK) term: the id that names it in every record it seals, and its secret."""

    key_id: int
    secret: bytes = field(repr=False)
    algorithm: Algorithm = Algorithm.AES_256_GCM
    _aead: object = field(default=None, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key_id, int) or not 0 < self.key_id < 2**32:
            raise ValueError("a key id is a whole number from 1 to 2**32-1")
        if not isinstance(self.secret, bytes) or len(self.secret) != 32:
            raise ValueError("a data key is 32 bytes")
        algorithm = Algorithm(self.algorithm)
        object.__setattr__(self, "algorithm", algorithm)
        object.__setattr__(self, "_aead", _AEADS[algorithm](self.secret))

    @classmethod
    def generate(cls, key_id: int, algorithm: Algorithm = Algorithm.AES_256_GCM) -> "DataKey":
        return cls(key_id, os.urandom(32), algorithm)

    def __repr__(self) -> str:
        return f"DataKey(key_id={self.key_id}, algorithm={self.algorithm.name}, secret=<redacted>)"


class KeySource(Protocol):
    def get_key(self, key_id: int) -> DataKey: ...


def entry_context(entry_id: bytes) -> bytes:
    if not isinstance(entry_id, bytes) or len(entry_id) != 16:
        raise ValueError("a log entry id is 16 bytes")
    return b"entry:" + entry_id


def snapshot_context(index: int, term: int) -> bytes:
    return b"snapshot:" + struct.pack(">QQ", index, term)


def _aad(header: bytes, kind: RecordKind, cluster_id: str, context: bytes) -> bytes:
    cluster = cluster_id.encode()
    return b"".join(
        (
            _AAD_PREFIX,
            header[:6],
            bytes([int(kind)]),
            struct.pack(">H", len(cluster)),
            cluster,
            struct.pack(">I", len(context)),
            context,
        )
    )


def _seal_with_nonce(
    key: DataKey, kind: RecordKind, cluster_id: str, context: bytes, plaintext: bytes, nonce: bytes
) -> bytes:
    """Seal with a caller-chosen nonce: for test vectors only, never in the product."""
    if len(nonce) != NONCE_SIZE:
        raise ValueError("a nonce is 12 bytes")
    header = _HEADER.pack(RECORD_VERSION, int(key.algorithm), key.key_id, nonce)
    sealed = key._aead.encrypt(nonce, plaintext, _aad(header, kind, cluster_id, context))  # type: ignore[attr-defined]
    return header + sealed


def seal(key: DataKey, kind: RecordKind, cluster_id: str, context: bytes, plaintext: bytes) -> bytes:
    """Encrypt and authenticate ``plaintext`` for one place; a fresh random nonce every call."""
    return _seal_with_nonce(key, kind, cluster_id, context, plaintext, os.urandom(NONCE_SIZE))


def record_key_id(record: bytes) -> int:
    """The key id a record names (it is not secret)."""
    if len(record) < HEADER_SIZE + TAG_SIZE or record[0] != RECORD_VERSION:
        raise InvalidRecord(_FAILED)
    return int(_HEADER.unpack_from(record)[2])


def open_record(
    keys: Union[DataKey, KeySource], kind: RecordKind, cluster_id: str, context: bytes, record: bytes
) -> bytes:
    """Authenticate and decrypt a sealed record, or raise InvalidRecord."""
    if len(record) < HEADER_SIZE + TAG_SIZE:
        raise InvalidRecord(_FAILED)
    version, algorithm, key_id, nonce = _HEADER.unpack_from(record)
    if version != RECORD_VERSION or algorithm not in _AEADS.keys():
        raise InvalidRecord(_FAILED)
    if isinstance(keys, DataKey):
        if keys.key_id != key_id:
            raise InvalidRecord(f"sealed under unknown key id {key_id}")
        key = keys
    else:
        key = keys.get_key(key_id)
    if key.algorithm != algorithm:
        raise InvalidRecord(_FAILED)
    header = record[:HEADER_SIZE]
    try:
        return key._aead.decrypt(nonce, record[HEADER_SIZE:], _aad(header, kind, cluster_id, context))  # type: ignore[attr-defined]
    except InvalidTag:
        raise InvalidRecord(_FAILED) from None
