"""A running manager: Raft, the state machine, the proposer and the keys in memory.

A ``Manager`` exists only while this node is unlocked; a locked manager is
just a data directory and a daemon that answers "locked". The manager owns
the apply path: it opens each committed entry with the DEK named in the
record, hands the batch to the state machine, and carries out the effects the
state machine reports (a new DEK, a new unlock key) on its own disk.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterable, Iterator

import msgpack

from ..keyring import (
    InvalidArgument,
    InvalidRecord,
    KeyEncryptionKey,
    Keyring,
    RaftstoreError,
    Timeout,
    Unavailable,
    error_class,
)
from ..net import TlsIdentity, client_context
from ..raft import FAIL_REASONS, CurrentKeyring, RaftConfig, RaftNode, parse_envelope, seal_envelope, unsealed_envelope
from ..state import Outcome, StateMachine, decode_proposal
from ..storage import BenchmarkSwitches, KeyStore, NodeState, StatePaths
from ..telemetry import LEADER_CHANGES, SEAL_SECONDS
from ._deks import DataKeys
from ._proposer import RETIRED, Proposer

__all__ = ["Manager", "raise_for_outcome"]

log = logging.getLogger("raftstore.manager")

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
        self.keys = CurrentKeyring(keyring, node.cluster_id)
        self._node_key_pem = node_key_pem
        self._clock = clock
        self._on_fatal = on_fatal
        self._event_log = event_log
        self._on_root_change = on_root_change
        self._benchmark = benchmark
        self.state = StateMachine()
        self.applied = threading.Condition()
        self._fatal: str | None = None
        self._tls_identity = self._load_tls_identity()
        self.raft = RaftNode(
            raft_dir=paths.raft,
            self_member=(node.node_id, node.advertise_addr),
            members=[tuple(m) for m in node.bootstrap_members],  # type: ignore[misc]
            keys=self.keys,
            client_context=lambda: client_context(self._tls_identity, self._tls_identity.trusted_roots_pem),
            apply=self._apply,
            advance=self._advance,
            dump_state=self.state.snapshot_parts,
            load_state=self._load_state,
            on_fatal=self._fatal_error,
            on_leader_change=self._leader_changed,
            log=event_log,
            config=raft_config,
            hold_elections=hold_elections,
            missing_key=lambda key_id: self.deks.fetch_missing(key_id),
            fsync=not benchmark.no_fsync,
        )
        self.proposer = Proposer(
            submit=self.raft.append_entry,
            seal_entry=self._seal_entry,
            clock=clock,
            has_leader=self._leader_reachable,
            # About one election timeout: a manager that has no leader by then refuses.
            leader_wait=raft_config.election_timeout_max + raft_config.heartbeat_interval,
            actor=node.node_id,
        )
        self.deks = DataKeys(
            cluster_id=node.cluster_id,
            keys=self.keys,
            kek=kek,
            keystore=keystore,
            raft=self.raft,
            state=self.state,
            raft_dir=paths.raft,
            node_key_pem=lambda: self._node_key_pem,
            propose=self.propose,
            barrier=lambda timeout: self.proposer.barrier(timeout=timeout),
            fetch_keyring=fetch_keyring,
            log=event_log,
        )

    @property
    def kek(self) -> KeyEncryptionKey:
        """The key-encryption key that wraps this manager's keyring on disk now."""
        return self.deks.kek

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
        return raise_for_outcome(self.proposer.commit(actions, proposal_id=proposal_id, timeout=timeout))

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

    def _load_state(self, parts: Iterable[bytes]) -> None:
        self.state.load_parts(parts)
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
            self.deks.add_rotated(detail["key_id"], detail["wrapped"])
        elif name == "unlock_key_changed":
            self.deks.follow_unlock_key()
        elif name == "root_ca_changed":
            self._on_root_change()

    def new_dek_action(self) -> dict[str, Any]:
        """A ``rotate_dek`` action: a fresh DEK sealed under the current one (see ``DataKeys``)."""
        return self.deks.new_dek_action()

    # ----------------------------------------------------------------- maintenance

    def maintain(self) -> None:
        """Periodic housekeeping (called about once a second by the daemon)."""
        if self._fatal is not None:
            return
        self.deks.rotate_if_worn()
        self.deks.purge_retired()

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

    def wait_caught_up(self, index: int, idle: float, limit: float = 1800.0) -> bool:
        """``wait_applied``, for as long as a leader's snapshot keeps arriving or loading here.

        A manager that joins a large store first receives the leader's
        snapshot (about 13 s per 2 GB at the leader's send rate) and then
        checks and loads it; only then does it apply anything. Give up after
        ``idle`` seconds without progress, or ``limit`` in all.
        """
        started = time.monotonic()
        while time.monotonic() - started < limit:
            if self.wait_applied(index, min(1.0, idle)):
                return True
            if self._fatal is not None:
                return False
            receiving = self.raft.snapshot_receiving_idle()
            quiet = time.monotonic() - started if receiving is None else receiving
            if quiet > idle:
                return False
        return False

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
