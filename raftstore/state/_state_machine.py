"""The replicated store: tables of versioned objects, a key/value table, watches.

The state machine does no I/O and reads no clock (STYLE rule 1): it is handed a
decoded batch of proposals with the Raft index that carries them and returns
their outcomes. Everything that must be the same on every manager is decided
here, from replicated state only, so that every manager that applies the same
log reaches the same bytes (see ``digest``).

Duties of the caller (``raftstore.manager._manager``):

1. apply batches in log order, each exactly once per process lifetime, with the
   Raft index that carries it;
2. decide nothing itself that depends on local state (keys it happens to hold,
   wall-clock time): the proposer puts ``now`` into the proposal;
3. act on the ``effects`` that ``apply_batch`` returns (a DEK rotation, an
   unlock-key change) after the batch is applied;
4. hold ``lock`` around reads that must not see a half-applied batch;
5. never change a record it reads (an object or a kv record) in place: build a
   new one. The state machine does the same, which is what lets a snapshot be
   a shallow copy (``snapshot_view``, ``_state_dump``).

Tables: ``cluster`` (one object), ``nodes``, ``secrets``, ``configs`` hold
objects ``{id, name, version, created_at, updated_at, labels, spec}``; names are
unique per table after case folding. ``kv`` maps keys (case-sensitive, as in
etcd) to ``{key, value, version, created_version}``. ``version`` is the Raft index of
the last change, and an update names the version it read.

Around this module: ``_proposals`` lays out an entry's batch of proposals,
``_actions`` each action and what applying it does (staged in a
``Transaction``), ``_outcomes`` what a proposal produced.
"""

from __future__ import annotations

import builtins
import collections
import hashlib
import threading
from typing import Any, Iterable, Sequence

import msgpack

from ..keyring import InvalidArgument, NotFound, RaftstoreError, RetiredKey
from ._actions import OBJECT_TABLES, TABLES, Transaction, apply_action, fold, object_table, singular, writes
from ._outcomes import Event, Outcome
from ._proposals import MAX_TRANSACTION_BYTES, decode_proposal
from ._state_dump import LoadedState, StateView, load_dump, load_parts

__all__ = [
    "OBJECT_TABLES",
    "TABLES",
    "MAX_TRANSACTION_BYTES",
    "Event",
    "Outcome",
    "StateMachine",
    "RetiredKey",
    "decode_proposal",
]

#: How many applied proposal ids are remembered to make retries idempotent.
DEFAULT_DEDUP_WINDOW = 20_000

#: How many events are kept in memory for ``events --since``.
DEFAULT_EVENT_HISTORY = 50_000


