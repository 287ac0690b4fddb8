"""The state machine's contents as snapshot parts: taken without stopping Raft, read back a part at a time.

This module alone owns the state's dump format. Two versions are read; the
second is written:

- **format 1**, one msgpack map (``StateMachine.dump``): ``format``,
  ``applied_index``, ``tables`` (table -> list of objects), ``kv`` (list of
  records), ``applied`` (list of [proposal id, outcome]), ``keys``
  (``active``, ``retired_below``, ``records``). Backups carry it, and
  snapshots written before format 2.
- **format 2**, a sequence of parts, each its own msgpack value, so that
  neither writer nor reader holds a second copy of a large store:

      part 0    a map: format 2, applied_index, keys (as in format 1)
      part 1..  arrays [section, table or nil, [item, ...]], a few MiB each:
                ["object", table, [object, ...]]
                ["kv", nil, [record, ...]]
                ["applied", nil, [[proposal id, outcome], ...]]

Why a view and not a lock or a fork. Committed records are never changed in
place: an update builds a new dict and the state machine swaps it in (the
duty ``StateMachine`` documents). So a consistent view of the whole store is
a shallow copy of its dicts, which costs pointer copies (a few milliseconds
for 200,000 keys) on the apply thread and no copy of any value; the view is
then packed on a background thread while Raft goes on. A forked child would
copy every page whose reference counts it touches (all of them) and is unsafe
beside the daemon's other threads; a persistent map would tax every write for
the rare snapshot.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import msgpack

from ..keyring import InvalidArgument
from ._actions import OBJECT_TABLES, fold

__all__ = ["PART_BYTES", "StateView", "LoadedState", "load_parts", "load_dump"]

#: About how large a part grows before it is cut: small enough that packing it
#: holds the interpreter for milliseconds, large enough that sealing and
#: framing cost nothing next to it.
PART_BYTES = 4 * 2**20


@dataclass
class LoadedState:
    """Everything a dump holds, read back and indexed, ready to be swapped in."""

    applied_index: int = 0
    active_key_id: int = 0
    retired_below: int = 0
    key_records: dict[int, int] = field(default_factory=dict)
    tables: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {t: {} for t in OBJECT_TABLES})
    names: dict[str, dict[str, str]] = field(default_factory=lambda: {t: {} for t in OBJECT_TABLES})
    kv: dict[str, dict[str, Any]] = field(default_factory=dict)
    applied: collections.OrderedDict[bytes, bytes] = field(default_factory=collections.OrderedDict)  # packed outcomes

    def _add_object(self, table: str, obj: dict[str, Any]) -> None:
        self.tables[table][obj["id"]] = obj
        self.names[table][fold(obj["name"])] = obj["id"]

    def _set_header(self, data: dict[str, Any]) -> None:
        self.applied_index = int(data["applied_index"])
        keys = data["keys"]
        self.active_key_id = int(keys["active"])
        self.retired_below = int(keys["retired_below"])
        records = keys.get("records")
        if records is None:
            # A dump from before the count: every entry so far may have been
            # sealed under the active term, an upper bound to start from.
            records = [[max(self.active_key_id, 1), self.applied_index]]
        self.key_records = {int(k): int(n) for k, n in records}


def _header(applied_index: int, active: int, retired_below: int, key_records: dict[int, int]) -> dict[str, Any]:
    return {
        "applied_index": applied_index,
        "keys": {
            "active": active,
            "retired_below": retired_below,
            "records": sorted([k, n] for k, n in key_records.items()),
        },
    }


class StateView:
    """The state at one applied index, frozen by shallow copies (see the module docstring for why that is enough).

    Built under the state machine's lock; ``parts`` and ``dump`` may then run
    on any thread, while the state machine goes on applying.
    """

    def __init__(
        self,
        *,
        applied_index: int,
        active_key_id: int,
        retired_below: int,
        key_records: dict[int, int],
        tables: dict[str, dict[str, dict[str, Any]]],
        kv: dict[str, dict[str, Any]],
        applied: collections.OrderedDict[bytes, bytes],
    ) -> None:
        self.applied_index = applied_index
        self._header = _header(applied_index, active_key_id, retired_below, key_records)
        # The caller's own copies (``StateMachine.snapshot_view``): nobody else changes them.
        self._tables = tables
        self._kv = kv
        self._applied = applied

    def dump(self) -> dict[str, Any]:
        """Format 1: one map (backups, digests)."""
        return {
            "format": 1,
            **self._header,
            "tables": {t: list(self._tables[t].values()) for t in OBJECT_TABLES},
            "kv": list(self._kv.values()),
            "applied": [[pid, msgpack.unpackb(out, raw=False)] for pid, out in self._applied.items()],
        }

    def parts(self, part_bytes: int = PART_BYTES) -> Iterator[bytes]:
        """Format 2: the header, then sections cut at about ``part_bytes`` each."""
        packer = msgpack.Packer(use_bin_type=True)
        yield packer.pack({"format": 2, **self._header})
        sections: list[tuple[str, str | None, Iterable[Any]]] = [
            ("object", table, self._tables[table].values()) for table in OBJECT_TABLES
        ]
        sections += [("kv", None, self._kv.values()), ("applied", None, ([p, msgpack.unpackb(o, raw=False)] for p, o in self._applied.items()))]
        for section, table, items in sections:
            packed: list[bytes] = []
            size = 0
            for item in items:
                one = packer.pack(item)
                packed.append(one)
                size += len(one)
                if size >= part_bytes:
                    yield _section(packer, section, table, packed)
                    packed, size = [], 0
            if packed:
                yield _section(packer, section, table, packed)


def _section(packer: msgpack.Packer, section: str, table: str | None, packed: list[bytes]) -> bytes:
    return b"".join(
        [packer.pack_array_header(3), packer.pack(section), packer.pack(table), packer.pack_array_header(len(packed))]
        + packed
    )


def load_parts(parts: Iterable[bytes], on_header: Callable[[], None] = lambda: None) -> LoadedState:
    """Read a dump of either format, a part at a time.

    ``on_header`` runs once the first part has proved to be a dump this
    version reads, before anything is built from it.

    Raises:
        InvalidArgument: the parts are not a state dump this version reads.
    """
    loaded = LoadedState()
    seen_header = False
    for part in parts:
        value = msgpack.unpackb(part, raw=False)
        if not seen_header:
            if not isinstance(value, dict) or value.get("format") not in (1, 2):
                found = value.get("format") if isinstance(value, dict) else type(value).__name__
                raise InvalidArgument(f"unknown snapshot state format {found!r}")
            loaded._set_header(value)
            seen_header = True
            on_header()
            if value["format"] == 1:
                _load_format_1(loaded, value)
            continue
        if not isinstance(value, list) or len(value) != 3:
            raise InvalidArgument("a snapshot state part is not a section")
        _load_section(loaded, *value)
    if not seen_header:
        raise InvalidArgument("the snapshot holds no state")
    return loaded


def load_dump(data: dict[str, Any]) -> LoadedState:
    """Read a format 1 dump already unpacked (a backup's state).

    Raises:
        InvalidArgument: it is not a format 1 dump.
    """
    if not isinstance(data, dict) or data.get("format") != 1:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise InvalidArgument(f"unknown snapshot state format {found!r}")
    loaded = LoadedState()
    loaded._set_header(data)
    _load_format_1(loaded, data)
    return loaded


def _load_format_1(loaded: LoadedState, data: dict[str, Any]) -> None:
    for table in OBJECT_TABLES:
        for obj in data["tables"].get(table, []):
            loaded._add_object(table, obj)
    _load_section(loaded, "kv", None, data["kv"])
    _load_section(loaded, "applied", None, data["applied"])


def _load_section(loaded: LoadedState, section: str, table: str | None, items: list[Any]) -> None:
    if section == "object" and table in loaded.tables:
        for obj in items:
            loaded._add_object(table, obj)
    elif section == "kv":
        kv = loaded.kv
        for record in items:
            kv[record["key"]] = record
    elif section == "applied":
        for pid, outcome in items:
            loaded.applied[bytes(pid)] = msgpack.packb(outcome, use_bin_type=True)
    else:
        raise InvalidArgument(f"unknown snapshot state section {section!r}")
