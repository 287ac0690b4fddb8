"""A running manager: Raft, the state machine, the proposer and the keys in memory.

A ``Manager`` exists only while this node is unlocked; a locked manager is
just a data directory and a daemon that answers "locked". The manager owns
the apply path: it opens each committed entry with the DEK named in the
record, hands the batch to the state machine, and carries out the effects the
state machine reports (a new DEK, a new unlock key) on its own disk.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable, Iterator

import msgpack

from ..storage import BenchmarkSwitches
from ..storage import KeyStore
from ..telemetry import LEADER_CHANGES, SEAL_SECONDS
from ..storage import NodeState, StatePaths
from ._proposer import RETIRED, Proposer
from ..raft import FAIL_REASONS, CurrentKeyring, RaftConfig, RaftNode, parse_envelope, seal_envelope, unsealed_envelope
from ..storage import read_snapshot
from ..state import Outcome, StateMachine, decode_proposal
from ..net import TlsIdentity, client_context
from ..keyring import (
    DataKey,
    InvalidArgument,
    InvalidRecord,
    KeyEncryptionKey,
    Keyring,
    RaftstoreError,
    Timeout,
    UnlockKey,
    Unavailable,
    error_class,
    record_key_id,
    unwrap_data_key,
    wrap_data_key,
)

__all__ = ["Manager", "raise_for_outcome", "ROTATE_DEK_AFTER", "ROTATE_DEK_AFTER_ENV", "dek_rotation_threshold"]

log = logging.getLogger("raftstore.manager")

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


def raise_for_outcome(outcome: Outcome) -> list[Any]:
    if not outcome.ok:
        raise error_class(outcome.error_code)(outcome.error_message)
    return outcome.results


class Manager:
    def __init__(
        self,
        *,
        paths: StatePaths,
        node: NodeState,
        keystore: KeyStore,
        keyring: Keyring,
        kek: KeyEncryptionKey,
        node_key_pem: bytes,
        clock: Callable[[], str],
        on_fatal: Callable[[str], None],
        raft_config: RaftConfig = RaftConfig(),
        event_log: Callable[[str], None] = log.info,
        hold_elections: bool = False,
        fetch_keyring: Callable[[], Keyring] | None = None,
        on_root_change: Callable[[], None] = lambda: None,
        benchmark: BenchmarkSwitches = BenchmarkSwitches(),
    ) -> None:
        self.paths = paths
        self.node = node
        self.keystore = keystore
        self.kek = kek
        self.keys = CurrentKeyring(keyring, node.cluster_id)
        self._node_key_pem = node_key_pem
        self._clock = clock
        self._on_fatal = on_fatal
        self._event_log = event_log
        self._fetch_keyring = fetch_keyring
        self._on_root_change = on_root_change
        self._benchmark = benchmark
        self.state = StateMachine()
        self.applied = threading.Condition()
        self._fatal: str | None = None
        self._last_purge = 0.0
        self._rotate_dek_after = dek_rotation_threshold()
        self._tls_identity = self._load_tls_identity()
        self.raft = RaftNode(
            raft_dir=paths.raft,
            self_member=(node.node_id, node.advertise_addr),
            members=[tuple(m) for m in node.bootstrap_members],  # type: ignore[misc]
            keys=self.keys,
            client_context=lambda: client_context(self._tls_identity, self._tls_identity.trusted_roots_pem),
            apply=self._apply,
            advance=self._advance,
            dump_state=self.state.encode,
            load_state=self._load_state,
            on_fatal=self._fatal_error,
            on_leader_change=self._leader_changed,
            log=event_log,
            config=raft_config,
            hold_elections=hold_elections,
            missing_key=self._fetch_missing_key,
            fsync=not benchmark.no_fsync,
        )
        self.proposer = Proposer(
            submit=self.raft.propose,
            seal_entry=self._seal_entry,
            clock=clock,
            has_leader=self._leader_reachable,
            # About one election timeout: a manager that has no leader by then refuses.
            leader_wait=raft_config.election_timeout_max + raft_config.heartbeat_interval,
            actor=node.node_id,
        )

    # ----------------------------------------------------------------- life

    def start(self) -> None:
        self.raft.start()

    def stop(self) -> None:
        self.proposer.close()
        self.raft.stop()
        with self.applied:
            self.applied.notify_all()

    @property
    def failed(self) -> str | None:
        return self._fatal

    def _fatal_error(self, message: str) -> None:
        if self._fatal is None:
            self._fatal = message
            self._event_log(f"fatal: {message}; this manager stops taking part in Raft")
            self.proposer.close()
            self.raft.stop(timeout=0)
            self._on_fatal(message)

    # ----------------------------------------------------------------- TLS

    def _load_tls_identity(self) -> TlsIdentity:
        return TlsIdentity(
            cert_chain_pem=self.paths.node_cert.read_bytes(),
            key_pem=self._node_key_pem,
            trusted_roots_pem=self.paths.root_ca.read_bytes(),
        )

    def tls_identity(self) -> TlsIdentity:
        return self._tls_identity

    def reload_tls_identity(self, node_key_pem: bytes | None = None) -> None:
        if node_key_pem is not None:
            self._node_key_pem = node_key_pem
        self._tls_identity = self._load_tls_identity()

    @property
    def node_key_pem(self) -> bytes:
        return self._node_key_pem

    # ----------------------------------------------------------------- write path

    def _seal_entry(self, plaintext: bytes) -> bytes:
        if self._benchmark.no_sealing:
            return unsealed_envelope(plaintext)
        started = time.perf_counter()
        envelope = seal_envelope(self.keys.keyring.active, self.node.cluster_id, plaintext)
        SEAL_SECONDS.observe(time.perf_counter() - started)
        return envelope

    def propose(self, actions: list[dict[str, Any]], *, proposal_id: bytes | None = None, timeout: float = 10.0) -> list[Any]:
        """Commit a transaction; returns its per-action results or raises its error."""
        self._check_alive()
        return raise_for_outcome(self.proposer.propose(actions, proposal_id=proposal_id, timeout=timeout))

    def read_barrier(self, consistency: str = "linearizable", timeout: float = 10.0) -> StateMachine:
        """The state machine, after a barrier entry unless ``consistency`` is local."""
        self._check_alive()
        if consistency == "local":
            return self.state
        if consistency != "linearizable":
            raise InvalidArgument(f"unknown consistency {consistency!r}: use linearizable or local")
        self.proposer.barrier(timeout)
        return self.state

    def _leader_reachable(self) -> bool:
        """Whether an entry handed to Raft now reaches a leader: ours with a quorum connected, or one we are connected to.

        A leader cut off from its followers keeps leading for pysyncobj's
        ``leaderFallbackTimeout``, and a follower keeps the last leader it
        heard of until an election: neither can commit a new entry meanwhile.
        """
        status = self.raft.status()
        leader = status.get("leader")
        if leader is None:
            return False
        if status.get("is_leader"):
            return bool(status.get("has_quorum"))
        return leader in status.get("connected", [])

    def _check_alive(self) -> None:
        if self._fatal is not None:
            raise Unavailable(f"this manager stopped: {self._fatal}")

    # ----------------------------------------------------------------- apply path (tick thread)

    def _apply(self, index: int, payload: bytes) -> Any:
        envelope = parse_envelope(payload)
        if not envelope.sealed:
            return self._apply_unsealed(index, envelope.unsealed_plaintext)
        try:
            key_id = envelope.key_id()
            if key_id < self.state.retired_below:
                self.state.advance(index)
                return RETIRED
            plaintext = envelope.open(self.keys.keyring, self.node.cluster_id)
            batch = msgpack.unpackb(plaintext, raw=False)
            proposals = [decode_proposal(raw) for raw in batch]
        except (InvalidRecord, ValueError, TypeError) as error:
            self._fatal_error(f"raft log entry {index} failed to open: {error}")
            raise
        outcomes, effects = self.state.apply_batch(index, key_id, proposals)
        for name, detail in effects:
            self._effect(name, detail)
        with self.applied:
            self.applied.notify_all()
        return outcomes

    def _apply_unsealed(self, index: int, plaintext: bytes) -> Any:
        """The benchmark control without sealing; refused anywhere else."""
        if not self._benchmark.no_sealing:
            self._fatal_error(f"raft log entry {index} is not sealed, and this manager is not a benchmark")
            raise InvalidRecord(f"raft log entry {index} is not sealed")
        proposals = [decode_proposal(raw) for raw in msgpack.unpackb(plaintext, raw=False)]
        outcomes, _ = self.state.apply_batch(index, max(1, self.state.active_key_id), proposals)
        with self.applied:
            self.applied.notify_all()
        return outcomes

    def _advance(self, index: int) -> None:
        self.state.advance(index)
        with self.applied:
            self.applied.notify_all()

    def _load_state(self, encoded: bytes) -> None:
        self.state.load(msgpack.unpackb(encoded, raw=False))
        self._after_load()

    def _after_load(self) -> None:
        # A snapshot may carry a newer unlock key or root than our disk knows.
        self._effect("unlock_key_changed", None)
        self._effect("root_ca_changed", None)

    def _leader_changed(self, leader: str | None, term: int) -> None:
        LEADER_CHANGES.inc()
        if leader is not None:
            self.proposer.leader_changed()
        if leader is None:
            self._event_log(f"raft: no leader (term {term})")
        elif leader == self.node.node_id:
            self._event_log(f"raft: this manager is now the leader (term {term})")
        else:
            self._event_log(f"raft: leader is now {leader} (term {term})")

    # ----------------------------------------------------------------- effects

    def _effect(self, name: str, detail: Any) -> None:
        if name == "dek_rotated":
            self._add_dek(detail["key_id"], detail["wrapped"])
        elif name == "unlock_key_changed":
            self._sync_kek_with_store()
        elif name == "root_ca_changed":
            self._on_root_change()

    def _add_dek(self, key_id: int, wrapped: bytes) -> None:
        keyring = self.keys.keyring
        if key_id in keyring.key_ids:
            return  # replaying a rotation this disk already has
        key = unwrap_data_key(wrapped, keyring, self.node.cluster_id)
        keyring = keyring.with_key(key, active=key_id > keyring.active_id)
        self.keystore.save_keyring(keyring, self.kek)
        self.keys.keyring = keyring
        self._event_log(f"data encryption key rotated to term {key_id}")
        self.raft.journal.roll()
        self.raft.force_snapshot()

    def _fetch_missing_key(self, key_id: int) -> bool:
        """Merge the cluster keyring from a peer manager into ours (tick thread, bounded)."""
        if self._fetch_keyring is None:
            return False
        try:
            theirs = self._fetch_keyring()
        except RaftstoreError as error:
            self._event_log(f"cannot fetch data key term {key_id} from another manager: {error}")
            return False
        keyring = self.keys.keyring
        for key in theirs.keys:
            if key.key_id not in keyring.key_ids:
                keyring = keyring.with_key(key, active=key.key_id > keyring.active_id)
        self.keystore.save_keyring(keyring, self.kek)
        self.keys.keyring = keyring
        self._event_log(f"fetched data key term(s) {sorted(set(keyring.key_ids))} from another manager")
        return key_id in keyring.key_ids

    def _sync_kek_with_store(self) -> None:
        """Re-wrap our keys when the store has a newer unlock key (or autolock setting)."""
        cluster = self.state.cluster()
        if cluster is None:
            return
        spec = cluster["spec"]
        version = int(spec.get("kek_version", 1))
        if version <= self.kek.version:
            return
        if spec.get("autolock"):
            kek = KeyEncryptionKey.from_unlock_key(
                UnlockKey.parse(spec["unlock_key"]), self.node.cluster_id, version
            )
        else:
            kek = KeyEncryptionKey.random(version)
        self.keystore.save(self.keys.keyring, kek, autolock=bool(spec.get("autolock")), node_key_pem=self._node_key_pem)
        self.kek = kek
        self._event_log(
            f"keys re-wrapped under key-encryption key version {version} (autolock {'on' if spec.get('autolock') else 'off'})"
        )

    def new_dek_action(self) -> dict[str, Any]:
        """A ``rotate_dek`` action: a fresh DEK sealed under the current one."""
        keyring = self.keys.keyring
        new_id = max(max(keyring.key_ids), self.state.active_key_id) + 1
        key = DataKey.generate(new_id, keyring.active.algorithm)
        return {
            "op": "rotate_dek",
            "key_id": key.key_id,
            "wrapped": wrap_data_key(key, keyring.active, self.node.cluster_id),
        }

    # ----------------------------------------------------------------- maintenance

    def maintain(self) -> None:
        """Periodic housekeeping (called about once a second by the daemon)."""
        if self._fatal is not None:
            return
        self._rotate_worn_dek()
        self._purge_retired_keys()

    def _rotate_worn_dek(self) -> None:
        """On the leader: rotate the DEK once the log holds ``ROTATE_DEK_AFTER`` entries sealed under it.

        Only the leader proposes, and the state machine refuses a rotation to
        a term that is not newer, so two managers never rotate twice.
        """
        active = self.keys.keyring.active_id
        sealed = self.state.records_sealed(active)
        if sealed < self._rotate_dek_after or not self.raft.status().get("is_leader"):
            return
        self._event_log(f"data encryption key term {active} has sealed {sealed} log entries: rotating it")
        try:
            self.propose([self.new_dek_action()])
        except RaftstoreError as error:
            self._event_log(f"data encryption key rotation failed, retrying: {error}")

    def _purge_retired_keys(self) -> None:
        keyring = self.keys.keyring
        retired_below = self.state.retired_below
        old = [k for k in keyring.key_ids if k < retired_below]
        if not old:
            return
        on_disk = set(self.raft.journal.disk_key_ids())
        if self.paths.raft.joinpath("snapshot").exists():
            on_disk.add(record_key_id(read_snapshot(self.paths.raft / "snapshot")[2]))
        removable = [k for k in old if k not in on_disk]
        if removable:
            # The deletion of the last segment that needed them must be durable
            # before the keyring forgets them, or a crash could bring back
            # records (and chain tags) that no key opens.
            self.raft.journal.sync()
            keyring = keyring.without(removable)
            self.keystore.save_keyring(keyring, self.kek)
            self.keys.keyring = keyring
            self._event_log(f"retired data encryption key term(s) {', '.join(map(str, removable))} removed")
        elif time.monotonic() - self._last_purge > 1.0:
            # Old terms still seal records on disk. Start a fresh segment, put
            # an entry in it (an idle cluster has none to compact past) and
            # snapshot under the new term: once the snapshot's predecessor
            # entry lies in the new segment, the old segments are deleted.
            self._last_purge = time.monotonic()
            self.raft.journal.roll()
            try:
                self.proposer.barrier(timeout=5.0)
            except RaftstoreError:
                return
            self.raft.force_snapshot()

    # ----------------------------------------------------------------- status

    def status(self) -> dict[str, Any]:
        return self.raft.status()

    def wait_applied(self, index: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.applied:
            while self.state.applied_index < index:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._fatal is not None:
                    return False
                self.applied.wait(remaining)
        return True

    # ----------------------------------------------------------------- membership

    def change_membership(self, add: bool, node_id: str, address: str, timeout: float = 15.0) -> None:
        """Add or remove a manager in the Raft configuration and wait until it commits.

        Idempotent: a change someone else made meanwhile (the reconciler, another
        operator's command) counts as done.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.raft.is_member(node_id) == add:
                return
            done = threading.Event()
            result: list[int] = []

            def callback(_: Any, error: int) -> None:
                result.append(error)
                done.set()

            if add:
                self.raft.add_member(node_id, address, callback)
            else:
                self.raft.remove_member(node_id, address, callback)
            if not done.wait(max(0.1, deadline - time.monotonic())):
                raise Timeout("the Raft configuration change did not commit in time; it may or may not have been applied")
            if result[0] == 0:
                return
            # REQUEST_DENIED: another change is still committing, or the new
            # leader has not committed its first entry yet. Retry until the deadline.
            if time.monotonic() > deadline:
                raise RaftstoreError(
                    f"the Raft configuration change failed: {FAIL_REASONS.get(result[0], result[0])}"
                )
            time.sleep(0.2)

    def iter_events(self, since: int, stop: threading.Event, poll: float = 0.5) -> Iterator[dict[str, Any]]:
        """Events after ``since``, then new ones as they are applied, until ``stop`` is set."""
        last = since
        while not stop.is_set() and self._fatal is None:
            events = self.state.events_since(last)
            for event in events:
                last = event.version
                yield event.to_dict()
            if not events:
                with self.applied:
                    self.applied.wait(poll)