class StateMachine:
    """All replicated state of one cluster, rebuilt from snapshot plus log on every start."""

    def __init__(
        self,
        *,
        dedup_window: int = DEFAULT_DEDUP_WINDOW,
        event_history: int = DEFAULT_EVENT_HISTORY,
    ) -> None:
        self.lock = threading.RLock()
        self._dedup_window = dedup_window
        self._tables: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in OBJECT_TABLES}
        self._names: dict[str, dict[str, str]] = {t: {} for t in OBJECT_TABLES}
        self._kv: dict[str, dict[str, Any]] = {}
        # The dedup table (packed outcomes) and the event history (plain tuples of an Event's fields) hold
        # tens of thousands of items for as long as the process runs: kept as bytes and exact tuples of plain
        # values, Python's cycle collector stops tracking them. As objects, every full collection walked
        # them all (~100 ms) on whichever thread triggered it, the Raft tick thread among them.
        self._applied: collections.OrderedDict[bytes, bytes] = collections.OrderedDict()
        self._events: collections.deque[tuple[Any, ...]] = collections.deque(maxlen=event_history)
        self._first_event_version = 0
        self.applied_index = 0
        # DEK terms: entries sealed below ``retired_below`` are refused at apply.
        self.active_key_id = 0
        self.retired_below = 0
        # Log entries applied per DEK term (the key id each record names): the
        # cluster-wide count of records sealed under a term, the same on every
        # manager because it is derived from the log; see ``records_sealed``.
        self._key_records: dict[int, int] = {}

    # ------------------------------------------------------------------ apply

    def apply_batch(
        self,
        index: int,
        key_id: int,
        proposals: Iterable[Sequence[Any]],
    ) -> tuple[list[Outcome], list[tuple[str, Any]]]:
        """Apply one Raft entry: a batch of ``(proposal id, now, actions[, proposer])`` (see ``decode_proposal``).

        Returns one outcome per proposal and the side effects the manager must
        carry out (DEK rotation, unlock-key change, ...).
        """
        outcomes: list[Outcome] = []
        effects: list[tuple[str, Any]] = []
        with self.lock:
            if index <= self.applied_index:
                raise ValueError(f"entry {index} applied twice (applied index {self.applied_index})")
            if key_id >= self.retired_below:
                self._key_records[key_id] = self._key_records.get(key_id, 0) + 1
            for proposal in proposals:
                proposal_id, now, actions, actor = decode_proposal(proposal)
                if key_id < self.retired_below:
                    outcomes.append(Outcome.failure(RetiredKey()))
                    continue
                previous = self._applied.get(proposal_id)
                if previous is not None:
                    outcomes.append(Outcome.from_wire(msgpack.unpackb(previous, raw=False)))
                    continue
                outcome, proposal_effects = self._apply_transaction(index, now, actions, actor)
                if writes(actions):
                    self._remember(proposal_id, outcome)
                outcomes.append(outcome)
                effects.extend(proposal_effects)
            self.applied_index = index
        return outcomes, effects

    def records_sealed(self, key_id: int) -> int:
        """How many committed log entries were sealed under DEK term ``key_id``, cluster-wide.

        Counted at apply from the key id in each record, so it survives
        restarts (snapshot plus replay) and leader changes, and every manager
        agrees. It leaves out what never reaches the log as an entry of ours:
        pysyncobj's control entries, snapshots and proposals that did not
        commit; the rotation threshold keeps a wide margin for them.
        """
        with self.lock:
            return self._key_records.get(key_id, 0)

    def advance(self, index: int) -> None:
        """Record that a Raft entry that carries no proposals (no-op, membership) was applied."""
        with self.lock:
            if index > self.applied_index:
                self.applied_index = index

    def _remember(self, proposal_id: bytes, outcome: Outcome) -> None:
        self._applied[proposal_id] = msgpack.packb(outcome.to_wire(), use_bin_type=True)
        while len(self._applied) > self._dedup_window:
            self._applied.popitem(last=False)

    def _apply_transaction(
        self, index: int, now: str, actions: list[dict[str, Any]], actor: str | None = None
    ) -> tuple[Outcome, list[tuple[str, Any]]]:
        transaction = Transaction(self._tables, self._names, self._kv, self.active_key_id, now, actor)
        results: list[Any] = []
        try:
            if not isinstance(actions, list):
                raise InvalidArgument("a transaction is a list of actions")
            for action in actions:
                results.append(apply_action(transaction, index, action))
        except RaftstoreError as error:
            return Outcome.failure(error), []
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            return Outcome.failure(InvalidArgument(f"malformed action: {error}")), []
        self._commit(transaction)
        return Outcome(True, results), transaction.effects

    def _commit(self, transaction: Transaction) -> None:
        for (table, object_id), obj in transaction.objects.items():
            old = self._tables[table].get(object_id)
            if old is not None:
                self._names[table].pop(fold(old["name"]), None)
            if obj is None:
                self._tables[table].pop(object_id, None)
            else:
                self._tables[table][object_id] = obj
        for (table, object_id), obj in transaction.objects.items():
            if obj is not None:
                self._names[table][fold(obj["name"])] = object_id
        for key, record in transaction.kv.items():
            if record is None:
                self._kv.pop(key, None)
            else:
                self._kv[key] = record
        if transaction.key_state is not None:
            self.active_key_id, self.retired_below = transaction.key_state
            self._key_records = {k: n for k, n in self._key_records.items() if k >= self.retired_below}
        for event in transaction.events:
            if len(self._events) == self._events.maxlen:
                self._first_event_version = self._events[0][0] + 1
            self._events.append(tuple(event._replace(time=transaction.now, actor=transaction.actor)))

    # ------------------------------------------------------------------ reads

    def get(self, table: str, ref: str) -> dict[str, Any]:
        """Find an object by id, by name (case-folded) or by a unique id prefix."""
        table = object_table(table)
        with self.lock:
            objects = self._tables[table]
            if ref in objects:
                return objects[ref]
            oid = self._names[table].get(fold(ref))
            if oid is not None:
                return objects[oid]
            matches = [o for i, o in objects.items() if ref and i.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise InvalidArgument(f"{singular(table)} {ref!r} is ambiguous ({len(matches)} matches)")
        raise NotFound(f"{singular(table)} {ref} not found")

    def find_exact(self, table: str, ref: str) -> dict[str, Any] | None:
        """By id or (case-folded) name only: no prefix matching, so nothing about other objects leaks."""
        table = object_table(table)
        with self.lock:
            obj = self._tables[table].get(ref)
            if obj is None:
                oid = self._names[table].get(fold(ref))
                obj = self._tables[table].get(oid) if oid is not None else None
            return obj

    def find(self, table: str, ref: str) -> dict[str, Any] | None:
        try:
            return self.get(table, ref)
        except NotFound:
            return None

    def list(self, table: str) -> list[dict[str, Any]]:
        table = object_table(table)
        with self.lock:
            return sorted(self._tables[table].values(), key=lambda o: (o["name"].casefold(), o["id"]))

    def cluster(self) -> dict[str, Any] | None:
        with self.lock:
            for obj in self._tables["cluster"].values():
                return obj
        return None

    def kv_get(self, key: str) -> dict[str, Any]:
        with self.lock:
            record = self._kv.get(key)
        if record is None:
            raise NotFound(f"key {key!r} not found")
        return record

    def kv_list(self, prefix: str = "") -> builtins.list[dict[str, Any]]:
        with self.lock:
            return [self._kv[k] for k in sorted(self._kv) if k.startswith(prefix)]

    def events_since(self, version: int) -> builtins.list[Event]:
        """Events with a version greater than ``version``.

        Raises NotFound when history older than that has been compacted away,
        as etcd does for a watch below its compaction revision.
        """
        with self.lock:
            if version + 1 < self._first_event_version:
                first = self._first_event_version
                raise NotFound(
                    f"version {version} has been compacted; the oldest version still available is {first} "
                    f"(--since {first - 1} or later)"
                )
            return [Event._make(e) for e in self._events if e[0] > version]

    # ------------------------------------------------------------------ snapshots

    def snapshot_view(self) -> StateView:
        """The state as it is now, frozen at a cost of pointer copies: pack it on any thread while applying goes on."""
        with self.lock:
            return StateView(
                applied_index=self.applied_index,
                active_key_id=self.active_key_id,
                retired_below=self.retired_below,
                key_records=dict(self._key_records),
                tables={t: dict(self._tables[t]) for t in OBJECT_TABLES},
                kv=dict(self._kv),
                applied=collections.OrderedDict(self._applied),
            )

    def snapshot_parts(self) -> Iterable[bytes]:
        """The state as it is now, as snapshot parts (``_state_dump`` format 2), packed lazily as they are read."""
        return self.snapshot_view().parts()

    def dump(self) -> dict[str, Any]:
        """Everything replicated, as plain msgpack-able data (format 1: backups, digests)."""
        return self.snapshot_view().dump()

    def load(self, data: dict[str, Any]) -> None:
        """Replace the whole state with a format 1 dump (a backup restored)."""
        self._install(load_dump(data))

    def load_parts(self, parts: Iterable[bytes]) -> None:
        """Replace the whole state with snapshot parts of either format (a snapshot loaded or received).

        Once the first part proves to be a state dump, the old state is let
        go before the new one is built, so that a follower installing a
        leader's snapshot never holds two copies of the store; the lock is
        held throughout, so a read waits rather than see an empty store. The
        parts were checked before (``SealedSnapshots.verify``); should a later
        part still fail, the state is left empty and the caller stops the
        node, which reloads from disk.
        """
        with self.lock:
            self._install(load_parts(parts, on_header=lambda: self._install(LoadedState())))

    def _install(self, loaded: LoadedState) -> None:
        with self.lock:
            self._tables = loaded.tables
            self._names = loaded.names
            self._kv = loaded.kv
            self._applied = loaded.applied
            self.applied_index = loaded.applied_index
            self.active_key_id = loaded.active_key_id
            self.retired_below = loaded.retired_below
            self._key_records = loaded.key_records
            self._events.clear()
            self._first_event_version = self.applied_index + 1

    def encode(self) -> bytes:
        return msgpack.packb(self.dump(), use_bin_type=True)

    def digest(self) -> str:
        """A hash of the replicated state, equal on managers at the same applied index."""
        return hashlib.sha256(self.encode()).hexdigest()
