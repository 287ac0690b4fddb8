"""``raftstore check perf``: a bounded write load against the live cluster, judged as PASS or FAIL.

Like ``etcdctl check perf``: the command writes for a set time under a
reserved key prefix, then reads what the daemon measured while it ran (the
commit and fsync histograms, leader changes, how far each other manager is
behind; the ``perf.stats`` method of ``_perf_methods``) and compares them
with thresholds. Percentiles come from histogram deltas, interpolated within
a bucket as Prometheus' ``histogram_quantile`` does.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, TextIO

__all__ = ["PERF_PREFIX", "Thresholds", "PerfReport", "histogram_quantile", "judge", "run_check"]

#: Every key the load writes starts with this; ``perf.cleanup`` deletes only these.
PERF_PREFIX = "__raftstore_check_perf/"
#: Keys each client cycles through: the cleanup stays one small transaction.
KEYS_PER_CLIENT = 16


@dataclass
class Thresholds:
    """What PASS means. The defaults hold on a loaded 2-core machine with three local managers."""

    min_throughput: float = 50.0  # committed writes per second
    max_commit_p99: float = 0.5  # seconds, from the daemon's commit histogram
    max_fsync_p99: float = 0.25  # seconds, from the daemon's fsync histogram
    max_leader_changes: int = 0
    max_lag: float = 3.0  # seconds for every manager to hold the last write after the load


@dataclass
class PerfReport:
    passed: bool
    reasons: list[str]
    target: str
    duration: float
    clients: int
    size: int
    writes: int
    errors: int
    throughput: float
    client_p99_ms: float
    commit_p99_ms: float | None
    fsync_p99_ms: float | None
    fsyncs: int
    leader_changes: int
    lagging: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def histogram_quantile(q: float, before: dict[str, Any], after: dict[str, Any]) -> float | None:
    """The q-quantile (seconds) of what was observed between two snapshots; None when nothing was."""
    counts = [(bound, a - b) for (bound, a), (_, b) in zip(after["buckets"], before["buckets"])]
    total = counts[-1][1] if counts else 0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, cumulative in counts:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower  # beyond the last bucket: its lower edge is all a histogram can say
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cumulative
    return lower


def judge(before: dict[str, Any], after: dict[str, Any], load: Any, lagging: dict[str, int],
          limits: Thresholds) -> tuple[list[str], dict[str, Any]]:
    """The reasons to FAIL (empty: PASS) and the figures they were read from."""
    commit_p99 = histogram_quantile(0.99, before["commit_seconds"], after["commit_seconds"])
    fsync_p99 = histogram_quantile(0.99, before["fsync_seconds"], after["fsync_seconds"])
    changes = int(after["leader_changes"] - before["leader_changes"]) + (
        1 if after["term"] != before["term"] and after["leader_changes"] == before["leader_changes"] else 0)
    reasons = []
    if load.errors:
        reasons.append(f"{load.errors} writes failed")
    if load.throughput < limits.min_throughput:
        reasons.append(f"throughput {load.throughput:.0f} writes/s is below {limits.min_throughput:g}")
    if commit_p99 is not None and commit_p99 > limits.max_commit_p99:
        reasons.append(f"p99 commit latency {commit_p99 * 1000:.0f} ms is above {limits.max_commit_p99 * 1000:g} ms")
    if fsync_p99 is not None and fsync_p99 > limits.max_fsync_p99:
        reasons.append(f"slow fsync: p99 {fsync_p99 * 1000:.0f} ms is above {limits.max_fsync_p99 * 1000:g} ms")
    if changes > limits.max_leader_changes:
        reasons.append(f"{changes} leader change(s) during the run")
    for node_id, behind in sorted(lagging.items()):
        reasons.append(f"manager {node_id} is {behind} entries behind the leader {limits.max_lag:g}s after the "
                       "load (stopped, or a slow disk or network)")
    figures = {
        "commit_p99_ms": None if commit_p99 is None else round(commit_p99 * 1000, 2),
        "fsync_p99_ms": None if fsync_p99 is None else round(fsync_p99 * 1000, 2),
        "fsyncs": int(after["fsync_seconds"]["count"] - before["fsync_seconds"]["count"]),
        "leader_changes": changes,
    }
    return reasons, figures


def _lagging(stats: Callable[[], dict[str, Any]], target_index: int, wait: float) -> tuple[dict[str, int], bool]:
    """Managers whose log does not reach ``target_index`` within ``wait`` seconds (seen from the leader).

    Returns them and whether the check could be made at all (only the leader knows).
    """
    deadline = time.monotonic() + wait
    while True:
        now = stats()
        if not now["is_leader"]:
            return {}, False
        behind = {node_id: target_index - int(now["match_index"].get(node_id, 0))
                  for node_id in now["members"] if node_id != now["node_id"]}
        behind = {node_id: n for node_id, n in behind.items() if n > 0}
        if not behind or time.monotonic() >= deadline:
            return behind, True
        time.sleep(0.1)


class _Progress:
    """One progress line on stderr while the load runs: elapsed time and entries committed so far."""

    def __init__(self, stats: Callable[[], dict[str, Any]], seconds: float, start_index: int, out: TextIO) -> None:
        self._stats, self._seconds, self._start_index, self._out = stats, seconds, start_index, out
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="check-perf-progress", daemon=True)
        self._tty = out.isatty()

    def __enter__(self) -> "_Progress":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)
        if self._tty:
            self._out.write("\n")
            self._out.flush()

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(1.0):
            elapsed = time.monotonic() - started
            try:
                committed = int(self._stats()["commit_index"]) - self._start_index
            except Exception:  # a progress line is best effort: the verdict comes from the run itself
                continue
            line = (f"check perf: {min(elapsed, self._seconds):.0f}/{self._seconds:g}s, "
                    f"{committed} Raft entries committed ({committed / max(elapsed, 1e-6):.0f}/s)")
            self._out.write(f"\r{line}" if self._tty else f"{line}\n")
            self._out.flush()


class _Writer:
    """One load client: its own connection, plain ``kv.put`` calls."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._client = connect()

    def put(self, key: bytes, value: bytes) -> None:
        self._client.call("kv.put", {"key": key.decode(), "value": value})

    def close(self) -> None:
        self._client.close()


