"""Finding 3: a join with a wrong token writes nothing to Raft, and floods of them are slowed down.

The attacker has no certificate, only the cluster port and a well-formed token
whose secret is wrong. 100 such joins must leave the commit index (nearly)
where it was and be refused at a rate the attacker cannot raise; a join with
the right token, once the flood stops, still works.
"""

from __future__ import annotations

import time

import pytest
from authz_wire import call, cluster_api

from raftstore.tools._local_cluster import Cluster, wait_until
from raftstore.keyring import JoinToken, generate_private_key, make_csr

pytestmark = pytest.mark.integration


def _commit_index(node) -> int:
    return int(node.info()["raft"]["commit_index"])


def test_wrong_tokens_commit_nothing_and_are_rate_limited(cluster: Cluster) -> None:
    m1 = cluster.add("m1")
    cluster.init(m1)
    good = JoinToken.parse(m1.run("join-token", "-q", "worker").stdout)
    wrong = str(good.rotated())
    csr = make_csr(generate_private_key())
    before = _commit_index(m1)
    codes: dict[str, int] = {}
    started = time.monotonic()
    with cluster_api(m1, None) as sock:
        for _ in range(100):
            reply = call(sock, "join", {"token": wrong, "csr_pem": csr, "addr": "127.0.0.1:1"})
            assert not reply["ok"], reply
            codes[reply["error"]["code"]] = codes.get(reply["error"]["code"], 0) + 1
    elapsed = time.monotonic() - started
    after = _commit_index(m1)
    assert after - before <= 3, (before, after)
    assert set(codes) <= {"InvalidJoinToken", "RateLimited"}, codes
    assert codes.get("RateLimited", 0) >= 80, codes  # most never reach the token check
    assert codes.get("InvalidJoinToken", 0) >= 1, codes
    assert m1.run("node", "ls", "-q").stdout.split() == [m1.info()["node_id"]]
    print(f"100 bad joins: {codes} in {elapsed:.2f}s, commit index {before} -> {after}")

    # Once the bucket refills, the right token joins (from the same address).
    w1 = cluster.add("w1")
    wait_until(lambda: cluster.join(w1, m1, "worker").returncode == 0 if w1.info()["state"] == "inactive" else True,
               timeout=40, interval=1.0, what="a good join after the flood")
    assert w1.info()["role"] == "worker"
