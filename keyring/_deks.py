"""Data-encryption keys, the keyring that holds their terms, and their wrapping.

A ``Keyring`` is immutable (as Vault's keyring is): rotation returns a new one
whose newest term is active; older terms stay readable until the caller drops
them. Keys at rest are always sealed records:

- the keyring, under the manager's KEK (key id field = KEK version);
- a rotated DEK, under the DEK it replaces (it travels through the Raft log);
- the node's TLS private key, under the KEK while autolock is on.

KEK = HKDF-SHA256(unlock key, salt = cluster id, info = "raftstore kek") with
autolock on; a random 32-byte key otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable

import msgpack
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ._errors import InvalidRecord
from ._seal import Algorithm, DataKey, RecordKind, open_record, record_key_id, seal
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
_KEK_INFO = b"raftstore kek"


@dataclass(frozen=True)
class Keyring:
    """The cluster's DEK terms; ``active_id`` seals new records."""

    keys: tuple[DataKey, ...]
    active_id: int

    def __post_init__(self) -> None:
        ids = [k.key_id for k in self.keys]
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate key ids in a keyring")
        if self.active_id not in ids:
            raise ValueError("the active key must be in the keyring")
        object.__setattr__(self, "keys", tuple(sorted(self.keys, key=lambda k: k.key_id)))
        object.__setattr__(self, "_by_id", {k.key_id: k for k in self.keys})

    @classmethod
    def generate(cls, algorithm: Algorithm = Algorithm.AES_256_GCM) -> "Keyring":
        return cls((DataKey.generate(1, algorithm),), 1)

    @property
    def active(self) -> DataKey:
        return self._by_id[self.active_id]  # type: ignore[attr-defined]

    @property
    def key_ids(self) -> tuple[int, ...]:
        return tuple(k.key_id for k in self.keys)

    def get_key(self, key_id: int) -> DataKey:
        try:
            return self._by_id[key_id]  # type: ignore[attr-defined]
        except KeyError:
            raise InvalidRecord(f"sealed under unknown key id {key_id}") from None

    def rotated(self, algorithm: Algorithm | None = None) -> "Keyring":
        new = DataKey.generate(max(self.key_ids) + 1, algorithm or self.active.algorithm)
        return Keyring(self.keys + (new,), new.key_id)

    def with_key(self, key: DataKey, active: bool = False) -> "Keyring":
        existing = self._by_id.get(key.key_id)  # type: ignore[attr-defined]
        if existing is not None:
            if existing != key:
                raise InvalidRecord(f"a different key with id {key.key_id} is already in the keyring")
            return Keyring(self.keys, key.key_id if active else self.active_id)
        return Keyring(self.keys + (key,), key.key_id if active else self.active_id)

    def without(self, key_ids: Iterable[int]) -> "Keyring":
        drop = set(key_ids)
        if self.active_id in drop:
            raise ValueError("the active key cannot leave the keyring")
        return Keyring(tuple(k for k in self.keys if k.key_id not in drop), self.active_id)

    def to_bytes(self) -> bytes:
        return msgpack.packb(
            {"active": self.active_id, "keys": [[k.key_id, int(k.algorithm), k.secret] for k in self.keys]},
            use_bin_type=True,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> "Keyring":
        try:
            raw = msgpack.unpackb(data, raw=False)
            keys = tuple(DataKey(int(i), bytes(s), Algorithm(int(a))) for i, a, s in raw["keys"])
            return cls(keys, int(raw["active"]))
        except Exception:
            raise InvalidRecord("keyring is malformed") from None

    def __repr__(self) -> str:
        return f"Keyring(key_ids={self.key_ids}, active_id={self.active_id})"


@dataclass(frozen=True)
class KeyEncryptionKey:
    version: int
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.secret, bytes) or len(self.secret) != 32:
            raise ValueError("a key-encryption key is 32 bytes")

    @classmethod
    def random(cls, version: int = 1) -> "KeyEncryptionKey":
        return cls(version, os.urandom(32))

    @classmethod
    def from_unlock_key(cls, unlock_key: UnlockKey, cluster_id: str, version: int) -> "KeyEncryptionKey":
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=cluster_id.encode(), info=_KEK_INFO)
        return cls(version, hkdf.derive(unlock_key.secret))

    def _as_data_key(self) -> DataKey:
        return DataKey(self.version, self.secret)


def wrap_keyring(keyring: Keyring, kek: KeyEncryptionKey, cluster_id: str) -> bytes:
    return seal(kek._as_data_key(), RecordKind.KEYRING, cluster_id, _KEYRING_CONTEXT, keyring.to_bytes())


def unwrap_keyring(blob: bytes, kek: KeyEncryptionKey, cluster_id: str) -> Keyring:
    plaintext = open_record(kek._as_data_key(), RecordKind.KEYRING, cluster_id, _KEYRING_CONTEXT, blob)
    return Keyring.from_bytes(plaintext)


def wrapped_kek_version(blob: bytes) -> int:
    return record_key_id(blob)


def _dek_context(key_id: int) -> bytes:
    return b"dek:" + key_id.to_bytes(4, "big")


def wrap_data_key(new_key: DataKey, under: DataKey, cluster_id: str) -> bytes:
    plaintext = msgpack.packb([new_key.key_id, int(new_key.algorithm), new_key.secret], use_bin_type=True)
    return _dek_context(new_key.key_id) + seal(under, RecordKind.KEYRING, cluster_id, _dek_context(new_key.key_id), plaintext)


def unwrap_data_key(blob: bytes, keys: Keyring | DataKey, cluster_id: str) -> DataKey:
    if len(blob) < 8 or not blob.startswith(b"dek:"):
        raise InvalidRecord("sealed record failed to open")
    context, record = blob[:8], blob[8:]
    plaintext = open_record(keys, RecordKind.KEYRING, cluster_id, context, record)
    try:
        key_id, algorithm, secret = msgpack.unpackb(plaintext, raw=False)
        key = DataKey(int(key_id), bytes(secret), Algorithm(int(algorithm)))
    except Exception:
        raise InvalidRecord("sealed record failed to open") from None
    if _dek_context(key.key_id) != context:
        raise InvalidRecord("sealed record failed to open")
    return key


def seal_private_key(pem: bytes, kek: KeyEncryptionKey, cluster_id: str) -> bytes:
    return seal(kek._as_data_key(), RecordKind.NODE_KEY, cluster_id, _NODE_KEY_CONTEXT, pem)


def open_private_key(blob: bytes, kek: KeyEncryptionKey, cluster_id: str) -> bytes:
    return open_record(kek._as_data_key(), RecordKind.NODE_KEY, cluster_id, _NODE_KEY_CONTEXT, blob)
