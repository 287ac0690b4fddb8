"""The scale benchmark's pure parts: metrics parsing, phase figures, targets, the RESULTS.md section, sizes.

The fill itself needs a cluster and minutes (``make bench-scale``); what it
computes from what it measured is checked here in milliseconds.
"""

from __future__ import annotations

import math
import time

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from benchmarks.scale import parse_sizes
from benchmarks.scale_report import (SECTION_BEGIN, SECTION_END, extract_section, histogram, histogram_delta,
                                     longest_tick, max_bound, parse_prometheus, phase_figures, render_section,
                                     replace_section, scalar, targets)

NAMES = {"leader_changes": "raftstore_raft_leader_changes_total", "term": "raftstore_raft_term",
         "snapshot": "raftstore_snapshot_save_duration_seconds", "tick": "raftstore_raft_tick_duration_seconds",
         "tick_longest": "raftstore_raft_tick_longest_seconds"}


def _exposition(changes: int, term: int, snapshots: list[float], ticks: list[float]) -> str:
    """What a manager serves on /metrics, written by prometheus_client itself."""
    registry = CollectorRegistry()
    Counter("raftstore_raft_leader_changes", "", registry=registry).inc(changes)
    Gauge("raftstore_raft_term", "", registry=registry).set(term)
    snapshot = Histogram("raftstore_snapshot_save_duration_seconds", "", registry=registry,
                         buckets=(0.128, 0.256, 0.512, 1.024, 2.048))
    for seconds in snapshots:
        snapshot.observe(seconds)
    tick = Histogram("raftstore_raft_tick_duration_seconds", "", registry=registry,
                     buckets=(0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5))
    for seconds in ticks:
        tick.observe(seconds)
    Gauge("raftstore_raft_tick_longest_seconds", "", registry=registry).set(max(ticks, default=0.0))
    failed = Counter("raftstore_proposals_failed", "", ["reason"], registry=registry)
    failed.labels("NoQuorum").inc(2)
    failed.labels("Timeout").inc(3)
    return generate_latest(registry).decode()


def test_parse_prometheus_reads_counters_gauges_histograms_and_labels() -> None:
    samples = parse_prometheus(_exposition(2, 5, [0.3], [0.01, 0.2]))
    assert scalar(samples, "raftstore_raft_leader_changes_total") == 2
    assert scalar(samples, "raftstore_raft_term") == 5
    assert scalar(samples, "raftstore_proposals_failed_total") == 5  # summed over reasons
    assert scalar(samples, "absent") is None
    ticks = histogram(samples, "raftstore_raft_tick_duration_seconds")
    assert ticks is not None and ticks["count"] == 2 and ticks["sum"] == pytest.approx(0.21)
    assert ticks["buckets"][0] == (0.05, 1.0) and ticks["buckets"][-1] == (math.inf, 2.0)
    assert histogram(samples, "absent") is None


def test_histogram_delta_and_its_largest_bound() -> None:
    before = {"count": 2.0, "sum": 0.5, "buckets": [(0.1, 1.0), (1.0, 2.0), (math.inf, 2.0)]}
    after = {"count": 5.0, "sum": 3.0, "buckets": [(0.1, 3.0), (1.0, 4.0), (math.inf, 5.0)]}
    delta = histogram_delta(before, after)
    assert delta == {"count": 3.0, "sum": 2.5, "buckets": [(0.1, 2.0), (1.0, 2.0), (math.inf, 3.0)]}
    assert max_bound(delta) == math.inf
    assert max_bound(histogram_delta(before, {**after, "buckets": [(0.1, 3.0), (1.0, 5.0), (math.inf, 5.0)]})) == 1.0
    assert max_bound({"count": 0.0, "sum": 0.0, "buckets": []}) is None
    assert histogram_delta(None, after) == after and histogram_delta(before, None) is None