def run_check(connect: Callable[[], Any], *, target: str, seconds: float, clients: int, size: int,
              limits: Thresholds, progress: TextIO = sys.stderr) -> PerfReport:
    """Measure, judge, clean up. ``connect`` opens a new ``ControlClient`` to the daemon under test.

    The load's clients run in forked processes (``_loadgen``), each with its own connection.
    """
    from ._loadgen import run_load

    def stats() -> dict[str, Any]:
        with connect() as client:
            return client.call("perf.stats")  # type: ignore[no-any-return]

    def cleanup() -> None:
        with connect() as client:
            client.call("perf.cleanup")

    def writer() -> _Writer:
        return _Writer(connect)

    before = stats()
    with _Progress(stats, seconds, int(before["commit_index"]), progress):
        load = run_load(writer, clients=clients, payload=size, seconds=seconds, key_prefix=PERF_PREFIX,
                        keys_per_client=KEYS_PER_CLIENT)
    after = stats()
    lagging, checked = _lagging(stats, int(after["commit_index"]), limits.max_lag)
    final = stats()
    reasons, figures = judge(before, final, load, lagging, limits)
    notes = [] if checked else [f"follower lag not checked: {target} is not the leader "
                                f"({before['leader']}); point -H at the leader to check it"]
    try:
        cleanup()
    except Exception as error:  # the verdict stands; the keys are under the reserved prefix
        notes.append(f"the load's keys under {PERF_PREFIX} were not removed: {error}")
    return PerfReport(
        passed=not reasons, reasons=reasons, target=target, duration=load.seconds, clients=clients, size=size,
        writes=load.ops, errors=load.errors, throughput=round(load.throughput, 1),
        client_p99_ms=round(load.p99_ms, 2), lagging=lagging, notes=notes,
        thresholds=asdict(limits), **figures)
