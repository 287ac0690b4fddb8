"""Data-encryption keys, the keyring that holds their terms, and their wrapping.

A ``Keyring`` is immutable (as Vault's keyring is): rotation returns a new one
whose newest term is active; older terms stay readable until the caller drops
them. Keys at rest are always sealed records (``_seal``):

- the keyring, under the manager's KEK: kind KEYRING, key id field = KEK
  version, context ``b"keyring"``;
- a rotated DEK, under the DEK it replaces (it travels through the Raft log):
  kind KEYRING, context ``b"dek:" + new key id (4 bytes, big-endian)``;
- the node's TLS private key, under the KEK while autolock is on: kind
  NODE_KEY, context ``b"node-key"``.

KEK = HKDF-SHA256(ikm = unlock key, salt = cluster id, info = "raftstore kek")
with autolock on; a random 32-byte key otherwise.

The keyring's plaintext is msgpack: ``{"active": int, "keys": [[key id,
algorithm, secret], ...]}``, nothing else. A later format would add a ``"v"``
field; its absence means this one.
"""

from __future__ import annotations

import hmac
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Iterable, Union

import msgpack
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ._errors import InvalidRecord
from ._seal import Algorithm, DataKey, KeySource, RecordKind, open_record, record_key_id, seal
from ._unlock import UnlockKey

__all__ = [
    "Keyring",
    "KeyEncryptionKey",
    "wrap_keyring",
    "unwrap_keyring",
    "wrapped_kek_version",
    "wrap_data_key",
    "unwrap_data_key",
    "seal_private_key",
    "open_private_key",
]

