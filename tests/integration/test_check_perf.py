"""``raftstore check perf`` against a live 3-manager cluster: PASS when healthy, FAIL naming a paused follower."""

from __future__ import annotations

import json
import signal

import pytest

from raftstore.tools._check_perf import PERF_PREFIX, histogram_quantile
from raftstore.tools._local_cluster import Cluster, Node

pytestmark = pytest.mark.integration


def _three_managers(cluster: Cluster) -> tuple[Node, list[Node]]:
    members = [cluster.add(f"m{i}") for i in (1, 2, 3)]
    cluster.init(members[0])
    for member in members[1:]:
        cluster.join(member, members[0], "manager")
    leader = cluster.leader()
    return leader, [m for m in members if m is not leader]


def test_check_perf_passes_on_a_healthy_cluster_and_fails_naming_a_paused_follower(cluster: Cluster) -> None:
    leader, followers = _three_managers(cluster)
    leader.run("kv", "put", "user/key", "kept")
    ok = leader.run("check", "perf", "--duration", "3", "--clients", "8", check=False, timeout=120)
    assert ok.returncode == 0 and ok.stdout.strip().endswith("PASS"), ok.stdout + ok.stderr
    assert "check perf: " in ok.stderr and "entries committed" in ok.stderr  # the progress line
    assert "p99 commit" in ok.stdout and "p99 fsync" in ok.stdout
    assert leader.run("kv", "ls", "-q").stdout.split() == ["user/key"]  # the load cleaned up after itself

    paused = followers[0]
    paused_id = paused.info()["node_id"]
    paused.kill(signal.SIGSTOP)
    try:
        failed = leader.run("check", "perf", "--duration", "3", "--clients", "8", "--format", "json",
                            check=False, timeout=120)
    finally:
        paused.kill(signal.SIGCONT)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    report = json.loads(failed.stdout)
    assert not report["passed"] and report["writes"] > 0
    assert any(paused_id in reason and "behind" in reason for reason in report["reasons"]), report
    assert paused_id in report["lagging"]
    assert not leader.run("kv", "ls", PERF_PREFIX, "-q").stdout.strip()


def test_check_perf_thresholds_are_flags_and_a_follower_says_what_it_cannot_check(cluster: Cluster) -> None:
    leader, followers = _three_managers(cluster)
    strict = followers[0].run("check", "perf", "--duration", "1", "--clients", "2", "--min-throughput", "1000000",
                              "--max-fsync-p99", "0", check=False, timeout=120)
    assert strict.returncode == 1
    verdict = strict.stdout.strip().splitlines()[-1]
    assert verdict.startswith("FAIL: throughput ") and "is below 1e+06" in verdict and "slow fsync" in verdict
    assert "note: follower lag not checked" in strict.stdout


def test_histogram_quantile_interpolates_within_a_bucket() -> None:
    before = {"buckets": [[0.001, 0], [0.002, 0], [float("inf"), 0]]}
    after = {"buckets": [[0.001, 50], [0.002, 100], [float("inf"), 100]]}
    assert histogram_quantile(0.5, before, after) == pytest.approx(0.001)
    assert histogram_quantile(0.99, before, after) == pytest.approx(0.00198)
    assert histogram_quantile(0.99, before, before) is None
    beyond = {"buckets": [[0.001, 0], [0.002, 0], [float("inf"), 10]]}
    assert histogram_quantile(0.99, before, beyond) == pytest.approx(0.002)
