"""The proposer without daemons: NoQuorum only for what never reached Raft, Timeout for the rest; entries pipelined."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import msgpack
import pytest

from raftstore import NoQuorum, Timeout
from raftstore.manager._proposer import WINDOW, Proposer
from raftstore.state._state_machine import Outcome

LEADER_WAIT = 0.3


class FakeRaft:
    """Holds what the proposer hands over; the test decides whether there is a leader and when entries commit."""

    def __init__(self) -> None:
        self.leader = True
        self.submitted: list[tuple[bytes, Callable[[Any, int], None]]] = []

    def submit(self, payload: Any, callback: Callable[[Any, int], None]) -> None:
        if callable(payload):  # a builder: Raft's tick thread runs it; here at once
            payload = payload()
            if payload is None:
                return
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


# ------------------------------------------------------------------ pipelining


def _ids(payload: bytes) -> list[bytes]:
    """The proposal ids an entry carries, in order (``seal_entry`` is the identity here)."""
    return [bytes(raw[0]) for raw in msgpack.unpackb(payload, raw=False)]


class _Callers:
    """Callers committing from their own threads, each with a known proposal id."""

    def __init__(self, proposer: Proposer) -> None:
        self.proposer = proposer
        self.outcomes: dict[bytes, Outcome | Exception] = {}
        self.threads: list[threading.Thread] = []

    def start(self, proposal_id: bytes) -> None:
        def run() -> None:
            try:
                self.outcomes[proposal_id] = self.proposer.commit(
                    [{"op": "put", "key": proposal_id.decode(), "value": b"v"}], proposal_id=proposal_id, timeout=10
                )
            except Exception as error:  # noqa: BLE001 (recorded for the assertion)
                self.outcomes[proposal_id] = error

        thread = threading.Thread(target=run)
        thread.start()
        self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(5)
            assert not thread.is_alive()


def _resolve(raft: FakeRaft, entry: int, result_of: Callable[[bytes], Any] = lambda pid: pid) -> None:
    """Apply submitted entry ``entry``: each proposal's outcome carries its own id."""
    payload, callback = raft.submitted[entry]
    callback([Outcome(True, [result_of(pid)]) for pid in _ids(payload)], 0)


def test_several_entries_in_flight_then_one_group_for_what_queued() -> None:
    raft = FakeRaft()
    proposer = raft.proposer()
    _wait(lambda: proposer._usable)
    callers = _Callers(proposer)
    for n in range(WINDOW):  # one at a time: each finds the window open and goes out as its own entry
        callers.start(b"p%d" % n)
        _wait(lambda n=n: len(raft.submitted) == n + 1)
    for n in range(WINDOW, WINDOW + 3):  # the window is full: these wait
        callers.start(b"p%d" % n)
    _wait(lambda: len(proposer._queue) == 3)
    assert len(raft.submitted) == WINDOW
    assert [_ids(payload) for payload, _ in raft.submitted] == [[b"p%d" % n] for n in range(WINDOW)]
    for entry in range(WINDOW):  # applied in log order
        _resolve(raft, entry)
        _wait(lambda entry=entry: b"p%d" % entry in callers.outcomes)
    # The first resolution opened the window: everything queued went out as one entry.
    assert len(raft.submitted) == WINDOW + 1
    assert _ids(raft.submitted[WINDOW][0]) == [b"p%d" % n for n in range(WINDOW, WINDOW + 3)]
    _resolve(raft, WINDOW)
    callers.join()
    for pid, outcome in callers.outcomes.items():
        assert isinstance(outcome, Outcome) and outcome.results == [pid], (pid, outcome)
    assert not proposer._inflight
    proposer.close()


def test_a_leader_change_resubmits_each_entry_in_flight_once_as_the_same_bytes() -> None:
    raft = FakeRaft()
    proposer = raft.proposer()
    _wait(lambda: proposer._usable)
    callers = _Callers(proposer)
    for n in range(3):
        callers.start(b"q%d" % n)
        _wait(lambda n=n: len(raft.submitted) == n + 1)
    originals = list(raft.submitted)
    proposer.leader_changed()
    _wait(lambda: len(raft.submitted) == 6)
    time.sleep(0.3)  # several watchdog passes: nothing is resubmitted twice
    assert len(raft.submitted) == 6
    copies = raft.submitted[3:]
    assert [payload for payload, _ in copies] == [payload for payload, _ in originals]  # same ids, same order
    # The old leader's copies are discarded; the new leader applies the copies.
    for _, callback in originals:
        callback(None, 3)
    for entry in range(3, 6):
        _resolve(raft, entry)
    callers.join()
    assert sorted(callers.outcomes) == [b"q0", b"q1", b"q2"]
    assert all(isinstance(o, Outcome) and o.ok for o in callers.outcomes.values())
    # A copy applied late (the state machine answers it from its record of the id) changes nothing.
    _resolve(raft, 0)
    assert not proposer._inflight
    proposer.close()


class HeldBuilders(FakeRaft):
    """A Raft whose tick thread has not come round yet: builders wait until ``tick``."""

    def __init__(self) -> None:
        super().__init__()
        self.builders: list[tuple[Callable[[], bytes | None], Callable[[Any, int], None]]] = []

    def submit(self, payload: Any, callback: Callable[[Any, int], None]) -> None:
        if callable(payload):
            self.builders.append((payload, callback))
        else:
            super().submit(payload, callback)

    def tick(self) -> None:
        while self.builders:
            build, callback = self.builders.pop(0)
            payload = build()
            if payload is not None:
                self.submitted.append((payload, callback))


def test_proposals_that_arrive_while_the_tick_thread_is_away_join_one_entry() -> None:
    raft = HeldBuilders()
    proposer = raft.proposer()
    _wait(lambda: proposer._usable)
    callers = _Callers(proposer)
    for n in range(5):
        callers.start(b"r%d" % n)
    _wait(lambda: len(proposer._queue) == 5)
    assert len(raft.builders) == 1  # one builder outstanding, however many wait
    assert not any(p.submitted for p in proposer._queue)  # not handed over until built
    raft.tick()
    assert len(raft.submitted) == 1 and sorted(_ids(raft.submitted[0][0])) == [b"r%d" % n for n in range(5)]
    _resolve(raft, 0)
    callers.join()
    assert all(isinstance(o, Outcome) and o.ok for o in callers.outcomes.values())
    proposer.close()


def test_what_the_tick_thread_never_built_is_refused_for_certain() -> None:
    raft = HeldBuilders()
    proposer = raft.proposer()
    _wait(lambda: proposer._usable)
    callers = _Callers(proposer)
    callers.start(b"s0")
    _wait(lambda: len(raft.builders) == 1)
    raft.leader = False  # the leader is lost before the tick thread took the entry
    callers.join()
    assert isinstance(callers.outcomes[b"s0"], NoQuorum)
    raft.leader = True
    raft.tick()  # the builder finds nothing left to send
    assert raft.submitted == []
    assert not proposer._inflight
    proposer.close()