def test_longest_tick_is_exact_when_the_running_maximum_grew() -> None:
    delta = {"count": 10.0, "sum": 0.5, "buckets": [(0.05, 9.0), (0.1, 10.0), (math.inf, 10.0)]}
    assert longest_tick(0.08, 0.3, delta) == (0.3, True)
    assert longest_tick(None, 0.3, delta) == (0.3, True)
    # It did not grow: at most the old maximum, and at most the bound that holds every tick of the phase.
    assert longest_tick(2.0, 2.0, delta) == (0.1, False)
    assert longest_tick(0.07, 0.07, delta) == (0.07, False)
    assert longest_tick(0.07, None, delta) == (None, False)


def test_phase_figures_take_the_most_any_manager_counted() -> None:
    before = {"m1": parse_prometheus(_exposition(1, 2, [], [0.01])),
              "m2": parse_prometheus(_exposition(2, 2, [0.2], [0.02])),
              "m3": parse_prometheus(_exposition(1, 2, [], [0.01]))}
    after = {"m1": parse_prometheus(_exposition(1, 2, [0.3], [0.01, 0.04])),
             "m2": parse_prometheus(_exposition(5, 4, [0.2, 1.5], [0.02, 0.9, 0.12])),
             "m3": None}
    figures = phase_figures(before, after, NAMES)
    assert figures["leader_changes"] == 3 and figures["term_increase"] == 2
    assert figures["snapshots"] == {"count": 2.0, "sum_s": pytest.approx(1.8), "max_s": 2.048,
                                    "members": {"m1": 1.0, "m2": 1.0}}
    assert figures["tick"] == {"longest_s": 0.9, "exact": True, "over_100ms": 2.0,
                               "members": {"m1": 0.04, "m2": 0.9}}
    assert figures["unscraped"] == ["m3"]
    quiet = phase_figures(before, before, {k: v for k, v in NAMES.items() if not k.startswith("tick")})
    assert quiet["leader_changes"] == 0 and quiet["term_increase"] == 0 and quiet["tick"] is None
    assert quiet["snapshots"] == {"count": 0.0, "sum_s": 0.0, "max_s": None, "members": {"m1": 0.0, "m2": 0.0, "m3": 0.0}}


def _row(**changes: object) -> dict:
    row = {"size_gb": 2.0, "live_bytes": 2 * 10**9, "writes": 195_313,
           "fill": {"writes": 195_313, "errors": 0, "seconds": 200.0, "writes_per_s": 976.0, "mb_per_s": 10.0,
                    "aborted": None, "error_samples": []},
           "leader_changes": 0, "term_increase": 0,
           "rss": {"members": ["m1", "m2", "m3"], "end_mb": [2500.0] * 3, "peak_mb": [2900.0, 2800.0, 2700.0],
                   "ratio": 1.45},
           "snapshots": {"count": 3.0, "sum_s": 6.0, "max_s": 4.096},
           "tick": {"longest_s": 0.08, "exact": True, "over_100ms": 0.0},
           "restart": {"seconds": 12.0}, "join": {"seconds": 45.0}}
    row.update(changes)
    return row


def test_targets_reached_and_missed_with_their_figures() -> None:
    reached = targets(_row())
    assert [r for _, r, _ in reached] == [True] * 6
    assert "(20 s)" in reached[4][0] and "(60 s)" in reached[5][0]
    missed = targets(_row(leader_changes=6, term_increase=3,
                          fill={**_row()["fill"], "errors": 16, "aborted": "no write committed for 120 s"},
                          tick={"longest_s": 2.4, "exact": False, "over_100ms": 7.0},
                          rss={**_row()["rss"], "ratio": 2.3}, restart={"seconds": 25.0},
                          join={"seconds": None, "error": "TimeoutError: a local read"}))
    assert [r for _, r, _ in missed] == [False, False, False, False, False, None]
    figures = [f for _, _, f in missed]
    assert figures[0] == "6 leader changes, term +3"
    assert "16 failed writes" in figures[1] and "no write committed" in figures[1]
    assert figures[2].startswith("longest tick at most 2400 ms")
    assert figures[3].startswith("2.30x")
    assert figures[5] == "TimeoutError: a local read"
    unmeasured = targets(_row(leader_changes=None, tick=None, rss={}, restart=None, join=None))
    assert [r for _, r, _ in unmeasured] == [None, True, None, None, None, None]


