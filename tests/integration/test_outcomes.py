"""Issue 12, honest outcomes: a client told "failed" can rely on it.

``NoQuorum`` ("The swarm does not have a leader") is only for a write that was
never handed to Raft, so it never appears later. A write that was handed over
and whose fate is unknown says that it "may or may not have been applied";
retried with the same request id it applies once. A manager without a usable
leader refuses new writes within about one election timeout, not after 10 s.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from membership import managers

from raftstore import ControlClient, NoQuorum, NotFound, RaftstoreError, Timeout
from raftstore.tools._local_cluster import Cluster, Node, Result, wait_until

pytestmark = pytest.mark.integration

NO_LEADER = "does not have a leader"
MAYBE = "may or may not have been applied"
#: How long the daemon may take to refuse a write (measured at its control socket, no CLI start-up).
FAST = 2.5


def _timed_put(node: Node, key: str) -> tuple[Result, float]:
    """The write's outcome as the CLI prints it, and how long the daemon took to give it."""
    started = time.monotonic()
    try:
        with ControlClient(node.host, timeout=30) as client:
            client.call("kv.put", {"key": key, "value": b"v", "request_id": os.urandom(16)})
    except RaftstoreError as error:
        return Result(1, "", f"Error: {error}\n"), time.monotonic() - started
    return Result(0, "", ""), time.monotonic() - started


def _absent(node: Node, key: str) -> bool:
    result = node.run("kv", "get", key, check=False, timeout=30)
    assert result.returncode == 1, f"{key} appeared after it was refused: {result.stdout!r}"
    return "not found" in result.stderr.lower()


# make test sends the write to the leader only; test-slow also to a follower (it forwards the write).
@pytest.mark.parametrize("victim_role", [pytest.param("follower", marks=pytest.mark.slow), "leader"])
def test_a_write_refused_with_no_quorum_never_appears(cluster: Cluster, victim_role: str) -> None:
    nodes = managers(cluster, 2)
    leader = cluster.leader()
    victim = leader if victim_role == "leader" else next(n for n in nodes if n is not leader)
    survivor = next(n for n in nodes if n is not victim)
    victim_id = victim.info()["node_id"]
    victim.kill(signal.SIGKILL)

    refused: list[str] = []
    for i in range(4):  # at once, and on until the survivor surely knows
        result, elapsed = _timed_put(survivor, f"k{i}")
        assert result.returncode == 1, "a write without quorum succeeded"
        assert NO_LEADER in result.stderr or MAYBE in result.stderr, result.stderr
        if NO_LEADER in result.stderr:
            assert MAYBE not in result.stderr
            refused.append(f"k{i}")
    assert victim_id not in survivor.info()["raft"]["connected"]
    # Once the survivor knows: refused, with NoQuorum, fast.
    result, elapsed = _timed_put(survivor, "late")
    assert result.returncode == 1 and NO_LEADER in result.stderr, result.stderr
    assert elapsed < FAST, f"the refusal took {elapsed:.1f}s"
    refused.append("late")

    victim.start()
    cluster.leader()
    survivor.run("kv", "put", "after", "restart", timeout=30)
    for node in nodes:
        wait_until(lambda n=node: n.run("kv", "get", "after", "--consistency", "local", check=False).returncode == 0,
                   what=f"{node.name} caught up")
        for key in refused:
            assert _absent(node, key)


def test_writes_to_a_manager_that_lost_its_leader_fail_fast(cluster: Cluster) -> None:
    nodes = managers(cluster, 3)
    leader = cluster.leader()
    survivor = next(n for n in nodes if n is not leader)
    for node in nodes:
        if node is not survivor:
            node.kill(signal.SIGKILL)
    # (A write handed to the leader in the instant before the survivor noticed would rightly be a "maybe".)
    wait_until(lambda: survivor.info()["raft"]["connected"] == [], what="the survivor sees the others gone")
    for i in range(3):
        result, elapsed = _timed_put(survivor, f"lost{i}")
        assert result.returncode == 1 and NO_LEADER in result.stderr, result.stderr
        assert elapsed < FAST, f"write {i} took {elapsed:.1f}s to fail"
    # What the operator sees, and a linearizable read (it goes through the log too): refused as fast.
    put = survivor.run("kv", "put", "cli", "v", check=False, timeout=30)
    assert put.returncode == 1 and put.stderr.startswith("Error: The swarm does not have a leader."), put.stderr
    started = time.monotonic()
    with ControlClient(survivor.host, timeout=30) as client:
        with pytest.raises(NoQuorum):
            client.call("kv.get", {"key": "anything"})
    assert time.monotonic() - started < FAST


def test_a_write_that_may_have_applied_says_so_and_a_retry_applies_once(cluster: Cluster) -> None:
    nodes = managers(cluster, 2)
    leader = cluster.leader()
    follower = next(n for n in nodes if n is not leader)
    assert follower.process is not None
    follower.kill(signal.SIGSTOP)  # the connection stays up: the leader appends, and cannot commit
    request_id = os.urandom(16)
    try:
        started = time.monotonic()
        with ControlClient(leader.host, timeout=30) as client:
            with pytest.raises(RaftstoreError) as raised:
                client.call("kv.cas", {"key": "maybe", "value": b"once", "version": 0, "request_id": request_id})
        elapsed = time.monotonic() - started
    finally:
        follower.kill(signal.SIGCONT)
    assert isinstance(raised.value, Timeout), f"{type(raised.value).__name__}: {raised.value}"
    assert MAYBE in str(raised.value)
    assert elapsed < 12.0

    # It was handed to Raft: once the follower is back, it applies after all.
    wait_until(lambda: leader.run("kv", "get", "maybe", check=False, timeout=30).stdout == "once\n",
               timeout=30, what="the unknown write applied")
    # The client retries with the same request id and gets the first outcome, not a second write.
    with ControlClient(cluster.leader().host, timeout=30) as client:
        retried = client.call("kv.cas", {"key": "maybe", "value": b"once", "version": 0, "request_id": request_id})
        record = client.call("kv.get", {"key": "maybe"})
        assert record["version"] == record["created_version"], "the retry wrote a second time"
        with pytest.raises(NotFound):
            client.call("kv.get", {"key": "never"})
    assert retried is not None
