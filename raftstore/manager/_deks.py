"""The data-encryption keys of one manager, from birth to purge (as swarmkit's ``deks.go``).

A DEK term is born when the leader proposes a ``rotate_dek`` action (because
autolock changed, an operator asked, or the active term has sealed
``ROTATE_DEK_AFTER`` entries), lives while records on this disk are sealed
under it, and dies when the state machine has retired it and no segment or
snapshot here still needs it. The KEK that wraps the keyring on disk follows
the unlock key recorded in the store.

Every step here ends in the keystore (the only writer of ``keys/``) before the
in-memory keyring changes, so a crash leaves the disk with at least the keys
its records need. The Raft log is reached only through the few operations a
key change needs: roll to a fresh segment, snapshot, sync.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from ..keyring import (
    DataKey,
    KeyEncryptionKey,
    Keyring,
    RaftstoreError,
    UnlockKey,
    unwrap_data_key,
    wrap_data_key,
)
from ..raft import CurrentKeyring, RaftNode, snapshot_key_id
from ..state import StateMachine
from ..storage import KeyStore

__all__ = ["DataKeys", "ROTATE_DEK_AFTER", "ROTATE_DEK_AFTER_ENV", "dek_rotation_threshold"]

#: A DEK seals at most 2**31 records (random 96-bit nonces); the leader rotates
#: it once the log holds 2**30 entries sealed under it, which leaves room for
#: the seals the count leaves out (each manager's own control entries and
#: snapshots, proposals that never committed) and for a slow rotation.
ROTATE_DEK_AFTER = 2**30
#: Tests lower the threshold with this; it can only lower it, never raise it.
ROTATE_DEK_AFTER_ENV = "RAFTSTORE_TEST_ROTATE_DEK_AFTER"


def dek_rotation_threshold() -> int:
    """``ROTATE_DEK_AFTER``, or the lower number a test set in the environment."""
    try:
        lowered = int(os.environ.get(ROTATE_DEK_AFTER_ENV, ROTATE_DEK_AFTER))
    except ValueError:
        return ROTATE_DEK_AFTER
    return max(1, min(lowered, ROTATE_DEK_AFTER))


class DataKeys:
    """The keyring and KEK of a running manager, and each change to them."""

    def __init__(
        self,
        *,
        cluster_id: str,
        keys: CurrentKeyring,
        kek: KeyEncryptionKey,
        keystore: KeyStore,
        raft: RaftNode,
        state: StateMachine,
        raft_dir: Path,
        node_key_pem: Callable[[], bytes],
        propose: Callable[[list[dict[str, Any]]], Any],
        barrier: Callable[[float], Any],
        fetch_keyring: Callable[[], Keyring] | None,
        log: Callable[[str], None],
    ) -> None:
        self.keys = keys
        self.kek = kek
        self._cluster_id = cluster_id
        self._keystore = keystore
        self._raft = raft
        self._state = state
        self._raft_dir = raft_dir
        self._node_key_pem = node_key_pem
        self._propose = propose
        self._barrier = barrier
        self._fetch_keyring = fetch_keyring
        self._log = log
        self._rotate_after = dek_rotation_threshold()
        self._last_purge = 0.0

    def _save(self, keyring: Keyring) -> None:
        self._keystore.save_keyring(keyring, self.kek)
        self.keys.keyring = keyring

    # ----------------------------------------------------------------- birth

    def new_dek_action(self) -> dict[str, Any]:
        """A ``rotate_dek`` action: a fresh DEK sealed under the current one."""
        keyring = self.keys.keyring
        new_id = max(max(keyring.key_ids), self._state.active_key_id) + 1
        key = DataKey.generate(new_id, keyring.active.algorithm)
        return {"op": "rotate_dek", "key_id": key.key_id, "wrapped": wrap_data_key(key, keyring.active, self._cluster_id)}

    def rotate_if_worn(self) -> None:
        """On the leader: rotate the DEK once the log holds ``ROTATE_DEK_AFTER`` entries sealed under it.

        Only the leader proposes, and the state machine refuses a rotation to
        a term that is not newer, so two managers never rotate twice.
        """
        active = self.keys.keyring.active_id
        sealed = self._state.records_sealed(active)
        if sealed < self._rotate_after or not self._raft.status().get("is_leader"):
            return
        self._log(f"data encryption key term {active} has sealed {sealed} log entries: rotating it")
        try:
            self._propose([self.new_dek_action()])
        except RaftstoreError as error:
            self._log(f"data encryption key rotation failed, retrying: {error}")

    def add_rotated(self, key_id: int, wrapped: bytes) -> None:
        """A committed rotation: keep the new term, and start sealing under it in a fresh segment."""
        keyring = self.keys.keyring
        if key_id in keyring.key_ids:
            return  # replaying a rotation this disk already has
        key = unwrap_data_key(wrapped, keyring, self._cluster_id)
        self._save(keyring.with_key(key, active=key_id > keyring.active_id))
        self._log(f"data encryption key rotated to term {key_id}")
        self._raft.journal.roll()
        self._raft.force_snapshot()

    def fetch_missing(self, key_id: int) -> bool:
        """Merge the cluster keyring from a peer manager into ours (tick thread, bounded)."""
        if self._fetch_keyring is None:
            return False
        try:
            theirs = self._fetch_keyring()
        except RaftstoreError as error:
            self._log(f"cannot fetch data key term {key_id} from another manager: {error}")
            return False
        keyring = self.keys.keyring
        for key in theirs.keys:
            if key.key_id not in keyring.key_ids:
                keyring = keyring.with_key(key, active=key.key_id > keyring.active_id)
        self._save(keyring)
        self._log(f"fetched data key term(s) {sorted(set(keyring.key_ids))} from another manager")
        return key_id in keyring.key_ids

    # ----------------------------------------------------------------- the KEK

    def follow_unlock_key(self) -> None:
        """Re-wrap our keys when the store has a newer unlock key (or autolock setting)."""
        cluster = self._state.cluster()
        if cluster is None:
            return
        spec = cluster["spec"]
        version = int(spec.get("kek_version", 1))
        if version <= self.kek.version:
            return
        if spec.get("autolock"):
            kek = KeyEncryptionKey.from_unlock_key(UnlockKey.parse(spec["unlock_key"]), self._cluster_id, version)
        else:
            kek = KeyEncryptionKey.random(version)
        self._keystore.save(self.keys.keyring, kek, autolock=bool(spec.get("autolock")), node_key_pem=self._node_key_pem())
        self.kek = kek
        self._log(
            f"keys re-wrapped under key-encryption key version {version} (autolock {'on' if spec.get('autolock') else 'off'})"
        )

    # ----------------------------------------------------------------- death

    def purge_retired(self) -> None:
        """Forget retired terms once nothing on this disk is sealed under them; else make that happen."""
        keyring = self.keys.keyring
        retired_below = self._state.retired_below
        old = [k for k in keyring.key_ids if k < retired_below]
        if not old:
            return
        on_disk = set(self._raft.journal.disk_key_ids())
        snapshot_key = snapshot_key_id(self._raft_dir / "snapshot")
        if snapshot_key is not None:
            on_disk.add(snapshot_key)
        removable = [k for k in old if k not in on_disk]
        if removable:
            # The deletion of the last segment that needed them must be durable
            # before the keyring forgets them, or a crash could bring back
            # records (and chain tags) that no key opens.
            self._raft.journal.sync()
            self._save(keyring.without(removable))
            self._log(f"retired data encryption key term(s) {', '.join(map(str, removable))} removed")
        elif time.monotonic() - self._last_purge > 1.0:
            # Old terms still seal records on disk. Start a fresh segment, put
            # an entry in it (an idle cluster has none to compact past) and
            # snapshot under the new term: once the snapshot's predecessor
            # entry lies in the new segment, the old segments are deleted.
            self._last_purge = time.monotonic()
            self._raft.journal.roll()
            try:
                self._barrier(5.0)
            except RaftstoreError:
                return
            self._raft.force_snapshot()