def _report() -> dict:
    return {"date": "2026-01-01 00:00 UTC", "command": "python -m benchmarks.scale --sizes 2",
            "elapsed_seconds": 1.0, "notes": [],
            "machine": {"cpus": 2, "cpu": "x", "memory": "24 GiB", "kernel": "6", "python": "3.11", "etcd": None},
            "settings": {"clients": 16, "value_bytes": 10240, "sizes": [2.0]},
            "systems": {"raftstore": {"sizes": [_row()]},
                        "etcd": {"sizes": [], "skipped": "etcd is not on PATH"}}}


def test_section_goes_between_markers_and_keeps_the_rest() -> None:
    report = _report()
    report["systems"]["raftstore"]["sizes"][0]["tick"]["members"] = {"m1": 8.3, "m2": 0.07, "m3": 7.9}
    section = render_section(report, "scale.png")
    assert "| 0 leader changes during the fill | yes |" in section and "etcd is not on PATH" in section
    assert "ticks of over a second on 2 managers (m1 8.3 s, m3 7.9 s)" in section
    assert "![each figure against store size](scale.png)" in section
    appended = replace_section("# Benchmark results\n\nmake bench's text\n", section)
    assert appended.startswith("# Benchmark results\n\nmake bench's text\n\n" + SECTION_BEGIN)
    assert appended.rstrip().endswith(SECTION_END)
    kept = extract_section(appended)
    assert kept is not None and section.strip() in kept
    rewritten = replace_section(appended.replace("make bench's text", "a new make bench"), "## Scale\n\nnewer\n")
    assert "a new make bench" in rewritten and "newer" in rewritten and "| 0 leader changes" not in rewritten
    assert rewritten.count(SECTION_BEGIN) == 1 and extract_section("no markers") is None


def test_parse_sizes() -> None:
    assert parse_sizes("2,0.5, 1") == [0.5, 1.0, 2.0]
    assert parse_sizes("") == []
    for bad in ("a", "0", "-1", "100"):
        with pytest.raises(ValueError):
            parse_sizes(bad)


def test_tick_metrics_keep_the_longest_turn_and_are_served() -> None:
    from raftstore.telemetry import EVENTS, TICK_LONGEST, observe_tick
    from raftstore.telemetry import _metrics

    longest = _metrics._longest_tick
    observe_tick(longest + 5.0)
    observe_tick(0.001)
    samples = parse_prometheus(generate_latest(EVENTS).decode())
    assert scalar(samples, "raftstore_raft_tick_longest_seconds") == pytest.approx(longest + 5.0)
    assert TICK_LONGEST._value.get() == pytest.approx(longest + 5.0)
    assert (histogram(samples, "raftstore_raft_tick_duration_seconds") or {})["count"] >= 2


def test_load_progress_counts_writes_and_stops_the_clients() -> None:
    from raftstore.tools import LoadProgress, run_load

    class Slow:
        def put(self, key: bytes, value: bytes) -> None:
            time.sleep(0.002)

        def close(self) -> None:
            pass

    progress = LoadProgress()
    result = run_load(Slow, clients=2, payload=10, seconds=5, max_ops_per_client=20, progress=progress, processes=1)
    assert result.ops == 40 == progress.writes and progress.errors == 0 and result.error_samples == []
    stopped = LoadProgress()
    stopped.stop()
    began = time.monotonic()
    assert run_load(Slow, clients=2, payload=10, seconds=5, progress=stopped, processes=1).ops == 0
    assert time.monotonic() - began < 3
