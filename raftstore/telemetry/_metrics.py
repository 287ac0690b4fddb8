"""Prometheus metric series: what this process counts as it works (proposals, fsyncs, seals, snapshots, leaders).

Events are counted where they happen, in process-wide series, as etcd does:
the proposer and the Raft adapter import a series and observe it. Nothing here
serves them or reads the daemon's state: the HTTP server that exposes
``EVENTS`` beside the daemon's state at scrape time is ``api/_http.py``, one
layer up, so that the proposer and the adapter depend on the series alone.

Labels carry only words from a fixed set (an error code). No key, token,
secret, record name or value ever becomes a label or a sample.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

__all__ = [
    "EVENTS",
    "FSYNC_SECONDS",
    "LEADER_CHANGES",
    "PROPOSALS_COMMITTED",
    "PROPOSALS_FAILED",
    "PROPOSAL_SECONDS",
    "SEAL_SECONDS",
    "SNAPSHOT_BYTES",
    "SNAPSHOT_SECONDS",
    "TICK_LONGEST",
    "TICK_SECONDS",
    "counter_value",
    "histogram_snapshot",
    "observe_tick",
    "timed",
]

# A "_created" timestamp beside every counter doubles the series and says nothing an operator needs.
disable_created_metrics()

#: Every event series of this process. Each daemon serves it beside its own state.
EVENTS = CollectorRegistry()

# A write is 1-3 ms on a quiet disk; a stalled disk or an election takes seconds.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048,
                    4.096, 8.192)
# Sealing a record costs microseconds; a megabyte transaction costs about a millisecond.
_SEAL_BUCKETS = (0.000005, 0.00001, 0.00002, 0.00004, 0.00008, 0.00016, 0.00032, 0.00064, 0.00128, 0.00256, 0.00512)

PROPOSALS_COMMITTED = Counter(
    "raftstore_proposals_committed", "Proposals committed through Raft and applied without error.", registry=EVENTS)
PROPOSALS_FAILED = Counter(
    "raftstore_proposals_failed",
    "Proposals that failed, by reason: an error code such as UpdateOutOfSequence, NoQuorum or Timeout.",
    ["reason"], registry=EVENTS)
PROPOSAL_SECONDS = Histogram(
    "raftstore_proposal_commit_duration_seconds",
    "From a proposal's arrival at the proposer to its outcome (queueing, sealing, replication, fsync, apply).",
    buckets=_LATENCY_BUCKETS, registry=EVENTS)
FSYNC_SECONDS = Histogram(
    "raftstore_disk_fsync_duration_seconds", "One group-commit fsync of the Raft log (and its directory when needed).",
    buckets=_LATENCY_BUCKETS, registry=EVENTS)
SEAL_SECONDS = Histogram(
    "raftstore_seal_duration_seconds", "Sealing one Raft entry under the active data-encryption key.",
    buckets=_SEAL_BUCKETS, registry=EVENTS)
SNAPSHOT_SECONDS = Histogram(
    "raftstore_snapshot_save_duration_seconds", "Writing one sealed snapshot of the store (Raft log compaction).",
    buckets=_LATENCY_BUCKETS, registry=EVENTS)
SNAPSHOT_BYTES = Gauge(
    "raftstore_snapshot_size_bytes", "Size of the last sealed snapshot this process wrote.", registry=EVENTS)
LEADER_CHANGES = Counter(
    "raftstore_raft_leader_changes", "Times this manager saw the leader change (including to no leader).",
    registry=EVENTS)

# An idle turn of the tick thread waits up to the tick period (50 ms) for network events; a turn that holds the
# thread for longer than an election timeout (seconds) costs the leadership. 0.15 s: a 100 ms stall past the wait.
_TICK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TICK_SECONDS = Histogram(
    "raftstore_raft_tick_duration_seconds",
    "One turn of the Raft tick thread: its work plus up to the tick period spent waiting for network events.",
    buckets=_TICK_BUCKETS, registry=EVENTS)
TICK_LONGEST = Gauge(
    "raftstore_raft_tick_longest_seconds",
    "The longest single turn of the Raft tick thread since this process started (work plus up to the tick period "
    "of waiting): while a turn runs, this manager sends no heartbeat and answers no vote.", registry=EVENTS)
_longest_tick = 0.0


@contextmanager
def timed(histogram: Histogram) -> Iterator[None]:
    """Observe how long the block took, in seconds, whether or not it raised."""
    started = time.perf_counter()
    try:
        yield
    finally:
        histogram.observe(time.perf_counter() - started)


def observe_tick(seconds: float) -> None:
    """Count one turn of the Raft tick thread that took ``seconds``, and keep the longest."""
    global _longest_tick
    TICK_SECONDS.observe(seconds)
    if seconds > _longest_tick:
        _longest_tick = seconds
        TICK_LONGEST.set(seconds)


def histogram_snapshot(histogram: Histogram) -> dict[str, Any]:
    """Cumulative bucket counts (upper bound → count), the sum and the count of one unlabelled histogram."""
    buckets: list[list[float]] = []
    total = count = 0.0
    for metric in histogram.collect():
        for sample in metric.samples:
            if sample.name.endswith("_bucket"):
                bound = sample.labels["le"]
                buckets.append([math.inf if bound == "+Inf" else float(bound), sample.value])
            elif sample.name.endswith("_sum"):
                total = sample.value
            elif sample.name.endswith("_count"):
                count = sample.value
    return {"buckets": buckets, "sum": total, "count": count}


def counter_value(counter: Counter) -> float:
    """The value of one unlabelled counter."""
    return float(sum(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total")))