_KEYRING_CONTEXT = b"keyring"
_NODE_KEY_CONTEXT = b"node-key"
_DEK_PREFIX = b"dek:"
_DEK_HEADER = len(_DEK_PREFIX) + 4
_KEK_INFO = b"raftstore kek"
_FAILED = "sealed record failed to open"
_MALFORMED_KEYRING = "keyring is malformed"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Keyring:
    """The cluster's DEK terms; ``active_id`` seals new records.

    Every change returns a new Keyring, so a reader holding one never sees it
    change under it. The repr lists key ids only.
    """

    keys: tuple[DataKey, ...]
    active_id: int

    def __post_init__(self) -> None:
        keys = tuple(self.keys)
        if not all(isinstance(k, DataKey) for k in keys):
            raise TypeError("a keyring holds DataKeys")
        ids = [k.key_id for k in keys]
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate key ids in a keyring")
        if self.active_id not in ids:
            raise ValueError("the active key must be in the keyring")
        object.__setattr__(self, "keys", tuple(sorted(keys, key=lambda k: k.key_id)))
        object.__setattr__(self, "_by_id", {k.key_id: k for k in keys})

    @classmethod
    def generate(cls, algorithm: Algorithm = Algorithm.AES_256_GCM) -> "Keyring":
        """A new cluster's keyring: one random key, term 1."""
        return cls((DataKey.generate(1, algorithm),), 1)

    @property
    def active(self) -> DataKey:
        """The key that seals new records."""
        return self._by_id[self.active_id]  # type: ignore[attr-defined,no-any-return]

    @property
    def key_ids(self) -> tuple[int, ...]:
        return tuple(k.key_id for k in self.keys)

    def get_key(self, key_id: int) -> DataKey:
        """The key of term ``key_id`` (what ``open_record`` asks a key source).

        Raises:
            InvalidRecord: "sealed under unknown key id N".
        """
        try:
            return self._by_id[key_id]  # type: ignore[attr-defined,no-any-return]
        except (KeyError, TypeError):
            raise InvalidRecord(f"sealed under unknown key id {key_id}") from None

    def rotated(self, algorithm: Algorithm | None = None) -> "Keyring":
        """A keyring with a new random term (max + 1) that becomes active; older terms stay."""
        new = DataKey.generate(max(self.key_ids) + 1, algorithm or self.active.algorithm)
        return Keyring(self.keys + (new,), new.key_id)

    def with_key(self, key: DataKey, active: bool = False) -> "Keyring":
        """A keyring that also holds ``key`` (a term learnt from the log or a peer).

        Adding a key that is already here is a no-op (replays are harmless).

        Raises:
            InvalidRecord: a different key already holds this id.
        """
        existing = self._by_id.get(key.key_id)  # type: ignore[attr-defined]
        if existing is not None:
            if existing != key:
                raise InvalidRecord(f"a different key with id {key.key_id} is already in the keyring")
            return Keyring(self.keys, key.key_id if active else self.active_id)
        return Keyring(self.keys + (key,), key.key_id if active else self.active_id)

    def without(self, key_ids: Iterable[int]) -> "Keyring":
        """A keyring without the given terms (once no record on disk uses them).

        Raises:
            ValueError: the active key is among them.
        """
        drop = set(key_ids)
        if self.active_id in drop:
            raise ValueError("the active key cannot leave the keyring")
        return Keyring(tuple(k for k in self.keys if k.key_id not in drop), self.active_id)

    def to_bytes(self) -> bytes:
        """The plaintext form (msgpack); it holds every secret, so only ever seal it."""
        packed: bytes = msgpack.packb(
            {"active": self.active_id, "keys": [[k.key_id, int(k.algorithm), k.secret] for k in self.keys]},
            use_bin_type=True,
        )
        return packed

    @classmethod
    def from_bytes(cls, data: bytes) -> "Keyring":
        """Parse ``to_bytes`` output, strictly.

        Raises:
            InvalidRecord: anything that is not exactly a keyring.
        """
        try:
            raw: Any = msgpack.unpackb(data, raw=False, strict_map_key=True)
        except Exception:  # msgpack raises several types (ValueError, ExtraData, FormatError, ...)
            raise InvalidRecord(_MALFORMED_KEYRING) from None
        if not isinstance(raw, dict) or set(raw) != {"active", "keys"}:
            raise InvalidRecord(_MALFORMED_KEYRING)
        active, entries = raw["active"], raw["keys"]
        if not _is_int(active) or not isinstance(entries, list):
            raise InvalidRecord(_MALFORMED_KEYRING)
        keys = []
        for entry in entries:
            if not (isinstance(entry, list) and len(entry) == 3):
                raise InvalidRecord(_MALFORMED_KEYRING)
            key_id, algorithm, secret = entry
            if not (_is_int(key_id) and _is_int(algorithm) and isinstance(secret, bytes)):
                raise InvalidRecord(_MALFORMED_KEYRING)
            try:
                keys.append(DataKey(key_id, secret, Algorithm(algorithm)))
            except ValueError:
                raise InvalidRecord(_MALFORMED_KEYRING) from None
        try:
            return cls(tuple(keys), active)
        except ValueError:
            raise InvalidRecord(_MALFORMED_KEYRING) from None

    def __repr__(self) -> str:
        return f"Keyring(key_ids={self.key_ids}, active_id={self.active_id})"


@dataclass(frozen=True, eq=False)
class KeyEncryptionKey:
    """The key that wraps a manager's keyring (and node key) on disk.

    ``version`` goes in the key id field of what it seals, so a manager can
    tell which unlock key a file on its disk needs. Equality is constant-time;
    the repr never shows the secret.
    """

    version: int
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not _is_int(self.version) or not 0 < self.version < 2**32:
            raise ValueError("a key-encryption key version is a whole number from 1 to 2**32-1")
        if not isinstance(self.secret, bytes) or len(self.secret) != 32:
            raise ValueError("a key-encryption key is 32 bytes")
        object.__setattr__(self, "_key", DataKey(self.version, self.secret))

    @classmethod
    def random(cls, version: int = 1) -> "KeyEncryptionKey":
        """Autolock off: a random KEK, stored in plain form beside the keyring."""
        return cls(version, os.urandom(32))

    @classmethod
    def from_unlock_key(cls, unlock_key: UnlockKey, cluster_id: str, version: int) -> "KeyEncryptionKey":
        """Autolock on: HKDF-SHA256(unlock key, salt = cluster id, info = "raftstore kek").

        Salting with the cluster id means one unlock key pasted into two
        clusters still yields two different KEKs.
        """
        if not isinstance(unlock_key, UnlockKey):
            raise TypeError("from_unlock_key takes an UnlockKey (parse the text first)")
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=cluster_id.encode("utf-8"), info=_KEK_INFO)
        return cls(version, hkdf.derive(unlock_key.secret))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeyEncryptionKey):
            return NotImplemented
        return self.version == other.version and hmac.compare_digest(self.secret, other.secret)

    def __hash__(self) -> int:
        return hash(self.version)

    def __repr__(self) -> str:
        return f"KeyEncryptionKey(version={self.version}, secret=<redacted>)"


