"""Fault scenarios: each injects one kind of fault under concurrent load, then checks the history.

`make test` runs each for a few seconds; `make test-slow` runs them longer, with
5 managers where the scenario allows, and a fixed seed (printed, and in each
JSON report under build/fault-reports/) that RAFTSTORE_FAULT_SEED replays.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from harness import FaultCluster, Scenario, run_scenario
from fault_scenarios import (
    KILLS,
    LOAD_SECONDS,
    SEED,
    kill_follower,
    kill_leader,
    partition_leader,
    partition_minority_majority,
    pause_leader,
    stale_follower,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("scenario", KILLS)
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
