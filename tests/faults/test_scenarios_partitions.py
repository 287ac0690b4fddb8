"""Fault scenarios, second half: a paused leader, partitions, and key rotation under load (see fault_scenarios.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import Scenario, run_scenario
from fault_scenarios import LOAD_SECONDS, PARTITIONS, SEED

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("scenario", PARTITIONS)
def test_scenario(scenario: Scenario, tmp_path: Path) -> None:
    print(f"fault scenario {scenario.name}: seed {SEED} (replay: RAFTSTORE_FAULT_SEED={SEED})")
    report = run_scenario(scenario, tmp_path, SEED, LOAD_SECONDS)
    assert report["linearizable"] and report["operations"] > 20, report
