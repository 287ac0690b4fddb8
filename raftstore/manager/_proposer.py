"""Group commit above pysyncobj, pipelined: a few Raft entries in flight, each carrying every proposal that waited.

Up to ``max_inflight`` entries (``WINDOW``) are in flight at once. A proposal
that finds the window open goes out on the Raft tick thread's next turn, in
one entry with everything else queued by then (pysyncobj runs with
``appendEntriesUseBatch=False``: a lone write is not held back); once the
window is full, new proposals queue, and when an entry resolves everything
queued goes out as the next entry — one seal, one append and one fsync per
manager for the whole group. Under load the groups grow by themselves, while
the next entry is already replicating when one is being applied (pysyncobj's
leader sends each new entry without waiting for the previous one's
acknowledgements). Entries are applied in log order, so their outcomes arrive
in order; the window only bounds how much is handed over and not yet known
(at most ``WINDOW`` entries of ``max_batch_bytes``).

Retries are safe because every proposal carries a 128-bit id and the state
machine applies no id twice: an entry whose fate is unknown (the leader changed,
the message was lost) is resubmitted as the same bytes, and whichever copy
commits first decides the outcome; the other is a no-op that returns the same
outcome.

How an entry is handed over. The proposer hands Raft a builder, not bytes
(``RaftNode.append_entry``): the Raft tick thread runs it just before it takes
new commands, and only then are the queued proposals stamped, grouped, sealed
and marked handed over. Proposals that arrive while a builder waits join its
entry without another wake-up of the tick thread; an entry that resolves
hands over the next builder from the tick thread itself, at no wake-up at all.

Honest outcomes. A proposal is handed to pysyncobj only while there is a
leader to take it (we lead with a quorum connected, or we are connected to
the leader). What was never handed over can be refused for certain:
``NoQuorum`` once no leader has been usable for ``leader_wait`` (about one
election timeout); a manager that has not seen a leader since it started
gives the first election up to ``first_leader_wait``, so that a command sent
right after a restart is not refused while the managers are still voting. Once handed over, pysyncobj may still commit it at any
time (it keeps queued commands until a leader appears), so a failure to learn
its fate is always ``Timeout``, "may or may not have been applied"; the
client's retry with the same proposal id then gets the first outcome.

Nothing here reads the wall clock for the store: ``clock`` (from the daemon)
stamps each proposal with the time the state machine records.
"""

from __future__ import annotations

import _thread
import collections
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..keyring import InvalidArgument, NoQuorum, RaftstoreError, Timeout
from ..state import MAX_TRANSACTION_BYTES, Outcome, encode_actions, encode_entry, encode_proposal, read_action
from ..telemetry import PROPOSALS_COMMITTED, PROPOSALS_FAILED, PROPOSAL_SECONDS

__all__ = ["Proposer", "RETIRED", "WINDOW", "new_proposal_id"]

#: What the apply hook returns for an entry sealed under a retired DEK term.
RETIRED = "retired"

_SUCCESS = 0
#: How often a waiting caller checks whether its proposal can still be decided.
_POLL = 0.05
#: Raft entries in flight at once (see the module doc); measured in benchmarks/hot-path.md.
WINDOW = 4


def new_proposal_id() -> bytes:
    return os.urandom(16)


class _Signal:
    """A one-shot wake-up for one waiting caller: a bare lock, held until ``set``.

    ``threading.Event`` costs a ``Condition`` and a fresh lock per wait, and
    its ``set`` walks a waiter list under another lock: under 64 clients,
    waking callers was a quarter of the leader's interpreter time.
    """

    __slots__ = ("_lock", "_set")

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._lock.acquire()
        self._set = False

    def set(self) -> None:
        self._set = True
        try:
            self._lock.release()
        except RuntimeError:  # set before
            pass

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        if self._set:
            return True
        if self._lock.acquire(timeout=timeout):
            try:
                self._lock.release()  # leave it open: a later wait returns at once
            except RuntimeError:
                pass
            return True
        return self._set


