"""The actions of a transaction: how each is laid out, and what applying it does.

An action is a msgpack map with an ``op`` and the fields that op needs (the
builders below lay each one out; the appliers read them)::

    create     table, id, name, [labels], spec     a new object (names unique per table, case-folded)
    update     table, id, version, [labels], [spec] names the version it read
    delete     table, id, [version], [force]        force: remove a secret/config that is still granted
    put        key, value                           kv: set
    cas        key, value, version                  kv: set if the key is at ``version`` (0: absent)
    kv_delete  key, [version]
    rotate_dek key_id, wrapped                      a new DEK term, sealed under the current one
    read       -                                    a read barrier: results in the index it was read at
    noop       -

A transaction is applied to a ``Transaction``: the writes are staged there and
reach the state machine only if every action succeeded, so a transaction
applies entirely or not at all. The appliers read only replicated state and
the proposal's ``now``, so every manager reaches the same result.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from ..keyring import AlreadyExists, InvalidArgument, NotFound, UpdateOutOfSequence
from ._objects import validate_data, validate_name
from ._outcomes import Event

__all__ = [
    "OBJECT_TABLES",
    "TABLES",
    "Transaction",
    "apply_action",
    "writes",
    "object_table",
    "singular",
    "fold",
    "create_action",
    "update_action",
    "delete_action",
    "put_action",
    "cas_action",
    "kv_delete_action",
    "rotate_dek_action",
    "read_action",
    "noop_action",
]

OBJECT_TABLES = ("cluster", "nodes", "secrets", "configs")
TABLES = OBJECT_TABLES + ("kv",)

# Fields of a spec that an update may never change, per table.
_IMMUTABLE_SPEC_FIELDS = {
    "secrets": ("data",),
    "configs": ("data",),
}

Action = dict[str, Any]

# ------------------------------------------------------------------ builders


def create_action(
    table: str, object_id: str, name: str, spec: dict[str, Any], *, labels: dict[str, str] | None = None
) -> Action:
    action: Action = {"op": "create", "table": table, "id": object_id, "name": name}
    if labels is not None:
        action["labels"] = labels
    action["spec"] = spec
    return action


def update_action(
    table: str, object_id: str, version: int, *, spec: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
) -> Action:
    action: Action = {"op": "update", "table": table, "id": object_id, "version": version}
    if spec is not None:
        action["spec"] = spec
    if labels is not None:
        action["labels"] = labels
    return action


def delete_action(table: str, object_id: str, *, version: int | None = None, force: bool | None = None) -> Action:
    action: Action = {"op": "delete", "table": table, "id": object_id}
    if version is not None:
        action["version"] = version
    if force is not None:
        action["force"] = force
    return action


def put_action(key: str, value: bytes) -> Action:
    return {"op": "put", "key": key, "value": value}


def cas_action(key: str, value: bytes, version: int) -> Action:
    return {"op": "cas", "key": key, "value": value, "version": version}


def kv_delete_action(key: str, *, version: int | None = None) -> Action:
    action: Action = {"op": "kv_delete", "key": key}
    if version is not None:
        action["version"] = version
    return action


def rotate_dek_action(key_id: int, wrapped: bytes) -> Action:
    return {"op": "rotate_dek", "key_id": key_id, "wrapped": wrapped}


def read_action() -> Action:
    return {"op": "read"}


def noop_action() -> Action:
    return {"op": "noop"}


# ------------------------------------------------------------------ the staged transaction


def fold(name: str) -> str:
    """Names are unique per table after case folding."""
    return name.casefold()


class Transaction:
    """Staged writes of one transaction over the committed tables, so that it applies entirely or not at all.

    It only reads the committed ``tables``, ``names`` and ``kv`` it is given;
    ``StateMachine`` writes what was staged once every action succeeded.
    """

    def __init__(
        self,
        tables: dict[str, dict[str, dict[str, Any]]],
        names: dict[str, dict[str, str]],
        kv: dict[str, dict[str, Any]],
        active_key_id: int,
        now: str,
        actor: str | None,
    ) -> None:
        self._tables, self._names, self._kv = tables, names, kv
        self._active_key_id = active_key_id
        self.now = now
        self.actor = actor
        self.objects: dict[tuple[str, str], dict[str, Any] | None] = {}
        self.kv: dict[str, dict[str, Any] | None] = {}
        self.events: list[Event] = []
        self.effects: list[tuple[str, Any]] = []
        self.key_state: tuple[int, int] | None = None  # (active key id, retired below), when rotated

    def get(self, table: str, object_id: str) -> dict[str, Any] | None:
        key = (table, object_id)
        if key in self.objects:
            return self.objects[key]
        return self._tables[table].get(object_id)

    def id_for_name(self, table: str, name: str) -> str | None:
        folded = fold(name)
        for (t, staged_id), obj in self.objects.items():
            if t == table and obj is not None and fold(obj["name"]) == folded:
                return staged_id
        oid = self._names[table].get(folded)
        if oid is not None and (table, oid) in self.objects:
            return None  # staged: deleted or renamed, and checked above
        return oid

    def kv_get(self, key: str) -> dict[str, Any] | None:
        if key in self.kv:
            return self.kv[key]
        return self._kv.get(key)

    def all_objects(self, table: str) -> Iterator[dict[str, Any] | None]:
        seen = set()
        for (t, oid), obj in self.objects.items():
            if t == table:
                seen.add(oid)
                yield obj
        for oid, obj in self._tables[table].items():
            if oid not in seen:
                yield obj

    @property
    def active_key_id(self) -> int:
        return self.key_state[0] if self.key_state else self._active_key_id


# ------------------------------------------------------------------ appliers


def apply_action(tx: Transaction, index: int, action: Action) -> Any:
    """Stage one action of the transaction carried by entry ``index``; returns its result.

    Raises:
        RaftstoreError: the action is refused (the whole transaction is).
        KeyError, TypeError, ValueError, AttributeError: the action is malformed.
    """
    op = action["op"]
    handler = _APPLIERS.get(op)
    if handler is None:
        raise InvalidArgument(f"unknown action {op!r}")
    return handler(tx, index, action)


def _create(tx: Transaction, index: int, a: Action) -> dict[str, Any]:
    table = object_table(a["table"])
    object_id, name = str(a["id"]), str(a["name"])
    if not object_id or not name:
        raise InvalidArgument("an object needs an id and a name")
    if table in ("secrets", "configs"):
        validate_name(name)
        spec = dict(a.get("spec") or {})
        validate_data(table, spec.get("data"))
        _grants(spec.get("grants", []))
    if tx.get(table, object_id) is not None:
        raise AlreadyExists(f"{singular(table)} {object_id} already exists")
    if tx.id_for_name(table, name) is not None:
        raise AlreadyExists(f"{singular(table)} {name} already exists")
    if table == "cluster" and any(o is not None for o in tx.all_objects("cluster")):
        raise AlreadyExists("the cluster object already exists")
    obj = {
        "id": object_id,
        "name": name,
        "version": index,
        "created_at": tx.now,
        "updated_at": tx.now,
        "labels": _labels(a.get("labels")),
        "spec": dict(a.get("spec") or {}),
    }
    tx.objects[(table, object_id)] = obj
    tx.events.append(Event(index, "create", table, object_id, name))
    return {"id": object_id, "version": index}


def _update(tx: Transaction, index: int, a: Action) -> dict[str, Any]:
    table = object_table(a["table"])
    object_id = str(a["id"])
    old = tx.get(table, object_id)
    if old is None:
        raise NotFound(f"{singular(table)} {object_id} not found")
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
    new["updated_at"] = tx.now
    tx.objects[(table, object_id)] = new
    tx.events.append(Event(index, "update", table, object_id, old["name"]))
    if table == "cluster":
        tx.effects.extend(_cluster_effects(old["spec"], new["spec"]))
    return {"id": object_id, "version": index}


def _delete(tx: Transaction, index: int, a: Action) -> dict[str, Any]:
    table = object_table(a["table"])
    object_id = str(a["id"])
    old = tx.get(table, object_id)
    if old is None:
        raise NotFound(f"{singular(table)} {object_id} not found")
    if a.get("version") is not None and int(a["version"]) != old["version"]:
        raise UpdateOutOfSequence()
    if table in ("secrets", "configs") and old["spec"].get("grants") and not a.get("force"):
        raise InvalidArgument(
            f"{singular(table)} {old['name']} is granted to {len(old['spec']['grants'])} node(s); "
            "revoke the grants or use --force to remove it anyway"
        )
    if table == "cluster":
        raise InvalidArgument("the cluster object cannot be removed")
    tx.objects[(table, object_id)] = None
    tx.events.append(Event(index, "delete", table, object_id, old["name"]))
    return {"id": object_id, "version": index}


def _kv_write(tx: Transaction, index: int, key: str, value: bytes) -> dict[str, Any]:
    old = tx.kv_get(key)
    record = {
        "key": key,
        "value": value,
        "version": index,
        "created_version": old["created_version"] if old else index,
    }
    tx.kv[key] = record
    tx.events.append(Event(index, "update" if old else "create", "kv", key, key))
    return {"key": key, "version": index}


def _put(tx: Transaction, index: int, a: Action) -> dict[str, Any]:
    key, value = _kv_key(a["key"]), _kv_value(a["value"])
    return _kv_write(tx, index, key, value)


def _cas(tx: Transaction, index: int, a: Action) -> dict[str, Any]:
    key, value = _kv_key(a["key"]), _kv_value(a["value"])
    expected = int(a["version"])
    old = tx.kv_get(key)
    current = old["version"] if old else 0
    if current != expected:
        raise _kv_out_of_sequence(expected, current)
    return _kv_write(tx, index, key, value)


def _kv_delete(tx: Transaction, index: int, a: Action) -> dict[str, Any]:
    key = _kv_key(a["key"])
    old = tx.kv_get(key)
    if old is None:
        raise NotFound(f"key {key!r} not found")
    if a.get("version") is not None and int(a["version"]) != old["version"]:
        raise _kv_out_of_sequence(int(a["version"]), old["version"])
    tx.kv[key] = None
    tx.events.append(Event(index, "delete", "kv", key, key))
    return {"key": key, "version": index}


def _rotate_dek(tx: Transaction, index: int, a: Action) -> dict[str, Any]:
    key_id = int(a["key_id"])
    active = tx.active_key_id
    if key_id <= active:
        raise InvalidArgument(f"data key {key_id} is not newer than the active key {active}")
    wrapped = a["wrapped"]
    if not isinstance(wrapped, bytes):
        raise InvalidArgument("a rotated data key arrives sealed")
    tx.key_state = (key_id, key_id)
    tx.effects.append(("dek_rotated", {"key_id": key_id, "wrapped": wrapped, "index": index}))
    return {"key_id": key_id}


def _noop(tx: Transaction, index: int, a: Action) -> None:
    return None


def _read(tx: Transaction, index: int, a: Action) -> int:
    """A read barrier: its result is the index at which the store was read."""
    return index


_APPLIERS: dict[str, Callable[[Transaction, int, Action], Any]] = {
    "create": _create,
    "update": _update,
    "delete": _delete,
    "put": _put,
    "cas": _cas,
    "kv_delete": _kv_delete,
    "rotate_dek": _rotate_dek,
    "noop": _noop,
    "read": _read,
}


# ------------------------------------------------------------------ field rules


def writes(actions: Any) -> bool:
    """Whether a transaction changes anything (only those are remembered for deduplication)."""
    return isinstance(actions, list) and any(
        isinstance(a, dict) and a.get("op") not in ("read", "noop") for a in actions
    )


def object_table(table: Any) -> str:
    if table not in OBJECT_TABLES:
        raise InvalidArgument(f"unknown table {table!r}")
    return str(table)


def singular(table: str) -> str:
    return {"nodes": "node", "secrets": "secret", "configs": "config"}.get(table, table)


def _kv_out_of_sequence(expected: int, current: int) -> UpdateOutOfSequence:
    """The conflict with the version the key is at now, so that the caller can re-read or retry from it."""
    now = f"the key is at version {current}" if current else "the key does not exist (version 0)"
    return UpdateOutOfSequence(f"update out of sequence: expected version {expected}, {now}")


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
