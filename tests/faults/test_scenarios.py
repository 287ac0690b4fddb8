"""Fault scenarios: each injects one kind of fault under concurrent load, then checks the history.

`make test` runs each for a few seconds; `make test-slow` runs them longer, with
5 managers where the scenario allows, and a fixed seed (printed, and in each
JSON report under build/fault-reports/) that RAFTSTORE_FAULT_SEED replays.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from harness import FaultCluster, Scenario, run_scenario
from raftstore.tools._local_cluster import wait_until

pytestmark = pytest.mark.integration

SLOW = os.environ.get("RAFTSTORE_SLOW_FAULTS") == "1"
SEED = int(os.environ.get("RAFTSTORE_FAULT_SEED", "0")) or random.SystemRandom().randrange(1, 2**31)
LOAD_SECONDS = 30.0 if SLOW else 4.0


def kill_leader(c: FaultCluster, rnd: random.Random, faults: list[str]) -> None:
    leader = c.leader()
    leader.kill(signal.SIGKILL)
    faults.append(f"SIGKILL leader {leader.name}")
    time.sleep(1.5 + rnd.random())
    c.start(leader)
    faults.append(f"restarted and unlocked {leader.name}")


def kill_follower(c: FaultCluster, rnd: random.Random, faults: list[str]) -> None:
    leader = c.leader()
    follower = rnd.choice([n for n in c.nodes if n is not leader])
    follower.kill(signal.SIGKILL)
    faults.append(f"SIGKILL follower {follower.name}")
    time.sleep(1.0 + rnd.random())
    c.start(follower)
    faults.append(f"restarted and unlocked {follower.name}")


def kill_all(c: FaultCluster, rnd: random.Random, faults: list[str]) -> None:
    for node in c.nodes:
        node.kill(signal.SIGKILL)
    faults.append("SIGKILL every manager at once")
    for node in c.nodes:
        c.start(node)
    faults.append("restarted and unlocked every manager")


def pause_leader(c: FaultCluster, rnd: random.Random, faults: list[str]) -> None:
    leader = c.leader()
    leader.kill(signal.SIGSTOP)
    faults.append(f"SIGSTOP leader {leader.name} for 3 s (election timeout is at most 1.4 s)")
    time.sleep(3.0)
    leader.kill(signal.SIGCONT)
    faults.append(f"SIGCONT {leader.name}")


def partition_leader(c: FaultCluster, rnd: random.Random, faults: list[str]) -> None:
    leader = c.leader()
    cut = c.isolate({leader.name})
    faults.append(f"partitioned leader {leader.name} from the others ({len(cut)} links cut)")
    others = [n for n in c.nodes if n is not leader]
    wait_until(lambda: c.cluster.leader(others) is not None, timeout=20, what="a leader on the majority side")
    time.sleep(1.0)
    c.heal()
    faults.append("healed")


def partition_minority_majority(c: FaultCluster, rnd: random.Random, faults: list[str]) -> None:
    names = [n.name for n in c.nodes]
    rnd.shuffle(names)
    minority = set(names[: len(names) // 2])
    c.isolate(minority)
    faults.append(f"partition: minority {sorted(minority)} | majority {sorted(set(names) - minority)}")
    time.sleep(3.0)
    c.heal()
    faults.append("healed")


def rotate_keys(c: FaultCluster, rnd: random.Random, faults: list[str]) -> None:
    node = rnd.choice(c.nodes)
    node.run("update", "--autolock=false")
    node.run("update", "--autolock=true")  # a DEK rotation, under load
    c.unlock_key = node.run("unlock-key", "-q").stdout.strip()
    faults.append("autolock off and on: DEK rotated")
    node.run("unlock-key", "--rotate")
    c.unlock_key = node.run("unlock-key", "-q").stdout.strip()
    faults.append("unlock key rotated")
    victim = rnd.choice(c.nodes)
    victim.kill(signal.SIGKILL)
    c.start(victim)
    faults.append(f"SIGKILL and restart of {victim.name} with the new unlock key")


def stale_follower(c: FaultCluster, rnd: random.Random, faults: list[str]) -> None:
    assert c.stale_node is not None
    c.isolate({c.stale_node})
    faults.append(f"partitioned {c.stale_node}, whose local (non-linearizable) reads the workload keeps using")
    time.sleep(3.0)


SCENARIOS = [
    Scenario("kill-leader", kill_leader),
    Scenario("kill-follower", kill_follower),
    Scenario("kill-all", kill_all),
    Scenario("pause-leader", pause_leader),
    Scenario("partition-leader", partition_leader, size=5 if SLOW else 3),
    Scenario("partition-minority-majority", partition_minority_majority, size=5),
    Scenario("rotate-keys", rotate_keys),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_scenario(scenario: Scenario, tmp_path: Path) -> None:
    print(f"fault scenario {scenario.name}: seed {SEED} (replay: RAFTSTORE_FAULT_SEED={SEED})")
    report = run_scenario(scenario, tmp_path, SEED, LOAD_SECONDS)
    assert report["linearizable"] and report["operations"] > 20, report


def test_a_stale_follower_read_is_caught(tmp_path: Path) -> None:
    """Reads served from a partitioned follower's local copy break linearizability, and the checker says so."""
    scenario = Scenario("stale-follower-read", stale_follower, expect_linearizable=False, stale_reads_from_follower=True)
    report = run_scenario(scenario, tmp_path, SEED, LOAD_SECONDS)
    assert not report["linearizable"] and report["anomalies"]


@pytest.mark.slow
def test_soak_with_mixed_faults(tmp_path: Path) -> None:
    """make test-slow only: five managers, two minutes of load, a random fault every few seconds."""
    faults_in_turn = [kill_leader, kill_follower, pause_leader, partition_leader, partition_minority_majority]

    def mixed(c: FaultCluster, rnd: random.Random, faults: list[str]) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            rnd.choice(faults_in_turn)(c, rnd, faults)
            c.heal()
            c.wait_healthy()
            time.sleep(rnd.uniform(1, 4))

    report = run_scenario(Scenario("soak-mixed", mixed, size=5), tmp_path, SEED, 20.0)
    assert report["linearizable"] and len(report["faults"]) >= 5
