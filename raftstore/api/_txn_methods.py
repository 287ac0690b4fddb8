"""``kv.txn``: several keys changed as one log entry, or none of them (as etcd's Txn).

A transaction is a list of compares (``{"key", "version"}``: the key is at
that version now; version 0: the key does not exist) and a list of operations
(``{"op": "put", "key", "value"}`` or ``{"op": "delete", "key"}``). The
method turns them into the state machine's actions (``put``, ``cas``,
``kv_delete``) and proposes them as one transaction: the state machine applies
every action of it or, when one fails, none.

The store checks a version only where it writes, so each compare folds into
the operation on its key: a put becomes a ``cas`` and a delete a versioned
``kv_delete``. A compare on a key the transaction does not write is refused
up front rather than checked in a second, racing step.

A delete needs its key to exist: a transaction that deletes a missing key
is not applied, as if it had compared (etcd would delete nothing and go on;
here the key's absence most likely means the caller's view is stale).

Every input is checked before anything is proposed, each failure one
``InvalidArgument`` line, so a bad transaction changes nothing and costs no
log entry. A failed compare is not an error of the request: the reply says
``succeeded: false``, with the state machine's message and the versions the
keys are at on this manager just after, as etcd answers a Txn whose
condition is false. The outcome, success or not, is remembered under the
request id, so a retry gets the same answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..keyring import InvalidArgument, NotFound, UpdateOutOfSequence
from ..state import cas_action, kv_delete_action, put_action
from ._authz import ADMIN
from ._params import request_id_param
from ._registry import method

if TYPE_CHECKING:
    from ._host import Host

__all__ = ["MAX_TXN_OPERATIONS", "txn_actions"]

#: Operations (and compares) in one transaction at most; the proposer also caps its encoded size (1.5 MiB).
MAX_TXN_OPERATIONS = 1024


def _key(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise InvalidArgument(f"{where}: a key is a non-empty string")
    return raw


def _compares(raw: Any) -> dict[str, int]:
    if raw is None:
        return {}
    if not isinstance(raw, list) or len(raw) > MAX_TXN_OPERATIONS:
        raise InvalidArgument(f"compares are a list of at most {MAX_TXN_OPERATIONS} {{key, version}} maps")
    compares: dict[str, int] = {}
    for number, item in enumerate(raw, 1):
        where = f"compare {number}"
        if not isinstance(item, dict) or set(item) != {"key", "version"}:
            raise InvalidArgument(f"{where}: a compare is a map of exactly key and version")
        key, version = _key(item["key"], where), item["version"]
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise InvalidArgument(f"{where}: version must be a whole number (0: the key must not exist)")
        if key in compares:
            raise InvalidArgument(f"{where}: key {key!r} is compared twice")
        compares[key] = version
    return compares


def _operations(raw: Any) -> list[tuple[str, str, bytes | None]]:
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_TXN_OPERATIONS:
        raise InvalidArgument(f"a transaction has 1 to {MAX_TXN_OPERATIONS} operations (put or delete)")
    operations: list[tuple[str, str, bytes | None]] = []
    seen: set[str] = set()
    for number, item in enumerate(raw, 1):
        where = f"operation {number}"
        if not isinstance(item, dict) or item.get("op") not in ("put", "delete"):
            raise InvalidArgument(f"{where}: an operation is a map with op put or delete")
        expected = {"op", "key", "value"} if item["op"] == "put" else {"op", "key"}
        if set(item) != expected:
            raise InvalidArgument(f"{where}: a {item['op']} has exactly the fields {', '.join(sorted(expected))}")
        key = _key(item["key"], where)
        if key in seen:
            raise InvalidArgument(f"{where}: key {key!r} is written twice in one transaction")
        seen.add(key)
        value = item.get("value")
        if isinstance(value, str):
            value = value.encode()
        if item["op"] == "put" and not isinstance(value, bytes):
            raise InvalidArgument(f"{where}: a put's value is bytes")
        operations.append((item["op"], key, value))
    return operations


def txn_actions(params: dict[str, Any]) -> list[dict[str, Any]]:
    """The state machine's actions for a transaction's params, every input checked first.

    Raises:
        InvalidArgument: a malformed compare or operation, a key written twice,
            a compare on a key no operation writes, or a delete that requires
            its key not to exist.
    """
    compares = _compares(params.get("compares"))
    operations = _operations(params.get("operations"))
    written = {key for _, key, _ in operations}
    unwritten = sorted(set(compares) - written)
    if unwritten:
        raise InvalidArgument(f"compare on {unwritten[0]!r}, which no operation writes: the store checks a "
                              "version where it writes (put or delete that key in the same transaction)")
    actions: list[dict[str, Any]] = []
    for op, key, value in operations:
        version = compares.get(key)
        if op == "put":
            assert value is not None
            actions.append(put_action(key, value) if version is None else cas_action(key, value, version))
        elif version == 0:
            raise InvalidArgument(f"delete of {key!r} with compare version 0: a key that must not exist "
                                  "cannot be deleted")
        else:
            actions.append(kv_delete_action(key, version=version))
    return actions


@method("kv.txn", allow=ADMIN)
def kv_txn(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    """Apply a transaction as one log entry: ``{"succeeded", "version", "results"}``, or ``succeeded: false``
    with ``conflict`` (the message) and ``versions`` (the version here, just after, of each key it names).

    Raises:
        InvalidArgument: a malformed transaction (see ``txn_actions``); nothing is proposed.
        NoQuorum, Timeout: as any write (retry with the same request_id).
    """
    actions = txn_actions(params)
    request_id = request_id_param(params)
    manager = host.require_manager()
    try:
        results = manager.propose(actions, proposal_id=request_id)
    except (UpdateOutOfSequence, NotFound) as conflict:  # a compare failed, or a key to delete is missing
        keys = [a["key"] for a in actions]
        versions = {key: _version_here(manager.state, key) for key in keys}
        return {"succeeded": False, "version": None, "results": [], "conflict": str(conflict), "versions": versions}
    version = max((int(r["version"]) for r in results), default=None)
    return {"succeeded": True, "version": version, "results": results}


def _version_here(state: Any, key: str) -> int:
    """A key's version in this manager's copy of the store (0: absent); no barrier, for a message only."""
    try:
        return int(state.kv_get(key)["version"])
    except NotFound:
        return 0
