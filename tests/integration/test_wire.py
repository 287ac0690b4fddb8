"""No kv value crosses the loopback in plain text: all Raft traffic runs through recording proxies."""

from __future__ import annotations

import base64

import pytest

from netproxy import Proxy
from raftstore.tools._local_cluster import Cluster, wait_until

pytestmark = pytest.mark.integration

MARKER = "Wire-Marker-5b1e0c77"


def test_values_are_never_plaintext_on_the_wire(cluster: Cluster) -> None:
    m1, m2, m3 = cluster.add("m1"), cluster.add("m2"), cluster.add("m3")
    proxies = {n.name: Proxy(n.port) for n in (m1, m2, m3)}
    try:
        # Every manager advertises its proxy, so every Raft connection, whoever dials, is recorded.
        m1.run("init", "--listen-addr", m1.addr, "--advertise-addr", proxies["m1"].addr)
        token = m1.run("join-token", "-q", "manager").stdout.strip()
        for node in (m2, m3):
            node.run("join", "--token", token, "--listen-addr", node.addr, "--advertise-addr", proxies[node.name].addr,
                     proxies["m1"].addr)
        for i in range(30):
            (m1, m2, m3)[i % 3].run("kv", "put", f"wire/{i}", f"{MARKER}-{i}")
        wait_until(lambda: m3.run("kv", "get", "wire/29", "--consistency", "local", check=False).stdout
                   == f"{MARKER}-29\n", what="replicated")
        recorded = b"".join(bytes(p.recorded) for p in proxies.values())
        assert len(recorded) > 10_000, "the proxies saw too little traffic to judge"
        raw = MARKER.encode()
        forms = [raw, raw.hex().encode(), base64.b64encode(raw)[:16]]
        for form in forms:
            assert form not in recorded
        assert b"\x16\x03" in recorded  # TLS records
    finally:
        for proxy in proxies.values():
            proxy.close()
