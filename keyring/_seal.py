"""Sealed records: the one byte format for everything raftstore encrypts at rest.

Layout (this module alone packs and parses it)::

    offset 0   version     1 byte    RECORD_VERSION (1)
    offset 1   algorithm   1 byte    Algorithm: 1 = AES-256-GCM, 2 = ChaCha20-Poly1305
    offset 2   key id      4 bytes   big-endian, 1 .. 2**32-1: the DEK term (or KEK version)
    offset 6   nonce      12 bytes   random, fresh for every record
    offset 18  ciphertext            as long as the plaintext
    end - 16   tag        16 bytes   the AEAD tag

The additional authenticated data binds a record to its place, so that a
record copied to another kind, cluster, position or key id fails to open.
Every variable field is length-prefixed, so no two places share an AAD::

    b"raftstore-seal"                    14 bytes, domain separation
    version | algorithm | key id         the first 6 header bytes, as written
    kind                                 1 byte, RecordKind
    len(cluster id) | cluster id         2 bytes big-endian, then UTF-8
    len(context) | context               4 bytes big-endian, then the bytes

``context`` is the record's position: ``entry_context`` (a log entry's 128-bit
proposal id), ``snapshot_context`` (a snapshot's Raft index and term) or a
fixed label for key records (see ``_deks``). The nonce needs no binding: the
AEAD authenticates it.

The key id in the header selects the key; readers never try keys in turn.
Every failure to open is ``InvalidRecord`` with one message (as Fernet folds
every failure into ``InvalidToken``), so that a reader learns nothing about
why; only an unknown key id says which id, because the id is not secret and
an operator needs it to find the missing term.
"""

from __future__ import annotations

import hmac
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
    "snapshot_chunk_context",
]

RECORD_VERSION = 1
NONCE_SIZE = 12
TAG_SIZE = 16
KEY_SIZE = 32
_HEAD = struct.Struct(">BBI")  # version, algorithm, key id: the part of the header the AAD repeats
HEADER_SIZE = _HEAD.size + NONCE_SIZE  # 18
_MIN_RECORD = HEADER_SIZE + TAG_SIZE
_MAX_KEY_ID = 2**32 - 1
_AAD_PREFIX = b"raftstore-seal"
_LEN16 = struct.Struct(">H").pack
_LEN32 = struct.Struct(">I").pack
_FAILED = "sealed record failed to open"
_BUFFERS = (bytes, bytearray, memoryview)


class Algorithm(IntEnum):
    AES_256_GCM = 1
    CHACHA20_POLY1305 = 2


class RecordKind(IntEnum):
    ENTRY = 1
    SNAPSHOT = 2
    KEYRING = 3
    NODE_KEY = 4


_AEADS = {Algorithm.AES_256_GCM: AESGCM, Algorithm.CHACHA20_POLY1305: ChaCha20Poly1305}


