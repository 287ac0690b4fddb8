"""``kv.txn`` on the server side, against the real state machine: all or nothing, one entry, bad input refused first."""

from __future__ import annotations

import os
from typing import Any

import pytest

from raftstore import InvalidArgument, NotFound
from raftstore.api._methods import ALLOWED, METHODS
from raftstore.api._authz import ADMIN
from raftstore.api._txn_methods import MAX_TXN_OPERATIONS, txn_actions
from raftstore.manager._manager import raise_for_outcome
from raftstore.state._state_machine import StateMachine


class FakeManager:
    """A manager reduced to its store: each proposal is the next log entry, applied at once."""

    def __init__(self) -> None:
        self.state = StateMachine()
        self.index = 1
        self.proposals: list[list[dict[str, Any]]] = []

    def propose(self, actions: list[dict[str, Any]], *, proposal_id: bytes | None = None) -> list[Any]:
        self.index += 1
        self.proposals.append(actions)
        outcomes, _ = self.state.apply_batch(self.index, 1, [(proposal_id or os.urandom(16), "2026-01-01T00:00:00Z",
                                                              actions, "node-a")])
        return raise_for_outcome(outcomes[0])


class FakeDaemon:
    def __init__(self) -> None:
        self.manager = FakeManager()

    def require_manager(self) -> FakeManager:
        return self.manager


def txn(daemon: FakeDaemon, compares: list[Any], operations: list[Any], request_id: bytes | None = None) -> Any:
    params: dict[str, Any] = {"compares": compares, "operations": operations}
    if request_id is not None:
        params["request_id"] = request_id
    return METHODS["kv.txn"](daemon, params)  # type: ignore[arg-type]


def put(key: str, value: bytes = b"v") -> dict[str, Any]:
    return {"op": "put", "key": key, "value": value}


def test_kv_txn_is_declared_for_admins_only() -> None:
    assert ALLOWED["kv.txn"] == ADMIN


BAD = [
    ([], []),  # no operation
    ([], [{"op": "get", "key": "a"}]),
    ([], [{"op": "put", "key": "a"}]),  # no value
    ([], [{"op": "put", "key": "a", "value": 5}]),
    ([], [{"op": "put", "key": "", "value": b"v"}]),
    ([], [{"op": "delete", "key": "a", "value": b"v"}]),  # a field too many
    ([], [put("a"), put("a")]),  # written twice
    ([], [put("a"), {"op": "delete", "key": "a"}]),
    ([{"key": "a", "version": -1}], [put("a")]),
    ([{"key": "a", "version": True}], [put("a")]),
    ([{"key": "a", "version": "3"}], [put("a")]),
    ([{"key": "a"}], [put("a")]),
    ([{"key": "a", "version": 0}, {"key": "a", "version": 0}], [put("a")]),
    ([{"key": "b", "version": 0}], [put("a")]),  # a compare on a key nothing writes
    ([{"key": "a", "version": 0}], [{"op": "delete", "key": "a"}]),  # must not exist, and delete it
    ("a", [put("a")]),
    ([], "put a"),
    ([], [put(f"k{i}") for i in range(MAX_TXN_OPERATIONS + 1)]),
]


@pytest.mark.parametrize(("compares", "operations"), BAD)
def test_bad_input_is_one_line_and_changes_nothing(compares: Any, operations: Any) -> None:
    daemon = FakeDaemon()
    txn(daemon, [], [put("a", b"before")])
    digest = daemon.manager.state.digest()
    entries = len(daemon.manager.proposals)
    with pytest.raises(InvalidArgument) as refused:
        txn(daemon, compares, operations)
    assert "\n" not in str(refused.value) and str(refused.value)
    assert len(daemon.manager.proposals) == entries, "a bad transaction reached the log"
    assert daemon.manager.state.digest() == digest


def test_bad_request_id_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        txn(FakeDaemon(), [], [put("a")], request_id=b"short")


def test_compares_fold_into_the_writes() -> None:
    actions = txn_actions({"compares": [{"key": "a", "version": 3}, {"key": "b", "version": 0},
                                        {"key": "c", "version": 7}],
                           "operations": [put("a", b"1"), put("b", b"2"), {"op": "delete", "key": "c"},
                                          {"op": "delete", "key": "d"}, put("e", "text")]})
    assert actions == [
        {"op": "cas", "key": "a", "value": b"1", "version": 3},
        {"op": "cas", "key": "b", "value": b"2", "version": 0},
        {"op": "kv_delete", "key": "c", "version": 7},
        {"op": "kv_delete", "key": "d"},
        {"op": "put", "key": "e", "value": b"text"},
    ]


def test_a_transaction_is_one_entry_and_all_of_it_applies() -> None:
    daemon = FakeDaemon()
    state = daemon.manager.state
    txn(daemon, [], [put("queue/1", b"job"), put("other", b"x")])
    queued = state.kv_get("queue/1")["version"]
    result = txn(daemon, [{"key": "queue/1", "version": queued}, {"key": "running/1", "version": 0}],
                 [{"op": "delete", "key": "queue/1"}, put("running/1", b"job")])
    assert result["succeeded"] is True
    assert result["version"] == daemon.manager.index  # one log entry carried every operation
    assert state.kv_get("running/1")["version"] == result["version"]
    with pytest.raises(NotFound):
        state.kv_get("queue/1")
    assert [e.version for e in state.events_since(queued)] == [result["version"]] * 2


@pytest.mark.parametrize("second", ["stale compare", "must not exist", "missing key to delete"])
def test_a_failed_condition_applies_nothing(second: str) -> None:
    daemon = FakeDaemon()
    state = daemon.manager.state
    txn(daemon, [], [put("a", b"1"), put("b", b"1")])
    version = state.kv_get("a")["version"]
    before, events = [dict(r) for r in state.kv_list()], len(state.events_since(0))
    failing = {
        "stale compare": ([{"key": "b", "version": version - 1}], put("b", b"2")),
        "must not exist": ([{"key": "b", "version": 0}], put("b", b"2")),
        "missing key to delete": ([], {"op": "delete", "key": "nope"}),
    }[second]
    result = txn(daemon, [{"key": "a", "version": version}, *failing[0]], [put("a", b"2"), failing[1]])
    assert result["succeeded"] is False and result["version"] is None
    assert result["conflict"], result
    assert result["versions"]["a"] == version  # where the keys are now, to retry from
    assert state.kv_list() == before and len(state.events_since(0)) == events  # nothing applied
    assert state.kv_get("a")["value"] == b"1"


def test_a_retried_transaction_is_applied_once_and_answered_the_same() -> None:
    daemon = FakeDaemon()
    request_id = os.urandom(16)
    first = txn(daemon, [{"key": "n", "version": 0}], [put("n", b"1")], request_id=request_id)
    again = txn(daemon, [{"key": "n", "version": 0}], [put("n", b"1")], request_id=request_id)
    assert first["succeeded"] and again == first  # not a conflict with its own first copy
    assert daemon.manager.state.kv_get("n")["version"] == first["version"]
    assert len(daemon.manager.state.events_since(0)) == 1