def wrap_keyring(keyring: Keyring, kek: KeyEncryptionKey, cluster_id: str) -> bytes:
    """The keyring sealed under the KEK, for ``keys/`` on disk."""
    return seal(kek._key, RecordKind.KEYRING, cluster_id, _KEYRING_CONTEXT, keyring.to_bytes())  # type: ignore[attr-defined]


def unwrap_keyring(blob: bytes, kek: KeyEncryptionKey, cluster_id: str) -> Keyring:
    """Open a wrapped keyring.

    Raises:
        InvalidRecord: wrong KEK (wrong unlock key), another cluster, or damage.
    """
    plaintext = open_record(kek._key, RecordKind.KEYRING, cluster_id, _KEYRING_CONTEXT, blob)  # type: ignore[attr-defined]
    return Keyring.from_bytes(plaintext)


def wrapped_kek_version(blob: bytes) -> int:
    """Which KEK version a wrapped keyring (or sealed node key) needs.

    Raises:
        InvalidRecord: not a sealed record.
    """
    return record_key_id(blob)


def _dek_context(key_id: int) -> bytes:
    return _DEK_PREFIX + struct.pack(">I", key_id)


def wrap_data_key(new_key: DataKey, under: DataKey, cluster_id: str) -> bytes:
    """A new DEK sealed under the current one, for the rotation log entry.

    Layout: ``b"dek:" | new key id (4, BE) | sealed record``; the prefix is
    the record's context, so the new id is bound into the AAD and readable
    before opening.
    """
    context = _dek_context(new_key.key_id)
    plaintext = msgpack.packb([new_key.key_id, int(new_key.algorithm), new_key.secret], use_bin_type=True)
    return context + seal(under, RecordKind.KEYRING, cluster_id, context, plaintext)


def unwrap_data_key(blob: bytes, keys: Union[Keyring, DataKey, KeySource], cluster_id: str) -> DataKey:
    """Open a rotation entry's DEK with the keyring (its header names the sealing term).

    Raises:
        InvalidRecord: damaged, forged, another cluster, or sealed under a
            term this keyring lacks ("sealed under unknown key id N").
    """
    if not isinstance(blob, bytes) or len(blob) < _DEK_HEADER or not blob.startswith(_DEK_PREFIX):
        raise InvalidRecord(_FAILED)
    context, record = blob[:_DEK_HEADER], blob[_DEK_HEADER:]
    plaintext = open_record(keys, RecordKind.KEYRING, cluster_id, context, record)
    try:
        key_id, algorithm, secret = msgpack.unpackb(plaintext, raw=False)
        key = DataKey(key_id, secret, Algorithm(algorithm))
    except Exception:  # authenticated but not ours: a bug elsewhere, still one error
        raise InvalidRecord(_FAILED) from None
    if _dek_context(key.key_id) != context:
        raise InvalidRecord(_FAILED)
    return key


def seal_private_key(pem: bytes, kek: KeyEncryptionKey, cluster_id: str) -> bytes:
    """The node's TLS private key sealed under the KEK (autolock on)."""
    return seal(kek._key, RecordKind.NODE_KEY, cluster_id, _NODE_KEY_CONTEXT, pem)  # type: ignore[attr-defined]


def open_private_key(blob: bytes, kek: KeyEncryptionKey, cluster_id: str) -> bytes:
    """Open a sealed node key.

    Raises:
        InvalidRecord: wrong KEK, another cluster, or damage.
    """
    return open_record(kek._key, RecordKind.NODE_KEY, cluster_id, _NODE_KEY_CONTEXT, blob)  # type: ignore[attr-defined]
