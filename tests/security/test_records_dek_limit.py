"""Finding 9: records sealed under each DEK term are counted cluster-wide, and the DEK is rotated
before the limit, whichever manager leads and across restarts.

The production threshold is 2**30 entries; these daemons run with a lower one
through the test-only environment seam, which can lower it and never raise it.
"""

from __future__ import annotations

import signal

import pytest

from raftstore.net._control import ControlClient
from raftstore.tools._local_cluster import Cluster, Node, wait_until
from raftstore.manager._deks import ROTATE_DEK_AFTER, ROTATE_DEK_AFTER_ENV, dek_rotation_threshold

pytestmark = pytest.mark.integration

LIMIT = 40


def put(node: Node, first: int, count: int) -> None:
    with ControlClient(node.host, timeout=15) as client:
        for i in range(first, first + count):
            client.call("kv.put", {"key": f"k{i:03d}", "value": b"v"})


def test_the_production_threshold_is_well_below_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ROTATE_DEK_AFTER <= 2**31 // 2
    monkeypatch.delenv(ROTATE_DEK_AFTER_ENV, raising=False)
    assert dek_rotation_threshold() == ROTATE_DEK_AFTER
    monkeypatch.setenv(ROTATE_DEK_AFTER_ENV, "7")
    assert dek_rotation_threshold() == 7
    monkeypatch.setenv(ROTATE_DEK_AFTER_ENV, str(2**40))  # the seam only ever lowers it
    assert dek_rotation_threshold() == ROTATE_DEK_AFTER
    monkeypatch.setenv(ROTATE_DEK_AFTER_ENV, "many")
    assert dek_rotation_threshold() == ROTATE_DEK_AFTER


def test_the_count_survives_leader_change_and_restart_and_the_dek_rotates_before_the_limit(cluster: Cluster) -> None:
    env = {ROTATE_DEK_AFTER_ENV: str(LIMIT)}
    m1, m2, m3 = (cluster.add(n, env=env) for n in ("m1", "m2", "m3"))
    cluster.init(m1)
    cluster.join(m2, m1, "manager")
    cluster.join(m3, m1, "manager")
    put(m1, 0, 10)
    commit = m1.info()["raft"]["commit_index"]
    for node in (m2, m3):
        wait_until(lambda n=node: n.info()["raft"]["applied_index"] >= commit, what=f"{node.name} applied")
    counts = {n.name: n.info()["dek_records"] for n in (m1, m2, m3)}
    assert len(set(counts.values())) == 1 and 10 <= counts["m1"] < LIMIT, counts  # the same on every manager
    assert m1.info()["dek_active"] == 1

    # A leader change: the new leader counts on from the same number.
    leader = cluster.leader()
    leader.kill(signal.SIGKILL)
    others = [n for n in (m1, m2, m3) if n is not leader]
    new_leader = cluster.leader(others)
    assert new_leader.info()["dek_records"] >= counts["m1"]
    before_restart = new_leader.info()["dek_records"]

    # A restart: the count is rebuilt from snapshot and log, not lost.
    follower = next(n for n in others if n is not new_leader)
    follower.stop()
    follower.start()
    wait_until(lambda: follower.info()["dek_records"] >= before_restart, what="the count after a restart")

    # Crossing the threshold: the leader rotates, well before the records reach twice the limit.
    put(new_leader, 100, LIMIT)
    wait_until(lambda: new_leader.info()["dek_active"] == 2, timeout=20, what="an automatic DEK rotation")
    assert new_leader.info()["dek_records"] < LIMIT
    assert "has sealed" in new_leader.log() and "rotating it" in new_leader.log()
    leader.start()
    wait_until(lambda: leader.info()["dek_active"] == 2, timeout=30, what="the old leader learns the new term")
    for node in (m1, m2, m3):
        wait_until(lambda n=node: n.info()["dek_terms"] == [2], timeout=60, what=f"{node.name} retired term 1")
