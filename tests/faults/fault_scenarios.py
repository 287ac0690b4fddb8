"""The fault scenarios: each function injects one kind of fault into a running cluster.

The test files (test_scenarios.py: kills and the stale-read control;
test_scenarios_partitions.py: pauses, partitions and key rotation) run them
under load; they are split in two so that the test processes share them.
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from harness import FaultCluster, Scenario
from raftstore.tools import wait_until

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
    # The rotation commits on a majority; the victim opens with the new key only once it has applied it and
    # re-wrapped its keyring (else it asks, rightly, for the key it last knew). Followers learn of a commit
    # up to one commit-notice delay later than the leader.
    kek = node.info()["kek_version"]
    wait_until(lambda: victim.info().get("kek_version") == kek, timeout=30, what=f"{victim.name} re-wrapped its keyring")
    victim.kill(signal.SIGKILL)
    c.start(victim)
    faults.append(f"SIGKILL and restart of {victim.name} with the new unlock key")


def stale_follower(c: FaultCluster, rnd: random.Random, faults: list[str]) -> None:
    assert c.stale_node is not None
    c.isolate({c.stale_node})
    faults.append(f"partitioned {c.stale_node}, whose local (non-linearizable) reads the workload keeps using")
    time.sleep(3.0)


#: The longest scenarios (every manager killed; five managers split) run in make test-slow only.
KILLS = [
    pytest.param(Scenario("kill-leader", kill_leader), id="kill-leader"),
    pytest.param(Scenario("kill-follower", kill_follower), id="kill-follower"),
    pytest.param(Scenario("kill-all", kill_all), id="kill-all", marks=pytest.mark.slow),
]
PARTITIONS = [
    pytest.param(Scenario("pause-leader", pause_leader), id="pause-leader"),
    pytest.param(Scenario("partition-leader", partition_leader, size=5 if SLOW else 3), id="partition-leader"),
    pytest.param(Scenario("partition-minority-majority", partition_minority_majority, size=5),
                 id="partition-minority-majority", marks=pytest.mark.slow),
    pytest.param(Scenario("rotate-keys", rotate_keys), id="rotate-keys"),
]


