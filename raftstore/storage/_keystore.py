"""``keys/`` and the node's private key: what a manager keeps to open its own disk.

Files (all mode 0600)::

    keys/keyring                  the DEK keyring, sealed under the KEK; the record's
                                  key-id field is the KEK version
    keys/kek                      autolock off only: the KEK in plain form (version,
                                  secret). It protects nothing on a stolen disk.
    certificates/swarm-node.key   PEM with autolock off; with autolock on a record
                                  sealed under the KEK

Writes are ordered so that a crash at any point leaves a state that opens with
either the old or the new key: a plain KEK file whose version differs from the
keyring's is stale, and the manager then starts locked. With autolock on the
unlock key is never written anywhere; it is the KEK's only source.

This module is the only writer of ``keys/`` (DESIGN: every byte format has one
owner): a restore adopts a backup's wrapped keyring through ``adopt_keyring``
rather than laying the files out itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgpack

from ..keyring import (
    InvalidRecord,
    InvalidUnlockKey,
    KeyEncryptionKey,
    Keyring,
    StorageError,
    UnlockKey,
    open_private_key,
    private_key_matches_certificate,
    seal_private_key,
    unwrap_keyring,
    wrap_keyring,
    wrapped_kek_version,
)
from ._fsutil import atomic_write, fsync_directory
from ._node_state import StatePaths

__all__ = ["KeyStore"]

_PEM_PREFIX = b"-----BEGIN"


class KeyStore:
    """The ``keys/`` folder and node key of one manager of cluster ``cluster_id``."""

    def __init__(self, paths: StatePaths, cluster_id: str) -> None:
        self.paths = paths
        self.cluster_id = cluster_id
        self._keyring_path = paths.keys / "keyring"
        self._kek_path = paths.keys / "kek"

    def exists(self) -> bool:
        return self._keyring_path.exists()

    def _wrapped(self) -> bytes:
        try:
            return self._keyring_path.read_bytes()
        except FileNotFoundError:
            raise StorageError(f"{self._keyring_path} is missing: this manager's keys are gone") from None

    def kek_version(self) -> int:
        return wrapped_kek_version(self._wrapped())

    def _plain_kek(self) -> KeyEncryptionKey | None:
        try:
            raw = msgpack.unpackb(self._kek_path.read_bytes(), raw=False)
            kek = KeyEncryptionKey(int(raw["version"]), bytes(raw["secret"]))
        except FileNotFoundError:
            return None
        except Exception:
            raise StorageError(f"{self._kek_path} is damaged") from None
        if kek.version != self.kek_version():
            return None  # left over from an interrupted change to autolock
        return kek

    def has_plain_kek(self) -> bool:
        return self._plain_kek() is not None

    def needs_unlock_key(self) -> bool:
        """True when the keyring can only be opened with the operator's unlock key."""
        return self._plain_kek() is None

    def open_plain(self) -> tuple[Keyring, KeyEncryptionKey]:
        kek = self._plain_kek()
        if kek is None:
            raise InvalidUnlockKey("this manager is locked and needs its unlock key")
        try:
            return unwrap_keyring(self._wrapped(), kek, self.cluster_id), kek
        except InvalidRecord:
            raise InvalidRecord(f"{self._keyring_path} failed to open with {self._kek_path}") from None

    def open_with_unlock_key(self, unlock_key: UnlockKey) -> tuple[Keyring, KeyEncryptionKey]:
        """Derive the KEK and open the keyring; a wrong key changes nothing on disk."""
        wrapped = self._wrapped()
        kek = KeyEncryptionKey.from_unlock_key(unlock_key, self.cluster_id, wrapped_kek_version(wrapped))
        try:
            return unwrap_keyring(wrapped, kek, self.cluster_id), kek
        except InvalidRecord:
            raise InvalidUnlockKey() from None

    def save(self, keyring: Keyring, kek: KeyEncryptionKey, *, autolock: bool, node_key_pem: bytes,
             cert_chain_pem: bytes | None = None) -> None:
        """Write the keyring and node key under ``kek`` (crash-safe ordering, see module doc).

        With ``cert_chain_pem`` (a promotion: new role, new key) the key and its
        certificate go in together through ``install_certificate``.
        """
        if not autolock:
            self._write_plain_kek(kek.version, kek.secret)
        atomic_write(self._keyring_path, wrap_keyring(keyring, kek, self.cluster_id))
        if cert_chain_pem is None:
            self.write_node_key(node_key_pem, kek if autolock else None)
        else:
            self.install_certificate(cert_chain_pem, node_key_pem, kek if autolock else None)
        if autolock:
            try:
                os.unlink(self._kek_path)
            except FileNotFoundError:
                pass

    def save_keyring(self, keyring: Keyring, kek: KeyEncryptionKey) -> None:
        """Rewrite only the keyring, under the KEK it already uses (a DEK term came or went)."""
        atomic_write(self._keyring_path, wrap_keyring(keyring, kek, self.cluster_id))

    def adopt_keyring(self, wrapped_keyring: bytes, *, kek_version: int, plain_kek: bytes | None) -> None:
        """Make a keyring wrapped elsewhere (a backup's) this node's, as it stands: the same KEK opens it.

        ``plain_kek`` is the KEK's secret when the source had autolock off (it
        is kept beside the keyring, as ``save`` keeps it), None with autolock
        on (the unlock key stays the KEK's only source). Both are written as
        given; a KEK file that does not open is reported when the keys are opened.
        """
        atomic_write(self._keyring_path, wrapped_keyring)
        if plain_kek is not None:
            self._write_plain_kek(kek_version, plain_kek)

    def _write_plain_kek(self, version: int, secret: bytes) -> None:
        atomic_write(self._kek_path, msgpack.packb({"version": version, "secret": secret}))

    def write_node_key(self, pem: bytes, kek: KeyEncryptionKey | None) -> None:
        data = pem if kek is None else seal_private_key(pem, kek, self.cluster_id)
        atomic_write(self.paths.node_key, data)

    def read_node_key(self, kek: KeyEncryptionKey | None) -> bytes:
        path: Path = self.paths.node_key
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise StorageError(f"{path} is missing") from None
        if data.startswith(_PEM_PREFIX):
            pem = data
        elif kek is None:
            raise InvalidUnlockKey("the node key is sealed and this manager is locked")
        else:
            try:
                pem = open_private_key(data, kek, self.cluster_id)
            except InvalidRecord:
                raise InvalidRecord(f"{path} failed to open under this manager's key-encryption key") from None
        self._finish_pending_certificate(pem)
        return pem

    @property
    def pending_certificate(self) -> Path:
        return self.paths.node_cert.with_name(self.paths.node_cert.name + ".new")

    def install_certificate(self, chain_pem: bytes, key_pem: bytes, kek: KeyEncryptionKey | None) -> None:
        """Replace the node's key and certificate so that a crash leaves a matching pair.

        The certificate goes to a side file first, then the key, then the
        certificate into place; ``read_node_key`` finishes an interrupted one.
        """
        atomic_write(self.pending_certificate, chain_pem, mode=0o644)
        self.write_node_key(key_pem, kek)
        self._finish_pending_certificate(key_pem)

    def _finish_pending_certificate(self, key_pem: bytes) -> None:
        pending = self.pending_certificate
        try:
            chain = pending.read_bytes()
        except FileNotFoundError:
            return
        if private_key_matches_certificate(key_pem, chain):
            os.replace(pending, self.paths.node_cert)
        else:
            pending.unlink()  # the key never followed: the old pair stands
        fsync_directory(self.paths.certificates)
