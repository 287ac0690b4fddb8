"""Issue 14: what the node API's delivery methods give away, asked from the attacker's side over raw TLS.

A worker learns what is granted to it with ``node.assignments`` (ids and names, never data) and reads values
with ``secret.read``/``config.read``. The attacker holds a worker's key and certificate (or none, or an admin
client certificate) and tries to list or read what was granted to another node, or to hold a manager's
thread forever.
"""

from __future__ import annotations

import math
import time

import pytest
from authz_wire import call, cluster_api, files_identity, node_identity

from raftstore.tools._local_cluster import Cluster

pytestmark = pytest.mark.integration


def test_a_worker_lists_and_reads_only_what_is_granted_to_it(cluster: Cluster, tmp_path) -> None:
    m1, w1, w2 = cluster.add("m1"), cluster.add("w1"), cluster.add("w2")
    cluster.init(m1)
    cluster.join(w1, m1, "worker")
    cluster.join(w2, m1, "worker")
    w1_id, w2_id = w1.info()["node_id"], w2.info()["node_id"]
    mine = m1.run("secret", "create", "mine", "-", "--grant", w1_id, input="m-value").stdout.strip()
    m1.run("secret", "create", "theirs", "-", "--grant", w2_id, input="t-value")
    m1.run("config", "create", "their.conf", "-", "--grant", w2_id, input="t-conf")
    conf = m1.run("config", "create", "my.conf", "-", "--grant", w1_id, input="m-conf").stdout.strip()

    with cluster_api(m1, node_identity(w1)) as sock:
        reply = call(sock, "node.assignments", {"since": None, "wait": 0})
        assert reply["ok"], reply
        listing = reply["result"]
        assert listing["secrets"] == [{"id": mine, "name": "mine", "version": listing["secrets"][0]["version"]}]
        assert [c["id"] for c in listing["configs"]] == [conf]
        shown = repr(listing)
        assert not any(word in shown for word in ("m-value", "m-conf", "t-value", "t-conf", "theirs", "their.conf"))
        assert all(set(item) == {"id", "name", "version"} for item in listing["secrets"] + listing["configs"])
        assert call(sock, "secret.read", {"secret": mine})["result"]["data"] == b"m-value"
        assert call(sock, "config.read", {"config": "my.conf"})["result"]["data"] == b"m-conf"
        for method, ref in (("secret.read", "theirs"), ("config.read", "their.conf"), ("secret.read", "nothing")):
            refused = call(sock, method, {method.split(".")[0]: ref})
            assert not refused["ok"] and refused["error"]["message"] == "permission denied", (method, ref)

        # No wait can hold the manager's thread past the bound, or forever.
        started = time.monotonic()
        unchanged = call(sock, "node.assignments", {"since": listing["tag"], "wait": 3600})
        assert unchanged["ok"] and unchanged["result"]["tag"] == listing["tag"]
        assert time.monotonic() - started < 15
        for wait in (math.nan, math.inf, "soon"):
            bad = call(sock, "node.assignments", {"since": listing["tag"], "wait": wait})
            assert not bad["ok"] and bad["error"]["code"] == "InvalidArgument", wait

    # Without a node certificate of this cluster: nothing, not even names.
    with cluster_api(m1, None) as sock:
        refused = call(sock, "node.assignments", {"since": None, "wait": 0})
        assert not refused["ok"] and refused["error"]["message"].startswith("permission denied: ")
    m1.run("ca", "issue-client", "--out", str(tmp_path / "admin"))
    with cluster_api(m1, files_identity(tmp_path / "admin")) as sock:
        refused = call(sock, "node.assignments", {"since": None, "wait": 0})
        assert not refused["ok"] and refused["error"]["message"].startswith("permission denied: ")
