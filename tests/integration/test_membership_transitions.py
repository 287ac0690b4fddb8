"""Issue 12: `node demote X && node promote X` ends with X a healthy voting member, every time.

Before the reconciler, the promote that arrives while X is still leaving Raft
stranded X: its record said manager, the leader's configuration no longer had
it, and nothing added it back. `make test` does one round of each; `make
test-slow` does the 20 the issue asks for.
"""

from __future__ import annotations

import pytest
from membership import healthy_voting_member, leader_info, managers, node_id, records_agree_with_raft

from raftstore.tools._local_cluster import Cluster, wait_until

pytestmark = pytest.mark.integration

ROUNDS = [1, pytest.param(20, marks=pytest.mark.slow)]
#: From the promote's return to a healthy member: the slowest path is a full
#: demotion to a worker, then a promotion back (worker heartbeats every 5 s).
CONVERGE = 30.0


@pytest.mark.parametrize("rounds", ROUNDS)
def test_demote_then_promote_a_follower(cluster: Cluster, rounds: int) -> None:
    nodes = managers(cluster, 3)
    x = nodes[2]
    x_id = node_id(x)
    for round_ in range(rounds):
        via = next(n for n in nodes if n is not x)
        via.run("node", "demote", x_id, timeout=60)
        via.run("node", "promote", x_id, timeout=60)
        wait_until(lambda: healthy_voting_member(x, nodes, f"round{round_}"), timeout=CONVERGE,
                   interval=0.2, what=f"round {round_}: {x.name} a healthy voting member")
        assert records_agree_with_raft(via, nodes) is None


@pytest.mark.parametrize("rounds", ROUNDS)
def test_demote_then_promote_the_leader(cluster: Cluster, rounds: int) -> None:
    nodes = managers(cluster, 3)
    for round_ in range(rounds):
        info = wait_until(lambda: leader_info(nodes), what="a leader")
        x = next(n for n in nodes if n.name == info["name"])
        via = next(n for n in nodes if n is not x)
        via.run("node", "demote", info["node_id"], timeout=60)
        via.run("node", "promote", info["node_id"], timeout=60)
        wait_until(lambda: healthy_voting_member(x, nodes, f"round{round_}"), timeout=CONVERGE,
                   interval=0.2, what=f"round {round_}: {x.name} (the leader) a healthy voting member again")
        assert records_agree_with_raft(via, nodes) is None
