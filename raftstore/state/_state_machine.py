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
4. hold ``lock`` around reads that must not see a half-applied batch.

Tables: ``cluster`` (one object), ``nodes``, ``secrets``, ``configs`` hold
objects ``{id, name, version, created_at, updated_at, labels, spec}``; names are
unique per table after case folding. ``kv`` maps keys (case-sensitive, as in
etcd) to ``{key, value, version, created_version}``. ``version`` is the Raft index of
the last change, and an update names the version it read.
"""

from __future__ import annotations

import collections
import hashlib
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Iterator, Sequence

import msgpack

from ._objects import validate_data, validate_name
from ..keyring import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    RaftstoreError,
    RetiredKey,
    UpdateOutOfSequence,
)

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

OBJECT_TABLES = ("cluster", "nodes", "secrets", "configs")
TABLES = OBJECT_TABLES + ("kv",)

#: One transaction, msgpack-encoded, is at most 1.5 MiB.
MAX_TRANSACTION_BYTES = 3 * 2**19

#: How many applied proposal ids are remembered to make retries idempotent.
DEFAULT_DEDUP_WINDOW = 20_000

#: How many events are kept in memory for ``events --since``.
DEFAULT_EVENT_HISTORY = 50_000

# Fields of a spec that an update may never change, per table.
_IMMUTABLE_SPEC_FIELDS = {
    "secrets": ("data",),
    "configs": ("data",),
}


@dataclass(frozen=True)
class Event:
    version: int
    action: str  # create | update | delete
    table: str
    id: str
    name: str
    time: str = ""  # the proposal's time, as the proposing manager's clock gave it
    actor: str | None = None  # the node id of the manager that proposed it (None in entries from before issue 16)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "action": self.action,
            "table": self.table,
            "id": self.id,
            "name": self.name,
            "time": self.time,
            "actor": self.actor,
        }


def decode_proposal(raw: Sequence[Any]) -> tuple[bytes, str, Any, str | None]:
    """One proposal of a decoded entry: ``[id, now, actions]``, or ``[id, now, actions, proposer]`` (issue 16 on).

    Entries written before the proposer's id was carried stay readable; they have no actor.
    """
    proposal_id, now, actions, *rest = raw
    if len(rest) > 1:
        raise ValueError(f"a proposal has 3 or 4 fields, not {len(raw)}")
    return bytes(proposal_id), str(now), actions, (str(rest[0]) if rest else None)


@dataclass
class Outcome:
    """What one proposal produced: results per action, or one error for all of them."""

    ok: bool
    results: list[Any] = field(default_factory=list)
    error_code: str = ""
    error_message: str = ""

    def to_wire(self) -> list[Any]:
        return [self.ok, self.results, self.error_code, self.error_message]

    @classmethod
    def from_wire(cls, raw: list[Any]) -> "Outcome":
        ok, results, code, message = raw
        return cls(bool(ok), list(results), str(code), str(message))

    @classmethod
    def failure(cls, error: RaftstoreError) -> "Outcome":
        return cls(False, [], error.code, error.message)


def _fold(name: str) -> str:
    return name.casefold()


class _Overlay:
    """Staged writes of one transaction, so that it applies entirely or not at all."""

    def __init__(self, sm: "StateMachine") -> None:
        self.sm = sm
        self.objects: dict[tuple[str, str], dict[str, Any] | None] = {}
        self.kv: dict[str, dict[str, Any] | None] = {}
        self.events: list[Event] = []
        self.effects: list[tuple[str, Any]] = []
        self.key_state: tuple[int, int] | None = None
        self.now = ""
        self.actor: str | None = None

    def get(self, table: str, object_id: str) -> dict[str, Any] | None:
        key = (table, object_id)
        if key in self.objects:
            return self.objects[key]
        return self.sm._tables[table].get(object_id)

    def id_for_name(self, table: str, name: str) -> str | None:
        folded = _fold(name)
        for (t, oid), obj in self.objects.items():
            if t == table and obj is not None and _fold(obj["name"]) == folded:
                return oid
        oid = self.sm._names[table].get(folded)
        if oid is not None and (table, oid) in self.objects:
            return None  # staged: deleted or renamed, and checked above
        return oid

    def kv_get(self, key: str) -> dict[str, Any] | None:
        if key in self.kv:
            return self.kv[key]
        return self.sm._kv.get(key)


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
        self._applied: collections.OrderedDict[bytes, list[Any]] = collections.OrderedDict()
        self._events: collections.deque[Event] = collections.deque(maxlen=event_history)
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
                    outcomes.append(Outcome.from_wire(previous))
                    continue
                outcome, proposal_effects = self._apply_transaction(index, now, actions, actor)
                if _writes(actions):
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
        self._applied[proposal_id] = outcome.to_wire()
        while len(self._applied) > self._dedup_window:
            self._applied.popitem(last=False)

    def _apply_transaction(
        self, index: int, now: str, actions: list[dict[str, Any]], actor: str | None = None
    ) -> tuple[Outcome, list[tuple[str, Any]]]:
        overlay = _Overlay(self)
        overlay.now, overlay.actor = now, actor
        results: list[Any] = []
        try:
            if not isinstance(actions, list):
                raise InvalidArgument("a transaction is a list of actions")
            for action in actions:
                results.append(self._apply_action(overlay, index, now, action))
        except RaftstoreError as error:
            return Outcome.failure(error), []
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            return Outcome.failure(InvalidArgument(f"malformed action: {error}")), []
        self._commit(overlay)
        return Outcome(True, results), overlay.effects

    def _commit(self, overlay: _Overlay) -> None:
        for (table, object_id), obj in overlay.objects.items():
            old = self._tables[table].get(object_id)
            if old is not None:
                self._names[table].pop(_fold(old["name"]), None)
            if obj is None:
                self._tables[table].pop(object_id, None)
            else:
                self._tables[table][object_id] = obj
        for (table, object_id), obj in overlay.objects.items():
            if obj is not None:
                self._names[table][_fold(obj["name"])] = object_id
        for key, record in overlay.kv.items():
            if record is None:
                self._kv.pop(key, None)
            else:
                self._kv[key] = record
        if overlay.key_state is not None:
            self.active_key_id, self.retired_below = overlay.key_state
            self._key_records = {k: n for k, n in self._key_records.items() if k >= self.retired_below}
        for event in overlay.events:
            if len(self._events) == self._events.maxlen:
                self._first_event_version = self._events[0].version + 1
            self._events.append(replace(event, time=overlay.now, actor=overlay.actor))

    def _apply_action(self, ov: _Overlay, index: int, now: str, action: dict[str, Any]) -> Any:
        op = action["op"]
        handler = _ACTIONS.get(op)
        if handler is None:
            raise InvalidArgument(f"unknown action {op!r}")
        return handler(self, ov, index, now, action)

    # ----- object tables

    def _act_create(self, ov: _Overlay, index: int, now: str, a: dict[str, Any]) -> dict[str, Any]:
        table = _object_table(a["table"])
        object_id, name = str(a["id"]), str(a["name"])
        if not object_id or not name:
            raise InvalidArgument("an object needs an id and a name")
        if table in ("secrets", "configs"):
            validate_name(name)
            spec = dict(a.get("spec") or {})
            validate_data(table, spec.get("data"))
            _grants(spec.get("grants", []))
        if ov.get(table, object_id) is not None:
            raise AlreadyExists(f"{_singular(table)} {object_id} already exists")
        if ov.id_for_name(table, name) is not None:
            raise AlreadyExists(f"{_singular(table)} {name} already exists")
        if table == "cluster" and any(o is not None for o in self._all_objects(ov, "cluster")):
            raise AlreadyExists("the cluster object already exists")
        obj = {
            "id": object_id,
            "name": name,
            "version": index,
            "created_at": now,
            "updated_at": now,
            "labels": _labels(a.get("labels")),
            "spec": dict(a.get("spec") or {}),
        }
        ov.objects[(table, object_id)] = obj
        ov.events.append(Event(index, "create", table, object_id, name))
        return {"id": object_id, "version": index}

    def _act_update(self, ov: _Overlay, index: int, now: str, a: dict[str, Any]) -> dict[str, Any]:
        table = _object_table(a["table"])
        object_id = str(a["id"])
        old = ov.get(table, object_id)
        if old is None:
            raise NotFound(f"{_singular(table)} {object_id} not found")
        if int(a["version"]) != old["version"]:
            raise UpdateOutOfSequence()
        new = dict(old)
        if "labels" in a and a["labels"] is not None:
            new["labels"] = _labels(a["labels"])
        if "spec" in a and a["spec"] is not None:
            spec = dict(a["spec"])
            for frozen in _IMMUTABLE_SPEC_FIELDS.get(table, ()):
                if spec.get(frozen) != old["spec"].get(frozen):
                    raise InvalidArgument("only updates to labels are allowed")
            if table in ("secrets", "configs"):
                _grants(spec.get("grants", []))
            new["spec"] = spec
        new["version"] = index
        new["updated_at"] = now
        ov.objects[(table, object_id)] = new
        ov.events.append(Event(index, "update", table, object_id, old["name"]))
        if table == "cluster":
            ov.effects.extend(_cluster_effects(old["spec"], new["spec"]))
        return {"id": object_id, "version": index}

    def _act_delete(self, ov: _Overlay, index: int, now: str, a: dict[str, Any]) -> dict[str, Any]:
        table = _object_table(a["table"])
        object_id = str(a["id"])
        old = ov.get(table, object_id)
        if old is None:
            raise NotFound(f"{_singular(table)} {object_id} not found")
        if a.get("version") is not None and int(a["version"]) != old["version"]:
            raise UpdateOutOfSequence()
        if table in ("secrets", "configs") and old["spec"].get("grants") and not a.get("force"):
            raise InvalidArgument(
                f"{_singular(table)} {old['name']} is granted to {len(old['spec']['grants'])} node(s); "
                "revoke the grants or use --force to remove it anyway"
            )
        if table == "cluster":
            raise InvalidArgument("the cluster object cannot be removed")
        ov.objects[(table, object_id)] = None
        ov.events.append(Event(index, "delete", table, object_id, old["name"]))
        return {"id": object_id, "version": index}

    # ----- kv

    def _kv_write(self, ov: _Overlay, index: int, key: str, value: bytes) -> dict[str, Any]:
        old = ov.kv_get(key)
        record = {
            "key": key,
            "value": value,
            "version": index,
            "created_version": old["created_version"] if old else index,
        }
        ov.kv[key] = record
        ov.events.append(Event(index, "update" if old else "create", "kv", key, key))
        return {"key": key, "version": index}

    def _act_put(self, ov: _Overlay, index: int, now: str, a: dict[str, Any]) -> dict[str, Any]:
        key, value = _kv_key(a["key"]), _kv_value(a["value"])
        return self._kv_write(ov, index, key, value)

    def _act_cas(self, ov: _Overlay, index: int, now: str, a: dict[str, Any]) -> dict[str, Any]:
        key, value = _kv_key(a["key"]), _kv_value(a["value"])
        expected = int(a["version"])
        old = ov.kv_get(key)
        current = old["version"] if old else 0
        if current != expected:
            raise _kv_out_of_sequence(expected, current)
        return self._kv_write(ov, index, key, value)

    def _act_kv_delete(self, ov: _Overlay, index: int, now: str, a: dict[str, Any]) -> dict[str, Any]:
        key = _kv_key(a["key"])
        old = ov.kv_get(key)
        if old is None:
            raise NotFound(f"key {key!r} not found")
        if a.get("version") is not None and int(a["version"]) != old["version"]:
            raise _kv_out_of_sequence(int(a["version"]), old["version"])
        ov.kv[key] = None
        ov.events.append(Event(index, "delete", "kv", key, key))
        return {"key": key, "version": index}

    # ----- keys

    def _act_rotate_dek(self, ov: _Overlay, index: int, now: str, a: dict[str, Any]) -> dict[str, Any]:
        key_id = int(a["key_id"])
        active = ov.key_state[0] if ov.key_state else self.active_key_id
        if key_id <= active:
            raise InvalidArgument(f"data key {key_id} is not newer than the active key {active}")
        wrapped = a["wrapped"]
        if not isinstance(wrapped, bytes):
            raise InvalidArgument("a rotated data key arrives sealed")
        ov.key_state = (key_id, key_id)
        ov.effects.append(("dek_rotated", {"key_id": key_id, "wrapped": wrapped, "index": index}))
        return {"key_id": key_id}

    def _act_noop(self, ov: _Overlay, index: int, now: str, a: dict[str, Any]) -> None:
        return None

    def _act_read(self, ov: _Overlay, index: int, now: str, a: dict[str, Any]) -> int:
        """A read barrier: its result is the index at which the store was read."""
        return index

    # ------------------------------------------------------------------ reads

    def _all_objects(self, ov: _Overlay, table: str) -> Iterator[dict[str, Any] | None]:
        seen = set()
        for (t, oid), obj in ov.objects.items():
            if t == table:
                seen.add(oid)
                yield obj
        for oid, obj in self._tables[table].items():
            if oid not in seen:
                yield obj

    def get(self, table: str, ref: str) -> dict[str, Any]:
        """Find an object by id, by name (case-folded) or by a unique id prefix."""
        table = _object_table(table)
        with self.lock:
            objects = self._tables[table]
            if ref in objects:
                return objects[ref]
            oid = self._names[table].get(_fold(ref))
            if oid is not None:
                return objects[oid]
            matches = [o for i, o in objects.items() if ref and i.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise InvalidArgument(f"{_singular(table)} {ref!r} is ambiguous ({len(matches)} matches)")
        raise NotFound(f"{_singular(table)} {ref} not found")

    def find_exact(self, table: str, ref: str) -> dict[str, Any] | None:
        """By id or (case-folded) name only: no prefix matching, so nothing about other objects leaks."""
        table = _object_table(table)
        with self.lock:
            obj = self._tables[table].get(ref)
            if obj is None:
                oid = self._names[table].get(_fold(ref))
                obj = self._tables[table].get(oid) if oid is not None else None
            return obj

    def find(self, table: str, ref: str) -> dict[str, Any] | None:
        try:
            return self.get(table, ref)
        except NotFound:
            return None

    def list(self, table: str) -> list[dict[str, Any]]:
        table = _object_table(table)
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

    def kv_list(self, prefix: str = "") -> list[dict[str, Any]]:
        with self.lock:
            return [self._kv[k] for k in sorted(self._kv) if k.startswith(prefix)]

    def events_since(self, version: int) -> list[Event]:
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
            return [e for e in self._events if e.version > version]

    # ------------------------------------------------------------------ snapshots

    def dump(self) -> dict[str, Any]:
        """Everything replicated, as plain msgpack-able data."""
        with self.lock:
            return {
                "format": 1,
                "applied_index": self.applied_index,
                "tables": {t: list(self._tables[t].values()) for t in OBJECT_TABLES},
                "kv": list(self._kv.values()),
                "applied": [[pid, out] for pid, out in self._applied.items()],
                "keys": {
                    "active": self.active_key_id,
                    "retired_below": self.retired_below,
                    "records": sorted([k, n] for k, n in self._key_records.items()),
                },
            }

    def load(self, data: dict[str, Any]) -> None:
        """Replace the whole state with a dump (snapshot restore or install)."""
        if data.get("format") != 1:
            raise InvalidArgument(f"unknown snapshot state format {data.get('format')!r}")
        with self.lock:
            self._tables = {t: {} for t in OBJECT_TABLES}
            self._names = {t: {} for t in OBJECT_TABLES}
            for table in OBJECT_TABLES:
                for obj in data["tables"].get(table, []):
                    self._tables[table][obj["id"]] = obj
                    self._names[table][_fold(obj["name"])] = obj["id"]
            self._kv = {r["key"]: r for r in data["kv"]}
            self._applied = collections.OrderedDict((bytes(p), o) for p, o in data["applied"])
            self.applied_index = int(data["applied_index"])
            self.active_key_id = int(data["keys"]["active"])
            self.retired_below = int(data["keys"]["retired_below"])
            records = data["keys"].get("records")
            if records is None:
                # A snapshot from before the count: every entry so far may have
                # been sealed under the active term, an upper bound to start from.
                records = [[max(self.active_key_id, 1), self.applied_index]]
            self._key_records = {int(k): int(n) for k, n in records}
            self._events.clear()
            self._first_event_version = self.applied_index + 1

    def encode(self) -> bytes:
        return msgpack.packb(self.dump(), use_bin_type=True)

    def digest(self) -> str:
        """A hash of the replicated state, equal on managers at the same applied index."""
        return hashlib.sha256(self.encode()).hexdigest()


def _kv_out_of_sequence(expected: int, current: int) -> UpdateOutOfSequence:
    """The conflict with the version the key is at now, so that the caller can re-read or retry from it."""
    now = f"the key is at version {current}" if current else "the key does not exist (version 0)"
    return UpdateOutOfSequence(f"update out of sequence: expected version {expected}, {now}")


def _writes(actions: Any) -> bool:
    return isinstance(actions, list) and any(
        isinstance(a, dict) and a.get("op") not in ("read", "noop") for a in actions
    )


def _object_table(table: Any) -> str:
    if table not in OBJECT_TABLES:
        raise InvalidArgument(f"unknown table {table!r}")
    return str(table)


def _singular(table: str) -> str:
    return {"nodes": "node", "secrets": "secret", "configs": "config"}.get(table, table)


def _labels(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise InvalidArgument("labels are a map of strings to strings")
    return dict(raw)


def _grants(grants: Any) -> list[str]:
    if not isinstance(grants, list) or not all(isinstance(g, str) and g for g in grants):
        raise InvalidArgument("grants are a list of node ids")
    return grants


def _kv_key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidArgument("a key is a non-empty string")
    return key


def _kv_value(value: Any) -> bytes:
    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, bytes):
        raise InvalidArgument("a value is bytes")
    return value


def _cluster_effects(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any]]:
    effects: list[tuple[str, Any]] = []
    if old.get("unlock_key") != new.get("unlock_key") or old.get("autolock") != new.get("autolock"):
        effects.append(("unlock_key_changed", {"autolock": bool(new.get("autolock"))}))
    if old.get("root_ca") != new.get("root_ca") or old.get("root_rotation") != new.get("root_rotation"):
        effects.append(("root_ca_changed", None))
    return effects


_ACTIONS = {
    "create": StateMachine._act_create,
    "update": StateMachine._act_update,
    "delete": StateMachine._act_delete,
    "put": StateMachine._act_put,
    "cas": StateMachine._act_cas,
    "kv_delete": StateMachine._act_kv_delete,
    "rotate_dek": StateMachine._act_rotate_dek,
    "noop": StateMachine._act_noop,
    "read": StateMachine._act_read,
}
