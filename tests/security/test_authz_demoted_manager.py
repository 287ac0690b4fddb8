"""Finding 6: a demoted manager's old certificate is not a manager's any more.

Demotion keeps the node running as a worker; its old manager certificate and
key are what an attacker on that machine holds. With them, on a current
manager's cluster port, the attacker tries to remove a healthy manager from
Raft, make the leader step down, join Raft, fetch the keyring and read a secret
granted to the (now worker) node. Each is refused, and the cluster is as it was.
"""

from __future__ import annotations

import pytest
from authz_wire import call, cluster_api, node_identity, raft_channel

from raftstore.tools._local_cluster import Cluster, wait_until

pytestmark = pytest.mark.integration


def _members(node) -> set[str]:
    return {m["node_id"] for m in node.info()["raft"]["members"]}


def test_demoted_managers_old_certificate_cannot_act_as_a_manager(cluster: Cluster) -> None:
    m1, m2, m3 = (cluster.add(n) for n in ("m1", "m2", "m3"))
    cluster.init(m1)
    cluster.join(m2, m1, "manager")
    cluster.join(m3, m1, "manager")
    m2_id, m3_id = m2.info()["node_id"], m3.info()["node_id"]
    old = node_identity(m3)
    m1.run("node", "demote", m3_id)
    wait_until(lambda: m3.info()["role"] == "worker" and m3.info()["error"] is None, timeout=30,
               what="m3 runs as a worker")
    m1.run("secret", "create", "db", "-", "--grant", m3_id, input="s3cret")
    assert m3.run("secret", "read", "db").stdout == "s3cret"  # the worker's own new certificate reads it
    leader = cluster.leader([m1, m2]).info()["node_id"]
    members = _members(m1)
    assert members == {leader, m1.info()["node_id"], m2_id}

    for target in (m1, m2):
        with cluster_api(target, old) as sock:
            for method, params in (("raft.remove", {"node_id": m2_id}), ("raft.remove", {"node_id": leader}),
                                   ("raft.step_down", {}), ("raft.join", {}), ("keyring.fetch", {}),
                                   ("secret.read", {"secret": "db"})):
                reply = call(sock, method, params)
                assert not reply["ok"] and reply["error"]["code"] == "PermissionDenied", (target.name, method, reply)
        refusal = raft_channel(target, old)
        assert not refusal["ok"], refusal

    assert _members(m1) == members and _members(m2) == members
    assert cluster.leader([m1, m2]).info()["node_id"] == leader
    m2.run("kv", "put", "still", "here")
    assert m1.run("kv", "get", "still").stdout == "here\n"