@dataclass(frozen=True, eq=False)
class DataKey:
    """One DEK (or KEK) term: the id that names it in every record it seals, and its secret.

    The AEAD object and the packed header are built once here, because a
    manager seals every log entry with the same key and rebuilding them per
    record would cost more than the encryption itself. Equality compares the
    secret in constant time; the repr never shows it.
    """

    key_id: int
    secret: bytes = field(repr=False)
    algorithm: Algorithm = Algorithm.AES_256_GCM

    def __post_init__(self) -> None:
        if isinstance(self.key_id, bool) or not isinstance(self.key_id, int) or not 0 < self.key_id <= _MAX_KEY_ID:
            raise ValueError("a key id is a whole number from 1 to 2**32-1")
        if not isinstance(self.secret, bytes) or len(self.secret) != KEY_SIZE:
            raise ValueError("a data key is 32 bytes")
        algorithm = Algorithm(self.algorithm)
        object.__setattr__(self, "key_id", int(self.key_id))
        object.__setattr__(self, "algorithm", algorithm)
        object.__setattr__(self, "_aead", _AEADS[algorithm](self.secret))
        object.__setattr__(self, "_head", _HEAD.pack(RECORD_VERSION, algorithm, self.key_id))
        object.__setattr__(self, "_places", {})

    @classmethod
    def generate(cls, key_id: int, algorithm: Algorithm = Algorithm.AES_256_GCM) -> "DataKey":
        """A fresh random key for term ``key_id``."""
        return cls(key_id, os.urandom(KEY_SIZE), algorithm)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DataKey):
            return NotImplemented
        return (
            self.key_id == other.key_id
            and self.algorithm == other.algorithm
            and hmac.compare_digest(self.secret, other.secret)
        )

    def __hash__(self) -> int:
        return hash((self.key_id, self.algorithm))  # not the secret: equal keys still hash alike

    def __repr__(self) -> str:
        return f"DataKey(key_id={self.key_id}, algorithm={self.algorithm.name}, secret=<redacted>)"

    # Immutable, so a copy is the key itself (the cached AEAD object cannot be copied).
    def __copy__(self) -> "DataKey":
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> "DataKey":
        return self

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a DataKey is never pickled: seal it (wrap_keyring) instead")


class KeySource(Protocol):
    """Anything that finds a key by id (a ``Keyring``); raises InvalidRecord for an unknown id."""

    def get_key(self, key_id: int) -> DataKey: ...


def entry_context(entry_id: bytes) -> bytes:
    """The place of a log entry: its 128-bit entry id, drawn at random each time an entry is sealed.

    One entry carries a batch of proposals (group commit), so the id is unique
    per entry, not per proposal; each proposal's own id travels inside the
    plaintext. An entry resubmitted unchanged keeps its id; one resealed (its
    DEK term was retired while it was in flight) draws a new one.

    Raises:
        ValueError: ``entry_id`` is not exactly 16 bytes.
    """
    if not isinstance(entry_id, bytes) or len(entry_id) != 16:
        raise ValueError("a log entry id is 16 bytes")
    return b"entry:" + entry_id


def snapshot_context(index: int, term: int) -> bytes:
    """The place of a snapshot: the Raft index and term it was taken at.

    Raises:
        ValueError: index or term is not a whole number in 0 .. 2**64-1.
    """
    for value in (index, term):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
            raise ValueError("a snapshot index and term are whole numbers from 0 to 2**64-1")
    return b"snapshot:" + struct.pack(">QQ", index, term)


def snapshot_chunk_context(index: int, term: int, number: int, final: bool) -> bytes:
    """The place of one chunk of a snapshot: its snapshot's index and term, its number, and whether it is the last.

    A snapshot too large to seal as one record (an AEAD call has a size limit,
    and one call over a gigabyte holds the interpreter) is a sequence of
    records. Binding the number stops chunks from being reordered, dropped or
    repeated; binding ``final`` stops a file cut at a chunk boundary from
    passing as whole (the STREAM construction of Hoang, Reyhanitabar, Rogaway
    and Vizar).

    Raises:
        ValueError: a number is not a whole number in 0 .. 2**64-1.
    """
    for value in (index, term, number):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
            raise ValueError("a snapshot index, term and chunk number are whole numbers from 0 to 2**64-1")
    return b"snapshot-chunk:" + struct.pack(">QQQ?", index, term, number, bool(final))


def _aad_start(key: DataKey, kind: RecordKind, cluster_id: str) -> bytes:
    """The AAD up to the context: prefix, header fields, kind and cluster id.

    Cached per key and place: a manager seals every entry of one cluster with
    one key, so this is one dictionary hit per record (bounded anyway).
    """
    places: dict[tuple[int, str], bytes] = key._places  # type: ignore[attr-defined]
    try:
        return places[(kind, cluster_id)]
    except (KeyError, TypeError):
        pass
    if not isinstance(cluster_id, str):
        raise TypeError("a cluster id is a str")
    cluster = cluster_id.encode("utf-8")
    if len(cluster) > 0xFFFF:
        raise ValueError("a cluster id is at most 65535 bytes")
    start: bytes = _AAD_PREFIX + key._head + bytes([RecordKind(kind)]) + _LEN16(len(cluster)) + cluster  # type: ignore[attr-defined]
    if len(places) >= 64:
        places.clear()
    places[(int(kind), cluster_id)] = start
    return start