@dataclass
class _Pending:
    proposal_id: bytes
    encoded_actions: bytes  # encoded once, when proposed: sized against the limit, then carried as is
    now: str = ""
    encoded: bytes = b""  # the whole proposal, once ``now`` is stamped (kept for a reseal)
    enqueued_at: float = 0.0
    done: _Signal = field(default_factory=lambda: _Signal())
    outcome: Outcome | None = None
    submitted: bool = False
    abandoned: bool = False  # the caller gave up waiting


@dataclass
class _Batch:
    proposals: list[_Pending]
    payload: bytes
    attempt: int = 1
    submitted_at: float = 0.0


class Proposer:
    """Queues proposals, seals them in groups and submits them to Raft."""

    def __init__(
        self,
        *,
        submit: Callable[[bytes | Callable[[], bytes | None], Callable[[Any, int], None]], None],
        seal_entry: Callable[[bytes], bytes],
        clock: Callable[[], str],
        has_leader: Callable[[], bool],
        max_inflight: int = WINDOW,
        max_batch_bytes: int = 2 * 2**20,
        resubmit_after: float = 1.0,
        actor: str = "",
        leader_wait: float = 1.5,
        first_leader_wait: float = 10.0,
    ) -> None:
        """``has_leader``: whether a proposal handed over now reaches a leader (see the module doc).

        ``leader_wait``: how long without such a leader before a proposal that
        was never handed over is refused; one that was is given up (``Timeout``)
        after twice that, since a new leader may still commit it.
        """
        self._submit = submit
        self._actor = actor  # this manager's node id, carried by each proposal for the events it causes
        self._seal_entry = seal_entry
        self._clock = clock
        self._has_leader = has_leader
        self._max_inflight = max_inflight
        self._max_batch_bytes = max_batch_bytes
        self._resubmit_after = resubmit_after
        self._leader_wait = leader_wait
        self._first_leader_wait = max(leader_wait, first_leader_wait)
        # Refreshed by the watchdog (and on a leader change), read by everyone
        # else: asking Raft on every proposal would cost more than the proposal.
        self._usable = False
        self._leader_seen_at = 0.0
        self._lock = threading.RLock()  # re-entered when a Raft stand-in runs a builder inside submit
        self._queue: collections.deque[_Pending] = collections.deque()
        self._inflight: dict[int, _Batch] = {}  # by number, in the order handed over
        self._building: int | None = None  # the entry whose builder Raft holds and has not run yet
        self._building_since = 0.0
        self._next_batch = 0
        self._closed = False
        self._watchdog = threading.Thread(target=self._watch, name="proposer-watchdog", daemon=True)
        self._watchdog.start()

    # ------------------------------------------------------------- public

    def commit(self, actions: list[Any], *, proposal_id: bytes | None = None, timeout: float = 10.0) -> Outcome:
        """Commit one transaction through Raft and return its outcome (blocking).

        ``Manager.propose`` is the caller's entry point (it raises on a failed
        outcome); this is the batching step below it, and ``RaftNode.append_entry``
        the step below that.
        """
        encoded = encode_actions(actions)
        if len(encoded) > MAX_TRANSACTION_BYTES:
            raise InvalidArgument(
                f"transaction of {len(encoded)} bytes exceeds the limit of {MAX_TRANSACTION_BYTES} bytes (1.5 MiB)"
            )
        pending = _Pending(proposal_id or new_proposal_id(), encoded)
        started = time.perf_counter()
        try:
            outcome = self._wait_for(pending, timeout)
        except RaftstoreError as error:
            PROPOSALS_FAILED.labels(error.code).inc()
            raise
        PROPOSAL_SECONDS.observe(time.perf_counter() - started)
        if outcome.ok:
            PROPOSALS_COMMITTED.inc()
        else:
            PROPOSALS_FAILED.labels(outcome.error_code).inc()
        return outcome

    def _wait_for(self, pending: _Pending, timeout: float) -> Outcome:
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._closed:
                raise NoQuorum("this manager is shutting down")
            pending.enqueued_at = time.monotonic()
            self._queue.append(pending)
            self._pump()
        while not pending.done.wait(min(_POLL, max(0.0, deadline - time.monotonic()))):
            with self._lock:
                if pending.outcome is not None:
                    break
                now = time.monotonic()
                leaderless = 0.0 if self._usable else now - max(self._leader_seen_at, pending.enqueued_at)
                if not pending.submitted:
                    if leaderless >= (self._leader_wait if self._leader_seen_at else self._first_leader_wait):
                        self._queue.remove(pending)
                        raise NoQuorum()
                    if now >= deadline:
                        self._queue.remove(pending)
                        raise NoQuorum(f"the request waited {timeout:.0f}s behind earlier ones and was not applied")
                elif now >= deadline or leaderless >= 2 * self._leader_wait:
                    pending.abandoned = True
                    if now >= deadline:
                        raise Timeout()
                    raise Timeout(
                        f"the leader was lost for {leaderless:.1f}s before this request's outcome was known; "
                        "it may or may not have been applied"
                    )
        assert pending.outcome is not None
        return pending.outcome

    def _refresh_leader(self) -> bool:
        """Ask whether a proposal handed over now reaches a leader; remember the answer and when it was yes."""
        usable = self._usable = self._has_leader()
        if usable:
            self._leader_seen_at = time.monotonic()
        return usable

    def barrier(self, timeout: float = 10.0) -> int:
        """An entry committed after this call began: reads after it are linearizable."""
        try:
            outcome = self.commit([read_action()], timeout=timeout)
        except Timeout:  # a read changes nothing: the write's "may or may not have been applied" would mislead
            raise Timeout("timed out waiting for the cluster to confirm this read; nothing was changed") from None
        if not outcome.ok:
            raise RaftstoreError(outcome.error_message)
        return int(outcome.results[0])

    def leader_changed(self) -> None:
        """A new leader: resubmit what is in flight now rather than after the resubmission delay."""
        self._refresh_leader()
        with self._lock:
            for batch in self._inflight.values():
                batch.submitted_at = 0.0

    def close(self) -> None:
        with self._lock:
            self._closed = True
            waiting = list(self._queue)
            self._queue.clear()
            for batch in self._inflight.values():
                waiting.extend(batch.proposals)
            self._inflight.clear()
        for pending in waiting:
            if not pending.done.is_set():
                if pending.submitted:  # Raft may still commit it elsewhere
                    error: RaftstoreError = Timeout(
                        "this manager stopped before the request's outcome was known; "
                        "it may or may not have been applied"
                    )
                else:
                    error = NoQuorum("this manager is shutting down; the request was not applied")
                pending.outcome = Outcome.failure(error)
                pending.done.set()

    # ------------------------------------------------------------- internals

    def _pump(self) -> None:
        """Hand Raft a builder for the next entry while proposals wait, the window has room and a leader can take it (lock held).

        The group is formed when the builder runs on the tick thread (``_build``):
        whatever queued until then joins it. One builder is outstanding at a time.
        """
        if (
            self._queue
            and self._building is None
            and len(self._inflight) < self._max_inflight
            and not self._closed
            and self._usable
        ):
            number = self._next_batch
            self._next_batch += 1
            self._inflight[number] = _Batch([], b"")
            self._building = number
            self._building_since = time.monotonic()
            self._submit(lambda: self._build(number), self._on_result(number, 1))

    def _build(self, number: int) -> bytes | None:
        """On the tick thread: take what queued as entry ``number``, seal it and return it (None: nothing to send)."""
        with self._lock:
            if self._building == number:
                self._building = None
            batch = self._inflight.get(number)
            if batch is None or self._closed:
                return None
            group = self._take_group()
            if not group:
                del self._inflight[number]
                return None
            try:
                batch.payload = self._seal_group(group)
            except Exception as error:  # nothing was handed over: the callers learn it at once
                del self._inflight[number]
                failure = error if isinstance(error, RaftstoreError) else RaftstoreError(f"sealing failed: {error}")
                for pending in group:
                    pending.outcome = Outcome.failure(failure)
                    pending.done.set()
                self._pump()
                return None
            batch.proposals = group
            batch.submitted_at = time.monotonic()
            for pending in group:
                pending.submitted = True
            self._pump()  # more than one entry's worth queued: the next builder runs in this same tick
            return batch.payload

    def _take_group(self) -> list[_Pending]:
        """Queued proposals, oldest first, up to ``max_batch_bytes`` (at least one) (lock held)."""
        group: list[_Pending] = []
        size = 0
        while self._queue and (not group or size + len(self._queue[0].encoded_actions) <= self._max_batch_bytes):
            pending = self._queue.popleft()
            size += len(pending.encoded_actions)
            group.append(pending)
        return group

    def _seal_group(self, group: list[_Pending]) -> bytes:
        """Stamp the group's proposals with one time and seal them as one entry (a fresh entry id each time)."""
        now = self._clock()
        for pending in group:
            pending.now = now
            pending.encoded = encode_proposal(pending.proposal_id, now, pending.encoded_actions, self._actor)
        return self._seal_entry(encode_entry([p.encoded for p in group]))

    def _send(self, group: list[_Pending]) -> None:
        """Reseal a group as a new entry and submit it at once (an entry sealed under a retired DEK term)."""
        batch = _Batch(group, self._seal_entry(encode_entry([p.encoded for p in group])))
        number = self._next_batch
        self._next_batch += 1
        self._inflight[number] = batch
        self._submit_batch(number, batch)

    def _submit_batch(self, number: int, batch: _Batch) -> None:
        batch.submitted_at = time.monotonic()
        self._submit(batch.payload, self._on_result(number, batch.attempt))

    def _on_result(self, number: int, attempt: int) -> Callable[[Any, int], None]:
        return lambda result, error: self._resolved(number, attempt, result, error)

    def _resolved(self, number: int, attempt: int, result: Any, error: int) -> None:
        with self._lock:
            batch = self._inflight.get(number)
            if batch is None:
                return  # an earlier copy already decided it
            if error != _SUCCESS:
                if attempt == batch.attempt:
                    batch.submitted_at = 0.0  # resubmit on the watchdog's next pass
                return
            del self._inflight[number]
            if result == RETIRED:
                # Sealed under a DEK term retired while it was in flight: the
                # state machine applied none of it, so reseal and go again.
                self._send(batch.proposals)
                return
            if not isinstance(result, list) or len(result) != len(batch.proposals):
                result = [Outcome.failure(RaftstoreError("the entry was applied without outcomes"))] * len(
                    batch.proposals
                )
            for pending, outcome in zip(batch.proposals, result):
                pending.outcome = outcome
            self._pump()
        for pending in batch.proposals:  # outside the lock: the woken callers do not queue on it
            pending.done.set()

    def _watch(self) -> None:
        """Resubmit entries whose fate went unreported; give up on abandoned ones."""
        while not self._closed:
            time.sleep(_POLL)
            usable = self._refresh_leader()
            now = time.monotonic()
            with self._lock:
                if self._building is not None and now - self._building_since >= self._resubmit_after:
                    # Raft never ran that builder (its tick thread was away that long): hand over
                    # another. Nothing of the old one was handed over; if it runs later, it finds
                    # its entry gone and sends nothing.
                    self._inflight.pop(self._building, None)
                    self._building = None
                for number, batch in list(self._inflight.items()):
                    if not batch.payload:
                        continue  # its builder has not run yet: nothing of it was handed over
                    if all(p.abandoned for p in batch.proposals):
                        # Every caller timed out: free the slot. If a copy still
                        # commits, its outcome is recorded and a retry with the
                        # same proposal id will receive it.
                        del self._inflight[number]
                        continue
                    if now - batch.submitted_at >= self._resubmit_after and usable:
                        batch.attempt += 1
                        self._submit_batch(number, batch)
                self._pump()
