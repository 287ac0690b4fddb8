"""Issue 5 end to end: secrets granted to nodes, delivered over each node's own mTLS identity."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from raftstore.tools._local_cluster import Cluster, Node

pytestmark = pytest.mark.integration

VALUE = "correct horse battery staple"


@pytest.fixture(scope="module")
def five(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One cluster of three managers and two workers for the whole module (names do not collide)."""
    cluster = Cluster(tmp_path_factory.mktemp("secrets"))
    m1, m2, m3, w1, w2 = (cluster.add(n) for n in ("m1", "m2", "m3", "w1", "w2"))
    cluster.init(m1)
    cluster.join(m2, m1, "manager")
    cluster.join(m3, m1, "manager")
    cluster.join(w1, m1, "worker")
    cluster.join(w2, m1, "worker")
    yield m1, m2, m3, w1, w2
    cluster.close()


def test_secret_lifecycle(five: tuple[Node, Node, Node, Node, Node]) -> None:
    m1, m2, m3, w1, w2 = five
    w1_id, w2_id = w1.info()["node_id"], w2.info()["node_id"]

    secret_id = m1.run("secret", "create", "db-password", "-", "--label", "app=db", input=VALUE).stdout.strip()
    assert len(secret_id) == 25
    again = m2.run("secret", "create", "DB-Password", "-", input="x", check=False)
    assert again.returncode == 1 and again.stderr.strip() == "Error: secret DB-Password already exists"

    # ls and inspect never carry the data, in any format.
    for node in (m1, m2, m3):
        for args in (["secret", "ls"], ["secret", "ls", "--format", "json"], ["secret", "inspect", "db-password"],
                     ["secret", "inspect", "--format", "json", secret_id]):
            out = node.run(*args).stdout
            assert VALUE not in out and base64.b64encode(VALUE.encode()).decode() not in out
    info = json.loads(m2.run("secret", "inspect", "--format", "json", "db-password").stdout)
    assert info["id"] == secret_id and info["labels"] == {"app": "db"} and info["grants"] == []
    assert "data" not in info and "size" not in info

    # Grant to w1: it reads; w2 is refused and learns nothing.
    m3.run("secret", "grant", "db-password", w1_id)
    assert w1.run("secret", "read", "db-password").stdout == VALUE
    denied = w2.run("secret", "read", "db-password", check=False)
    assert (denied.returncode, denied.stderr.strip(), denied.stdout) == (1, "Error: permission denied", "")
    missing = w2.run("secret", "read", "no-such-secret", check=False)
    assert missing.stderr.strip() == "Error: permission denied"  # existence is not revealed either
    assert m1.run("secret", "read", "db-password", check=False).stderr.strip() == "Error: permission denied"

    # Revoke: the next read is refused.
    m1.run("secret", "revoke", "db-password", w1_id)
    assert w1.run("secret", "read", "db-password", check=False).stderr.strip() == "Error: permission denied"

    # Removing a granted secret needs --force.
    m1.run("secret", "grant", "db-password", w2_id)
    assert w2.run("secret", "read", "db-password").stdout == VALUE
    refused = m1.run("secret", "rm", "db-password", check=False)
    assert refused.returncode == 1 and "granted to 1 node" in refused.stderr and "--force" in refused.stderr
    assert m1.run("secret", "rm", "--force", "db-password").stdout.strip() == secret_id
    assert secret_id not in m2.run("secret", "ls", "-q").stdout
    assert w2.run("secret", "read", "db-password", check=False).stderr.strip() == "Error: permission denied"

    # Created with grants in one step.
    m1.run("secret", "create", "api-token", "-", "--grant", w2_id, input="tok")
    assert w2.run("secret", "read", "api-token").stdout == "tok"


def test_secret_rules(five: tuple[Node, Node, Node, Node, Node]) -> None:
    m1 = five[0]
    cases = {
        ("bad name!", "x"): "Error: invalid name, only 64 [a-zA-Z0-9-_.] characters allowed, and the start and end character must be [a-zA-Z0-9]",
        ("-leading", "x"): "Error: invalid name, only 64 [a-zA-Z0-9-_.] characters allowed, and the start and end character must be [a-zA-Z0-9]",
        ("a" * 65, "x"): "Error: invalid name, only 64 [a-zA-Z0-9-_.] characters allowed, and the start and end character must be [a-zA-Z0-9]",
        ("empty", ""): "Error: secret data must be larger than 0 and less than 512000 bytes",
        ("huge", "x" * 512000): "Error: secret data must be larger than 0 and less than 512000 bytes",
    }
    for (name, data), message in cases.items():
        result = m1.run("secret", "create", "--", name, "-", input=data, check=False)
        assert (result.returncode, result.stderr.strip()) == (1, message), name
    created = m1.run("secret", "create", "a" * 64, "-", input="x" * 511999).stdout.strip()
    assert created in m1.run("secret", "ls", "-q").stdout


def test_configs(five: tuple[Node, Node, Node, Node, Node]) -> None:
    m1, m2 = five[0], five[1]
    config_id = m1.run("config", "create", "nginx.conf", "-", input="server {}").stdout.strip()
    info = json.loads(m2.run("config", "inspect", "--format", "json", "nginx.conf").stdout)
    assert info["id"] == config_id and info["data"] == "server {}"
    assert "server {}" in m2.run("config", "inspect", "nginx.conf").stdout
    big = m1.run("config", "create", "big", "-", input="x" * 1024000, check=False)
    assert big.stderr.strip() == "Error: config data must be larger than 0 and less than 1024000 bytes"
    m1.run("config", "create", "almost", "-", input="x" * 1023999)
    m2.run("config", "rm", "nginx.conf")
    assert "nginx.conf" not in m1.run("config", "ls").stdout


def test_configs_granted_to_nodes(five: tuple[Node, Node, Node, Node, Node]) -> None:
    """Issue 14: a worker has no store to inspect; it reads the configs granted to it, as secrets are read."""
    m1, m2, m3, w1, w2 = five
    w1_id, m2_id = w1.info()["node_id"], m2.info()["node_id"]
    config_id = m1.run("config", "create", "app.yaml", "-", "--grant", w1_id, input="port: 80\n").stdout.strip()
    assert json.loads(m2.run("config", "inspect", "--format", "json", "app.yaml").stdout)["grants"] == [w1_id]
    assert w1.run("config", "read", "app.yaml").stdout == "port: 80\n"
    for node, ref in ((w2, "app.yaml"), (m2, "app.yaml"), (w1, "no-such-config")):
        refused = node.run("config", "read", ref, check=False)
        assert (refused.returncode, refused.stderr.strip(), refused.stdout) == (1, "Error: permission denied", "")
    assert w1.run("config", "inspect", "app.yaml", check=False).returncode == 1  # a worker holds no store

    m3.run("config", "grant", "app.yaml", m2_id)
    assert m2.run("config", "read", config_id).stdout == "port: 80\n"
    m1.run("config", "revoke", "app.yaml", w1_id)
    assert w1.run("config", "read", "app.yaml", check=False).stderr.strip() == "Error: permission denied"

    refused = m1.run("config", "rm", "app.yaml", check=False)
    assert refused.returncode == 1 and "granted to 1 node" in refused.stderr and "--force" in refused.stderr
    assert m1.run("config", "rm", "--force", "app.yaml").stdout.strip() == config_id
    assert m2.run("config", "read", "app.yaml", check=False).stderr.strip() == "Error: permission denied"
