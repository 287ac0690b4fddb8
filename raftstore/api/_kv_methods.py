"""Control-API methods for keys and values, the event history, and the state digest.

Writes go through the proposer (``manager``) and carry the caller's
``request_id`` when it sent one, so that a retried write applies once. Reads
name the consistency they want (linearizable unless the caller says
otherwise). ``events`` streams the store's history, as an etcd watch does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..keyring import InvalidArgument
from ..net import Stream
from ..state import TABLES
from ._authz import ADMIN
from ._params import read_state, request_id_param, text_param
from ._registry import method

if TYPE_CHECKING:
    from ._host import Host

__all__ = ["kv_put", "kv_cas", "kv_rm", "kv_get", "kv_ls", "events", "debug_digest"]


def _value(params: dict[str, Any]) -> bytes:
    value = params.get("value")
    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, bytes):
        raise InvalidArgument("a value is required")
    return value


@method("kv.put", allow=ADMIN)
def kv_put(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    results = host.require_manager().propose(
        [{"op": "put", "key": text_param(params, "key"), "value": _value(params)}],
        proposal_id=request_id_param(params),
    )
    return results[0]


@method("kv.cas", allow=ADMIN)
def kv_cas(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    version = params.get("version")
    if not isinstance(version, int) or version < 0:
        raise InvalidArgument("version must be a whole number (0: the key must not exist)")
    results = host.require_manager().propose(
        [{"op": "cas", "key": text_param(params, "key"), "value": _value(params), "version": version}],
        proposal_id=request_id_param(params),
    )
    return results[0]


@method("kv.rm", allow=ADMIN)
def kv_rm(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    action: dict[str, Any] = {"op": "kv_delete", "key": text_param(params, "key")}
    if params.get("version") is not None:
        action["version"] = int(params["version"])
    return host.require_manager().propose([action], proposal_id=request_id_param(params))[0]


@method("kv.get", allow=ADMIN)
def kv_get(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    return dict(read_state(host, params).kv_get(text_param(params, "key")))


@method("kv.ls", allow=ADMIN)
def kv_ls(host: "Host", params: dict[str, Any]) -> list[dict[str, Any]]:
    prefix = params.get("prefix") or ""
    if not isinstance(prefix, str):
        raise InvalidArgument("prefix must be a string")
    return [dict(r) for r in read_state(host, params).kv_list(prefix)]


@method("events", allow=ADMIN)
def events(host: "Host", params: dict[str, Any]) -> Stream:
    """Events after ``since`` (default: now), optionally of one ``table`` and names starting with ``prefix``.

    ``since`` past the newest version waits for it when following, as an etcd
    watch does, and is refused with ``follow`` off (nothing could ever come).
    ``since`` below the compacted history names the oldest version left.
    """
    manager = host.require_manager()
    since = params.get("since")
    follow = params.get("follow", True)
    head = manager.read_barrier().applied_index
    if since is None:
        since = head
    if not isinstance(since, int) or since < 0:
        raise InvalidArgument("--since takes a version (a whole number)")
    until = params.get("until")
    if until is not None and (not isinstance(until, int) or until < since):
        raise InvalidArgument(f"--until takes a version no lower than --since ({since})")
    table, prefix = params.get("table"), params.get("prefix") or ""
    if table is not None and table not in TABLES:
        raise InvalidArgument(f"unknown table {table!r}: one of {', '.join(TABLES)}")
    if not isinstance(prefix, str):
        raise InvalidArgument("prefix must be a string")
    if since > head and not follow:
        raise InvalidArgument(f"version {since} is in the future: the newest version is {head}")
    state = manager.state
    state.events_since(since)  # raises now if that history is compacted

    def wanted(event: dict[str, Any]) -> bool:
        return (table is None or event["table"] == table) and event["name"].startswith(prefix)

    # The last version to stream: the head without follow (or --until if lower), --until with it, else none.
    last_version = until if follow else min(head, until if until is not None else head)

    def items(stop: Any) -> Any:
        if last_version is None:  # follow, no end: new events as they are applied
            yield from (item for item in manager.iter_events(since, stop) if wanted(item))
            return
        last = since
        while not stop.is_set():
            applied = state.applied_index  # before the events: none up to it can be missed
            for event in state.events_since(last):
                if event.version > last_version:
                    return
                last = event.version
                if wanted(event.to_dict()):
                    yield event.to_dict()
            if applied >= last_version:
                return
            with manager.applied:
                manager.applied.wait(0.5)

    return Stream(items)


@method("debug.digest", allow=ADMIN)
def debug_digest(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    """A hash of this manager's replicated state and the index it reflects (for convergence checks)."""
    state = host.require_manager().state
    with state.lock:
        return {"applied_index": state.applied_index, "digest": state.digest()}
