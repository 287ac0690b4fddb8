"""Raft's safety properties under the deterministic simulation (see simulation.py, README.md).

``RAFTSIM_SEED=N`` runs only seed N and prints its whole trace on failure.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from simulation import (
    DATA_LOSS,
    Cluster,
    SafetyViolation,
    run_seed,
    scenario_chaos_network,
    scenario_duplicates_and_power_cuts,
)

#: Under pysyncobj's own rule this seed loses an entry acknowledged to its client:
#: a follower acks entry 128, a duplicate of the same append-entries cuts and
#: re-appends it, the second ack is filtered (so nothing syncs), the power goes,
#: and the follower, with the entry forgotten, wins the next election.
LOST_ACK_SEED = 246


def _data_checks_only(cluster: Cluster) -> None:
    cluster.tolerate_critical = True  # pysyncobj's "truncating already-applied" line would stop the run first
    scenario_duplicates_and_power_cuts(cluster)


def test_pysyncobj_truncation_rule_loses_an_acknowledged_entry(tmp_path: Path) -> None:
    with pytest.raises(SafetyViolation) as caught:
        run_seed(LOST_ACK_SEED, _data_checks_only, tmp_path)
    assert caught.value.kind in DATA_LOSS and "acknowledged to its client" in str(caught.value)


def test_a_seed_replays_exactly(tmp_path: Path) -> None:
    first = run_seed(7, scenario_chaos_network, tmp_path)
    second = run_seed(7, scenario_chaos_network, tmp_path)
    assert (first.steps, first.digest()) == (second.steps, second.digest())
    assert first.acknowledged
