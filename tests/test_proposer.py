"""The proposer's outcomes without daemons: NoQuorum only for what never reached Raft, Timeout for the rest."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import pytest

from raftstore import NoQuorum, Timeout
from raftstore.manager._proposer import Proposer
from raftstore.state._state_machine import Outcome

LEADER_WAIT = 0.3


class FakeRaft:
    """Holds what the proposer hands over; the test decides whether there is a leader and when entries commit."""

    def __init__(self) -> None:
        self.leader = True
        self.submitted: list[tuple[bytes, Callable[[Any, int], None]]] = []

    def submit(self, payload: bytes, callback: Callable[[Any, int], None]) -> None:
        self.submitted.append((payload, callback))

    def proposer(self, first_leader_wait: float = 10.0) -> Proposer:
        return Proposer(submit=self.submit, seal_entry=lambda plain: plain, clock=lambda: "now",
                        has_leader=lambda: self.leader, leader_wait=LEADER_WAIT, first_leader_wait=first_leader_wait,
                        resubmit_after=60.0)


def _read_handed_over(raft: FakeRaft, proposer: Proposer) -> tuple[threading.Thread, list[Outcome]]:
    """A read proposed from another thread, returned once it has been handed to Raft."""
    outcome: list[Outcome] = []
    thread = threading.Thread(target=lambda: outcome.append(proposer.commit([{"op": "read"}], timeout=10)))
    thread.start()
    while not raft.submitted:
        time.sleep(0.01)
    return thread, outcome


def _wait(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "condition not met in 5 s"
        time.sleep(0.01)


def test_without_a_leader_nothing_is_handed_over_and_the_refusal_is_quick() -> None:
    raft = FakeRaft()
    proposer = raft.proposer()
    _wait(lambda: proposer._usable)  # the watchdog has seen a leader...
    raft.leader = False
    _wait(lambda: not proposer._usable)  # ...and then lost it
    started = time.monotonic()
    with pytest.raises(NoQuorum):
        proposer.commit([{"op": "put", "key": "k", "value": b"v"}], timeout=10)
    assert time.monotonic() - started < LEADER_WAIT + 0.5
    assert raft.submitted == []
    raft.leader = True  # a leader later finds nothing of it to commit
    time.sleep(0.2)
    assert raft.submitted == []
    proposer.close()


def test_handed_over_then_leader_lost_is_a_timeout_never_no_quorum() -> None:
    raft = FakeRaft()
    proposer = raft.proposer()
    errors: list[Exception] = []

    def put() -> None:
        try:
            proposer.commit([{"op": "put", "key": "k", "value": b"v"}], timeout=10)
        except Exception as error:  # noqa: BLE001 (recorded for the assertion)
            errors.append(error)

    thread = threading.Thread(target=put)
    started = time.monotonic()
    thread.start()
    while not raft.submitted:
        time.sleep(0.01)
    raft.leader = False
    thread.join(5)
    assert len(errors) == 1 and isinstance(errors[0], Timeout), errors
    assert "may or may not have been applied" in str(errors[0])
    assert time.monotonic() - started < 2 * LEADER_WAIT + 1.0
    proposer.close()


def test_a_commit_after_the_leader_returned_is_reported() -> None:
    raft = FakeRaft()
    proposer = raft.proposer()
    thread, outcome = _read_handed_over(raft, proposer)
    raft.leader = False
    time.sleep(LEADER_WAIT / 2)
    raft.leader = True
    raft.submitted[0][1]([Outcome(True, [7])], 0)
    thread.join(5)
    assert outcome and outcome[0].ok and outcome[0].results == [7]
    proposer.close()


def test_close_says_maybe_for_what_was_handed_over() -> None:
    raft = FakeRaft()
    proposer = raft.proposer()
    thread, outcome = _read_handed_over(raft, proposer)
    proposer.close()
    thread.join(5)
    assert outcome and outcome[0].error_code == Timeout().code
    assert "may or may not have been applied" in outcome[0].error_message


def test_a_manager_that_never_saw_a_leader_gives_the_first_election_longer() -> None:
    raft = FakeRaft()
    raft.leader = False
    proposer = raft.proposer(first_leader_wait=3 * LEADER_WAIT)
    started = time.monotonic()
    with pytest.raises(NoQuorum):
        proposer.commit([{"op": "put", "key": "k", "value": b"v"}], timeout=10)
    assert 3 * LEADER_WAIT - 0.2 <= time.monotonic() - started < 3 * LEADER_WAIT + 0.5
    assert raft.submitted == []
    proposer.close()
