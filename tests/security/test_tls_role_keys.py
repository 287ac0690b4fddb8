"""A role change issues a new key pair (issue 11, "certificates carry the role they grant").

From the attacker's side: a demoted manager's disk is a worker's disk, where
the node key sits in plain PEM. If demotion kept the key, whoever reads that
disk would hold the key of a still-valid manager certificate. The same goes
the other way for a promoted worker, whose worker-era key was plain on disk
before it became a manager's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from raftstore.tools._local_cluster import Cluster, Node, wait_until
from raftstore.keyring import private_key_matches_certificate, public_key_fingerprint

pytestmark = pytest.mark.integration


def _key(node: Node) -> bytes:
    return (node.data_dir / "certificates" / "swarm-node.key").read_bytes()


def _cert(node: Node) -> bytes:
    return (node.data_dir / "certificates" / "swarm-node.crt").read_bytes()


def _files_holding(node: Node, secret: bytes) -> list[Path]:
    body = b"".join(line for line in secret.splitlines() if not line.startswith(b"-----"))
    return [p for p in node.data_dir.rglob("*") if p.is_file() and body in b"".join(p.read_bytes().splitlines())]


def test_demotion_and_promotion_change_the_key(cluster: Cluster) -> None:
    m1, m2 = cluster.add("m1"), cluster.add("m2")
    cluster.init(m1)  # autolock off: a manager's key is plain PEM on disk, as on every worker
    cluster.join(m2, m1, "manager")
    manager_key = _key(m2)
    assert manager_key.startswith(b"-----BEGIN") and private_key_matches_certificate(manager_key, _cert(m2))
    m2_id = m2.info()["node_id"]

    m1.run("node", "demote", m2_id)
    wait_until(lambda: m2.info()["role"] == "worker", what="m2 became a worker")
    worker_key = _key(m2)
    assert worker_key != manager_key
    assert private_key_matches_certificate(worker_key, _cert(m2))
    assert _files_holding(m2, manager_key) == [], "the manager-era key is still on the worker's disk"
    assert m2.run("node", "ls", check=False).returncode == 1  # a worker, and it works as one:
    wait_until(lambda: any(r["id"] == m2_id and r["status"] == "ready"
                           for r in m1.run("node", "ls", "--format", "json").json), what="m2 ready as a worker")

    m1.run("node", "promote", m2_id)
    wait_until(lambda: m2.info()["role"] == "manager", timeout=30, what="m2 became a manager again")
    wait_until(lambda: m1.info()["managers"] == 2, what="two managers")
    promoted_key = _key(m2)
    assert promoted_key not in (worker_key, manager_key)
    assert private_key_matches_certificate(promoted_key, _cert(m2))
    assert _files_holding(m2, worker_key) == [], "the worker-era key is still on the manager's disk"
    m2.run("kv", "put", "after", "promotion")
    assert m1.run("kv", "get", "after").stdout == "promotion\n"


def test_demoted_autolocked_manager_gets_a_new_key(cluster: Cluster) -> None:
    """With autolock the manager's key is sealed on disk; demotion must not unseal it onto the worker's disk."""
    m1, m2 = cluster.add("m1"), cluster.add("m2")
    cluster.init(m1, "--autolock")
    cluster.join(m2, m1, "manager")
    manager_cert = _cert(m2)
    assert not _key(m2).startswith(b"-----BEGIN")  # sealed under the KEK
    m1.run("node", "demote", m2.info()["node_id"])
    wait_until(lambda: m2.info()["role"] == "worker", what="m2 became a worker")
    worker_key = _key(m2)
    assert worker_key.startswith(b"-----BEGIN")  # a worker has no KEK
    assert public_key_fingerprint(worker_key) != public_key_fingerprint(manager_cert)
    assert private_key_matches_certificate(worker_key, _cert(m2))
