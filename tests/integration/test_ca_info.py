"""Issue 14: ``ca`` as ``docker swarm ca --help`` shows it (-d, --cert-expiry, the pending root) and
``info``'s "CA Configuration" block as ``docker system info`` prints it."""

from __future__ import annotations

import signal

import pytest

from raftstore.tools._local_cluster import Cluster, wait_until

pytestmark = pytest.mark.integration


def test_ca_flags_and_the_ca_configuration_block(cluster: Cluster) -> None:
    m1, w1 = cluster.add("m1"), cluster.add("w1")
    cluster.init(m1)
    cluster.join(w1, m1, "worker")

    text = m1.run("info").stdout
    assert ("CA Configuration:\n  Expiry Duration: 2160h0m0s\n  Force Rotate: 0\n"
            "  Root Rotation In Progress: false\n") in text
    info = m1.info()
    assert info["ca_config"] == {"expiry_seconds": 2160 * 3600, "expiry": "2160h0m0s", "external_cas": [],
                                 "root_rotation_in_progress": False, "force_rotate": 0}
    for kept in ("node_id", "cluster_id", "role", "locked", "autolock", "leader", "managers", "raft",
                 "cert_expiry_seconds", "ca_rotation_in_progress", "cluster_cert_expiry_seconds"):
        assert kept in info, kept
    assert w1.info()["ca_config"] is None and "CA Configuration" not in w1.run("info").stdout

    none = m1.run("ca", "--pending", check=False)
    assert (none.returncode, none.stdout) == (1, "")
    assert none.stderr.strip() == 'Error: no root CA rotation is in progress; "raftstore ca" prints the current root'
    assert m1.run("ca", "--pending", "--rotate", check=False).returncode == 2

    # ca --cert-expiry changes the cluster's expiry as update --cert-expiry does, and still prints the root.
    old_root = m1.run("ca").stdout
    assert m1.run("ca", "--cert-expiry", "720h").stdout == old_root
    assert "  Expiry Duration: 720h0m0s\n" in m1.run("info").stdout
    short = m1.run("ca", "--cert-expiry", "59m", check=False)
    assert (short.returncode, short.stderr.strip()) == (1, "Error: minimum certificate expiry time is: 1h0m0s")

    # A rotation that waits for a down worker: -d returns at once, --pending shows the new root.
    w1.kill(signal.SIGKILL)
    started = m1.run("ca", "--rotate", "-d")
    assert "CA rotation started" in started.stderr
    pending = m1.run("ca", "--pending").stdout
    assert pending.startswith("-----BEGIN CERTIFICATE-----") and pending != old_root
    assert m1.run("ca").stdout == old_root  # the current root, until every node has converged
    assert m1.run("ca", "--pending", "--format", "json").json["root_ca_pem"].strip() == pending.strip()
    text = m1.run("info").stdout
    assert "  Force Rotate: 1\n" in text and "  Root Rotation In Progress: true\n" in text
    assert m1.info()["ca_config"]["force_rotate"] == 1

    w1.start()
    wait_until(lambda: not m1.run("ca", "--format", "json").json["in_progress"], timeout=40, what="rotation done")
    assert m1.run("ca").stdout == pending
    assert "  Root Rotation In Progress: false\n" in m1.run("info").stdout
    assert m1.info()["ca_config"]["force_rotate"] == 1


def test_external_cas_are_listed_in_the_block() -> None:
    """The other half of issue 14 stores external CAs in the cluster spec's ``external_cas``; info lists them."""
    from raftstore.api._views import ca_config
    from raftstore.cli._swarm import _ca_config_lines

    spec = {"cert_expiry_seconds": 90 * 24 * 3600, "force_rotate": 2, "root_rotation": None,
            "external_cas": [{"protocol": "cfssl", "url": "https://ca1:8888", "cacert_pem": b"PEM"},
                             "protocol=cfssl,url=https://ca2:8888,cacert=/etc/ca.pem"]}
    config = ca_config(spec)
    assert config["external_cas"] == [{"protocol": "cfssl", "url": "https://ca1:8888"},
                                      {"protocol": "cfssl", "url": "https://ca2:8888"}]
    assert _ca_config_lines(config) == [
        "CA Configuration:", "  Expiry Duration: 2160h0m0s", "  Force Rotate: 2", "  External CAs:",
        "    cfssl: https://ca1:8888", "    cfssl: https://ca2:8888", "  Root Rotation In Progress: false"]
