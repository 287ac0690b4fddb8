"""Backups: ``snapshot save`` writes one file; ``snapshot restore`` rebuilds a one-manager cluster from it.

A backup is a snapshot file frame (checksummed) around a msgpack header and
two sealed records: the cluster's DEK keyring, wrapped under a backup KEK, and
the state of the store at one linearizable point, sealed under the active DEK
with the cluster id and the Raft position in its AAD. The backup KEK is the
cluster's own: derived from the unlock key when autolock is on (the backup
opens only with that key), or stored in the file when autolock is off (then the
backup, like the cluster's disks, protects nothing on its own).

Restoring on a fresh node, or with ``--force`` over a node of another cluster,
makes that node the only manager of the backup's cluster at the backup's
position: with autolock it starts locked and the source cluster's unlock key
opens it. The other managers of the old cluster can then join again. This
module owns the file and what a restore stages from it
(``write_pending_restore``); the node's role change is node/_transitions'.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgpack

from ..keyring import (
    InvalidArgument,
    InvalidRecord,
    KeyEncryptionKey,
    Keyring,
    RecordKind,
    UnlockKey,
    open_record,
    seal,
    wrap_keyring,
)
from ..storage import KeyStore, StatePaths, atomic_write, decode_snapshot, encode_snapshot

if TYPE_CHECKING:
    from ._manager import Manager

__all__ = ["Backup", "create_backup", "read_backup", "write_pending_restore", "PENDING_RESTORE"]

FORMAT = "raftstore-backup/1"
PENDING_RESTORE = "restore.pending"


def _context(index: int, term: int) -> bytes:
    return b"backup:" + struct.pack(">QQ", index, term)


@dataclass(frozen=True)
class Backup:
    cluster_id: str
    index: int
    term: int
    created_at: str
    autolock: bool
    kek_version: int
    plain_kek: bytes | None
    keyring_wrapped: bytes
    state_sealed: bytes
    raw: bytes

    def kek(self, unlock_key: UnlockKey | None) -> KeyEncryptionKey:
        if self.plain_kek is not None:
            return KeyEncryptionKey(self.kek_version, self.plain_kek)
        if unlock_key is None:
            raise InvalidArgument("this backup needs the source cluster's unlock key")
        return KeyEncryptionKey.from_unlock_key(unlock_key, self.cluster_id, self.kek_version)

    def open_state(self, keyring: Keyring) -> bytes:
        return open_record(keyring, RecordKind.SNAPSHOT, self.cluster_id, _context(self.index, self.term), self.state_sealed)


def create_backup(manager: "Manager", created_at: str) -> bytes:
    """A consistent backup: a barrier entry, then the state exactly as applied at that point."""
    state = manager.read_barrier()
    cluster = state.cluster()
    if cluster is None:
        raise InvalidArgument("the cluster object is not committed yet")
    spec = cluster["spec"]
    with state.lock:
        encoded = state.encode()
        index = state.applied_index
    term = int(manager.status().get("term") or 0)
    keyring = manager.keys.keyring
    cluster_id = manager.node.cluster_id
    autolock = bool(spec.get("autolock"))
    version = int(spec.get("kek_version", 1))
    if autolock:
        kek = KeyEncryptionKey.from_unlock_key(UnlockKey.parse(spec["unlock_key"]), cluster_id, version)
    else:
        kek = KeyEncryptionKey.random(version)
    header = {
        "format": FORMAT,
        "cluster_id": cluster_id,
        "index": index,
        "term": term,
        "created_at": created_at,
        "autolock": autolock,
        "kek_version": version,
        "plain_kek": None if autolock else kek.secret,
        "keyring": wrap_keyring(keyring, kek, cluster_id),
        "state": seal(keyring.active, RecordKind.SNAPSHOT, cluster_id, _context(index, term), encoded),
    }
    return encode_snapshot(index, term, msgpack.packb(header, use_bin_type=True))


def read_backup(data: bytes, source: str = "backup") -> Backup:
    index, term, payload = decode_snapshot(data, source)
    try:
        header = msgpack.unpackb(payload, raw=False)
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ValueError("not a backup header")
        backup = Backup(
            cluster_id=str(header["cluster_id"]),
            index=int(header["index"]),
            term=int(header["term"]),
            created_at=str(header["created_at"]),
            autolock=bool(header["autolock"]),
            kek_version=int(header["kek_version"]),
            plain_kek=bytes(header["plain_kek"]) if header["plain_kek"] is not None else None,
            keyring_wrapped=bytes(header["keyring"]),
            state_sealed=bytes(header["state"]),
            raw=data,
        )
    except Exception:  # msgpack raises several unrelated types for garbage
        raise InvalidRecord(f"{source} is not a raftstore backup") from None
    if (backup.index, backup.term) != (index, term):
        raise InvalidRecord(f"{source} is damaged: its position does not match its frame")
    return backup


def write_pending_restore(paths: StatePaths, backup: Backup, data: bytes) -> None:
    """Stage a restore in an emptied data directory: the backup's keys as this node's, and the backup itself.

    The node's restore (node/_transitions) finishes it once the keys are open.
    """
    # The backup's own wrapped keyring becomes this node's: the same KEK opens it.
    KeyStore(paths, backup.cluster_id).adopt_keyring(
        backup.keyring_wrapped, kek_version=backup.kek_version, plain_kek=backup.plain_kek
    )
    atomic_write(paths.root / PENDING_RESTORE, data)
