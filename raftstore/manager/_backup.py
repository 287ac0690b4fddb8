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
opens it. The other managers of the old cluster can then join again.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

from ..node._bootstrap import clear_partial, node_record_action
from ._external_ca import issue_node_certificate
from ..storage._fsutil import atomic_write
from ..storage._keystore import KeyStore
from ..storage._node_state import NodeState
from ..raft import CurrentKeyring, install_single_member
from ..storage._snapshot_file import decode_snapshot, encode_snapshot
from ..state._state_machine import StateMachine
from ..keyring import (
    MANAGER_ROLE,
    InvalidArgument,
    InvalidRecord,
    KeyEncryptionKey,
    Keyring,
    RecordKind,
    UnlockKey,
    generate_private_key,
    make_csr,
    new_id,
    open_record,
    seal,
    wrap_keyring,
)

if TYPE_CHECKING:
    from ..node._daemon import Daemon
    from ._manager import Manager

__all__ = ["Backup", "create_backup", "read_backup", "PENDING_RESTORE"]

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


def stage_restore(daemon: "Daemon", data: bytes, *, force: bool, listen_addr: str, advertise_addr: str) -> NodeState:
    """Write what the restored node needs to open (keys, state.json, the pending backup); nothing Raft yet."""
    backup = read_backup(data)
    node = daemon.node
    if node is not None and not force:
        if node.cluster_id != backup.cluster_id:
            raise InvalidArgument(
                f"this backup is of cluster {backup.cluster_id}, and this node belongs to cluster {node.cluster_id}; "
                "use --force to replace this node's data with it"
            )
        raise InvalidArgument(
            f"this node is already part of cluster {node.cluster_id}; restoring replaces its data: use --force"
        )
    daemon.become_inactive()
    clear_partial(daemon.paths)
    # The backup's own wrapped keyring becomes this node's: the same KEK opens it.
    KeyStore(daemon.paths, backup.cluster_id).adopt_keyring(
        backup.keyring_wrapped, kek_version=backup.kek_version, plain_kek=backup.plain_kek
    )
    atomic_write(daemon.paths.root / PENDING_RESTORE, data)
    restored = NodeState.sole_manager(backup.cluster_id, new_id(), listen_addr, advertise_addr)
    restored.save(daemon.paths.state_file)
    return restored


def complete_restore(daemon: "Daemon", node: NodeState, keyring: Keyring, kek: KeyEncryptionKey) -> bytes:
    """With the keys open: certificates for this node, and a one-member Raft at the backup's position.

    Returns the node's private key (PEM). The pending file is removed last, so
    a crash anywhere before that repeats the whole step.
    """
    pending = daemon.paths.root / PENDING_RESTORE
    backup = read_backup(pending.read_bytes(), str(pending))
    state_bytes = backup.open_state(keyring)
    state = StateMachine()
    state.load(msgpack.unpackb(state_bytes, raw=False))
    cluster = state.cluster()
    if cluster is None:
        raise InvalidRecord(f"{pending} holds no cluster object")
    spec = cluster["spec"]
    key_pem = generate_private_key()
    chain = issue_node_certificate(spec, make_csr(key_pem), node_id=node.node_id, cluster_id=node.cluster_id,
                                   role=MANAGER_ROLE, now=daemon.clock.now())
    atomic_write(daemon.paths.root_ca, spec["root_ca"]["cert_pem"], mode=0o644)
    atomic_write(daemon.paths.node_cert, chain, mode=0o644)
    keystore = KeyStore(daemon.paths, node.cluster_id)
    keystore.write_node_key(key_pem, None if keystore.has_plain_kek() else kek)
    last = (bytes([1]), backup.index, backup.term)
    prev = (bytes([1]), backup.index - 1, backup.term)
    install_single_member(
        daemon.paths.raft, CurrentKeyring(keyring, node.cluster_id), last, prev, (node.node_id, node.advertise_addr),
        state_bytes, daemon.log,
    )
    pending.unlink()
    daemon.log(f"restored cluster {node.cluster_id} from a backup at index {backup.index}; this node is its only manager")
    return key_pem


def restored_node_record(node: NodeState) -> dict[str, Any]:
    return node_record_action(node.node_id, "manager", node.advertise_addr, socket.gethostname())


__all__ += ["stage_restore", "complete_restore", "restored_node_record"]
