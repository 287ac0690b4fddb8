"""What a slow Raft tick spent its time on, said in the log (as etcd warns of a slow fdatasync or apply).

A tick over ``SLOW_TICK_SECONDS`` leaves heartbeats unsent and votes unanswered;
past an election timeout it costs the cluster its leader. The operator's
first question is where the time went: the tick thread's fsyncs of the Raft
log, the entries it applied, or the rest (pysyncobj's own work, snapshot
chunks, the interpreter lock held by another thread). One line at most every
``REPORT_EVERY_SECONDS`` keeps a struggling disk from flooding the log.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from ..telemetry import observe_tick

__all__ = ["TickWatch", "SLOW_TICK_SECONDS"]

SLOW_TICK_SECONDS = 0.1
REPORT_EVERY_SECONDS = 10.0


class TickWatch:
    """Times each tick and the parts of it that are ours; reports slow ones through ``log``."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self._log = log
        self._phases: dict[str, float] = {}
        self._slow = 0
        self._worst: tuple[float, dict[str, float]] = (0.0, {})
        self._reported_at = time.monotonic() - REPORT_EVERY_SECONDS

    def timed(self, phase: str, call: Callable[..., Any]) -> Callable[..., Any]:
        """``call``, its time counted toward ``phase`` of the current tick."""

        def timed_call(*args: Any) -> Any:
            started = time.perf_counter()
            try:
                return call(*args)
            finally:
                self._phases[phase] = self._phases.get(phase, 0.0) + time.perf_counter() - started

        return timed_call

    def tick(self, run: Callable[[], None]) -> None:
        """Run one tick, record it, and report it if slow."""
        self._phases = {}
        started = time.perf_counter()
        try:
            run()
        finally:
            took = time.perf_counter() - started
            observe_tick(took)  # the longest turn is the longest Raft went unserved
            if took > SLOW_TICK_SECONDS:
                self._slow_tick(took)

    def _slow_tick(self, took: float) -> None:
        self._slow += 1
        if took > self._worst[0]:
            self._worst = (took, self._phases)
        now = time.monotonic()
        if now - self._reported_at < REPORT_EVERY_SECONDS:
            return
        worst, phases = self._worst
        parts = [f"{phase} {seconds * 1000:.0f} ms" for phase, seconds in sorted(phases.items())]
        parts.append(f"the rest {(worst - sum(phases.values())) * 1000:.0f} ms")
        self._log(
            f"slow raft tick: {self._slow} tick(s) over {SLOW_TICK_SECONDS * 1000:.0f} ms since the last report; "
            f"the slowest took {worst * 1000:.0f} ms: {', '.join(parts)} "
            "(the rest: pysyncobj, messages, waiting for the interpreter lock, up to one tick period idle)"
        )
        self._reported_at = now
        self._slow = 0
        self._worst = (0.0, {})
