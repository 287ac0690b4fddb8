"""What ``raftstore.Client`` returns and takes: frozen dataclasses (its one error, ``Compacted``, is in the tree).

Results are built from the control API's plain maps in one place each
(``from_wire``), so a program never indexes a map whose keys might move.
Versions are Raft indexes: a key's ``version`` is the index of its last
change, and an event's ``version`` the index of the entry that caused it, so
"the store at version V" and "events after V" name the same point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Union


__all__ = [
    "KeyValue",
    "Compare",
    "Put",
    "Delete",
    "Operation",
    "TxnResult",
    "Event",
    "Member",
    "ClusterInfo",
    "ObjectInfo",
]


@dataclass(frozen=True)
class KeyValue:
    """One key of the replicated key/value table.

    ``version`` is the Raft index of the key's last change (what ``cas`` and
    ``Compare`` name); ``created_version`` the index that created it, so a key
    written exactly once has both equal.
    """

    key: str
    value: bytes
    version: int
    created_version: int

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> "KeyValue":
        return cls(str(raw["key"]), bytes(raw["value"]), int(raw["version"]), int(raw["created_version"]))


@dataclass(frozen=True)
class Compare:
    """A transaction's condition: ``key`` is at ``version`` (0: the key does not exist).

    The store checks versions where it writes, so the transaction must also
    put or delete ``key`` (see ``Client.txn``).
    """

    key: str
    version: int

    def to_wire(self) -> dict[str, Any]:
        return {"key": self.key, "version": self.version}


@dataclass(frozen=True)
class Put:
    """A transaction's operation: set ``key`` to ``value``."""

    key: str
    value: bytes

    def to_wire(self) -> dict[str, Any]:
        return {"op": "put", "key": self.key, "value": self.value}


@dataclass(frozen=True)
class Delete:
    """A transaction's operation: delete ``key`` (which must exist, or the transaction is not applied)."""

    key: str

    def to_wire(self) -> dict[str, Any]:
        return {"op": "delete", "key": self.key}


Operation = Union[Put, Delete]


@dataclass(frozen=True)
class TxnResult:
    """The outcome of ``Client.txn``, as etcd's TxnResponse: applied entirely, or not at all.

    ``succeeded``: every compare held and every operation was applied at
    ``version``. Otherwise nothing was applied: a compare failed or a key to
    delete was missing. ``conflict`` is the store's message and ``versions``
    the version of each key the transaction names as the answering manager
    saw it just after (0: absent), to re-read and retry from.
    """

    succeeded: bool
    version: int | None = None
    conflict: str | None = None
    versions: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> "TxnResult":
        version = raw.get("version")
        return cls(bool(raw["succeeded"]), int(version) if version is not None else None, raw.get("conflict"),
                   {str(k): int(v) for k, v in (raw.get("versions") or {}).items()})


@dataclass(frozen=True)
class Event:
    """A create, update or delete in the store (never a value).

    ``version`` is the Raft index of the change: resume a watch after it with
    ``since=event.version``. For the kv table ``id`` and ``name`` are the key.
    ``time`` is the proposing manager's clock (ISO 8601, UTC) and ``actor``
    its node id (None for entries written before events carried one).
    """

    version: int
    action: str  # create | update | delete
    table: str
    id: str
    name: str
    time: str = ""
    actor: str | None = None

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> "Event":
        return cls(int(raw["version"]), str(raw["action"]), str(raw["table"]), str(raw["id"]), str(raw["name"]),
                   str(raw.get("time") or ""), raw.get("actor"))

    def to_dict(self) -> dict[str, Any]:
        """The event as the control API sends it (what ``raftstore events --format json`` prints)."""
        return {"version": self.version, "action": self.action, "table": self.table, "id": self.id,
                "name": self.name, "time": self.time, "actor": self.actor}


@dataclass(frozen=True)
class Member:
    """A manager in the Raft configuration."""

    node_id: str
    addr: str


@dataclass(frozen=True)
class ClusterInfo:
    """What a node says about itself and its cluster (``raftstore info``).

    ``state`` is the node's mode: ``manager``, ``worker``, ``locked``,
    ``inactive`` or ``failed``. The Raft fields are None where the node has
    no store (locked, a worker, inactive). ``raw`` holds every field the
    daemon sent, for what has no attribute here.
    """

    state: str
    node_id: str | None
    cluster_id: str | None
    role: str | None
    locked: bool
    autolock: bool | None
    leader: str | None
    is_leader: bool
    managers: int | None
    nodes: int | None
    term: int | None
    commit_index: int | None
    applied_index: int | None
    members: tuple[Member, ...]
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> "ClusterInfo":
        raft = raw.get("raft") or {}
        members = tuple(Member(str(m["node_id"]), str(m["addr"])) for m in raft.get("members") or [])
        return cls(
            state=str(raw.get("state")),
            node_id=raw.get("node_id"),
            cluster_id=raw.get("cluster_id"),
            role=raw.get("role"),
            locked=bool(raw.get("locked")),
            autolock=raw.get("autolock"),
            leader=raw.get("leader"),
            is_leader=bool(raw.get("is_leader")),
            managers=raw.get("managers"),
            nodes=raw.get("nodes"),
            term=raft.get("term"),
            commit_index=raft.get("commit_index"),
            applied_index=raft.get("applied_index"),
            members=members,
            raw=dict(raw),
        )


@dataclass(frozen=True)
class ObjectInfo:
    """A secret's or config's metadata (never a secret's data): who it is granted to, and when it changed."""

    id: str
    name: str
    version: int
    created_at: str
    updated_at: str
    labels: Mapping[str, str]
    grants: tuple[str, ...]

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> "ObjectInfo":
        return cls(str(raw["id"]), str(raw["name"]), int(raw["version"]), str(raw["created_at"]),
                   str(raw["updated_at"]), dict(raw.get("labels") or {}), tuple(raw.get("grants") or ()))