def _seal_with_nonce(
    key: DataKey, kind: RecordKind, cluster_id: str, context: bytes, plaintext: bytes, nonce: bytes
) -> bytes:
    """Seal with a caller-chosen nonce: for test vectors only, never in the product.

    ``seal`` repeats these lines instead of calling this, to save a call per
    record; a test checks that the two agree byte for byte.
    """
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_SIZE:
        raise ValueError("a nonce is 12 bytes")
    aad = _aad_start(key, kind, cluster_id) + _LEN32(len(context)) + context
    return key._head + nonce + key._aead.encrypt(nonce, plaintext, aad)  # type: ignore[attr-defined,no-any-return]


def seal(key: DataKey, kind: RecordKind, cluster_id: str, context: bytes, plaintext: bytes) -> bytes:
    """Encrypt and authenticate ``plaintext`` for one place (kind, cluster, context).

    A fresh random 96-bit nonce is drawn for every call. With random nonces a
    key must seal well under 2**32 records, which is why a DEK is rotated
    after 2**31 (the caller counts).

    Raises:
        ValueError / TypeError: a malformed argument (a bug in the caller).
    """
    nonce = os.urandom(NONCE_SIZE)
    try:
        start = key._places[kind, cluster_id]  # type: ignore[attr-defined]
    except (KeyError, TypeError):
        start = _aad_start(key, kind, cluster_id)
    aad = start + _LEN32(len(context)) + context
    return key._head + nonce + key._aead.encrypt(nonce, plaintext, aad)  # type: ignore[attr-defined,no-any-return]


def record_key_id(record: bytes) -> int:
    """The key id a record names (it is not secret): which term a reader needs.

    Raises:
        InvalidRecord: too short to be a record, or an unknown format version.
    """
    if not isinstance(record, _BUFFERS) or len(record) < _MIN_RECORD or record[0] != RECORD_VERSION:
        raise InvalidRecord(_FAILED)
    return int(_HEAD.unpack_from(record)[2])


def open_record(
    keys: Union[DataKey, KeySource], kind: RecordKind, cluster_id: str, context: bytes, record: bytes
) -> bytes:
    """Authenticate and decrypt a sealed record that must belong to this place.

    ``keys`` is one key or a key source (a ``Keyring``); the key id in the
    header picks the key.

    Raises:
        InvalidRecord: "sealed record failed to open" for a truncated, garbled,
            forged or moved record; "sealed under unknown key id N" when the
            key source has no term N.
    """
    if not isinstance(record, _BUFFERS) or len(record) < _MIN_RECORD:
        raise InvalidRecord(_FAILED)
    version, algorithm, key_id = _HEAD.unpack_from(record)
    if version != RECORD_VERSION or algorithm not in _AEADS:
        raise InvalidRecord(_FAILED)
    if isinstance(keys, DataKey):
        if keys.key_id != key_id:
            raise InvalidRecord(f"sealed under unknown key id {key_id}")
        key = keys
    else:
        key = keys.get_key(key_id)
    if key.key_id != key_id or key.algorithm != algorithm:
        raise InvalidRecord(_FAILED)
    # The header fields were just checked equal to the key's, so the key's cached AAD start is this record's.
    try:
        start = key._places[kind, cluster_id]  # type: ignore[attr-defined]
    except (KeyError, TypeError):
        start = _aad_start(key, kind, cluster_id)
    aad = start + _LEN32(len(context)) + context
    try:
        return key._aead.decrypt(record[6:HEADER_SIZE], record[HEADER_SIZE:], aad)  # type: ignore[attr-defined,no-any-return]
    except InvalidTag:
        raise InvalidRecord(_FAILED) from None
