"""Issue 3 end to end, only through the ``raftstore`` command: form, lock, unlock, rotate, demote, remove, recover."""

from __future__ import annotations

import signal

import pytest

from raftstore.node._daemon import WRONG_UNLOCK_KEY
from raftstore.tools._local_cluster import Cluster, Node, wait_until

pytestmark = pytest.mark.integration

LOCKED = 'Error: Swarm is encrypted and needs to be unlocked before it can be used. Use "raftstore unlock" to unlock it.'


def node_id(node: Node) -> str:
    return node.info()["node_id"]


def test_full_lifecycle(cluster: Cluster) -> None:
    m1, m2, m3, w1 = (cluster.add(n) for n in ("m1", "m2", "m3", "w1"))

    out = cluster.init(m1, "--autolock").stdout
    assert "Swarm initialized: current node (" in out and "is now a manager" in out
    assert "raftstore join --token SWMTKN-1-" in out and "raftstore join-token manager" in out
    assert "SWMKEY-1-" in out and "password manager" in out
    key = m1.run("unlock-key", "-q").stdout.strip()
    assert key.startswith("SWMKEY-1-") and key in out

    assert cluster.join(m2, m1, "manager").stdout == "This node joined a swarm as a manager.\n"
    assert cluster.join(m3, m1, "manager").stdout == "This node joined a swarm as a manager.\n"
    assert cluster.join(w1, m1, "worker").stdout == "This node joined a swarm as a worker.\n"

    rows = m1.run("node", "ls", "--format", "json").json
    assert sorted(r["role"] for r in rows) == ["manager", "manager", "manager", "worker"]
    wait_until(lambda: all(r["status"] == "ready" for r in m1.run("node", "ls", "--format", "json").json),
               what="all nodes ready")
    assert sum(r["manager_status"] == "Leader" for r in rows) == 1
    assert w1.run("kv", "get", "x", check=False).stderr.startswith("Error: This node is not a swarm manager.")

    m2.run("kv", "put", "app/config", "v1")
    assert m3.run("kv", "get", "app/config").stdout == "v1\n"

    # SIGKILL and restart a manager: it comes back locked.
    m3.kill(signal.SIGKILL)
    m1.run("kv", "put", "while-down", "yes")
    m3.start()
    info = m3.info()
    assert info["locked"] is True and info["state"] == "locked"
    locked = m3.run("kv", "get", "app/config", check=False)
    assert (locked.returncode, locked.stderr.strip()) == (1, LOCKED)
    wrong = m3.run("unlock", input="SWMKEY-1-" + "A" * 43 + "\n", check=False)
    assert (wrong.returncode, wrong.stderr.strip()) == (1, f"Error: {WRONG_UNLOCK_KEY}")
    assert m3.info()["locked"] is True
    m3.run("unlock", input=key + "\n")
    wait_until(lambda: m3.run("kv", "get", "while-down", check=False).stdout == "yes\n", what="m3 caught up")

    # Rotate the unlock key while m2 is down: m2 still opens with the old key, then learns the new one.
    m2.kill(signal.SIGKILL)
    rotated = m1.run("unlock-key", "--rotate").stdout
    assert rotated.startswith("Successfully rotated manager unlock key.")
    new_key = m1.run("unlock-key", "-q").stdout.strip()
    assert new_key != key and new_key in rotated
    assert m3.run("unlock-key", "-q").stdout.strip() == new_key
    m2.start()
    # It says it still expects the key it last knew (and nothing about either key).
    missed = m2.run("unlock", input=new_key + "\n", check=False).stderr.strip()
    assert missed == f"Error: {WRONG_UNLOCK_KEY}" and "rotated while it was down" in missed
    assert key not in missed and new_key not in missed
    m2.run("unlock", input=key + "\n")
    wait_until(lambda: m2.info().get("kek_version") == m1.info()["kek_version"], what="m2 learned the new key")
    m2.kill(signal.SIGKILL)
    m2.start()
    m2.run("unlock", input=new_key + "\n")

    # Demote a manager, then remove it.
    m3_id = node_id(m3)
    assert m1.run("node", "demote", m3_id).stdout.startswith(f"Manager {m3_id} demoted")
    wait_until(lambda: m3.info()["role"] == "worker", what="m3 became a worker")
    wait_until(lambda: m1.info()["managers"] == 2, what="two managers left")
    refused = m1.run("node", "rm", m3_id, check=False)
    assert refused.returncode == 1 and "not down" in refused.stderr
    m3.kill(signal.SIGKILL)
    m1.run("node", "rm", "--force", m3_id)
    assert m3_id not in m1.run("node", "ls", "-q").stdout

    # Lose quorum (kill m2 of two managers) and recover on m1.
    m2.kill(signal.SIGKILL)
    wait_until(lambda: m1.run("kv", "put", "x", "y", check=False, timeout=30).returncode != 0, timeout=40,
               what="writes fail without quorum")
    out = m1.run("init", "--force-new-cluster").stdout
    assert "only manager" in out
    m1.run("kv", "put", "after-recovery", "ok")
    assert m1.run("kv", "get", "app/config").stdout == "v1\n"
    assert m1.info()["managers"] == 1

    # No daemon ever logged a key or a token.
    tokens = [m1.run("join-token", "-q", role).stdout.strip() for role in ("worker", "manager")]
    for secret in [key, new_key, *tokens]:
        for node in (m1, m2, m3, w1):
            assert secret not in node.log()
            assert secret.split("-")[-1] not in node.log()


def test_leave(cluster: Cluster) -> None:
    m1, w1 = cluster.add("m1"), cluster.add("w1")
    cluster.init(m1)
    cluster.join(w1, m1, "worker")
    assert w1.run("leave").stdout == "Node left the swarm.\n"
    assert w1.info()["state"] == "inactive"
    refused = m1.run("leave", check=False)
    assert refused.returncode == 1 and "--force" in refused.stderr
    m1.run("leave", "--force")
    assert m1.info()["state"] == "inactive"
    assert not (m1.data_dir / "keys" / "keyring").exists()


def test_quorum_guard_removed_node_and_key_handling(cluster: Cluster) -> None:
    m1, m2, m3, w1 = (cluster.add(n) for n in ("m1", "m2", "m3", "w1"))
    cluster.init(m1)
    cluster.join(m2, m1, "manager")
    cluster.join(m3, m1, "manager")
    cluster.join(w1, m1, "worker")

    # Autolock off: no unlock key to show, and the node key is a plain PEM.
    refused = m1.run("unlock-key", check=False)
    assert refused.returncode == 1 and "no unlock key is set" in refused.stderr
    assert (m1.data_dir / "certificates" / "swarm-node.key").read_bytes().startswith(b"-----BEGIN")
    assert (m1.data_dir / "keys" / "kek").exists()

    # Turning autolock on: a new DEK term; every manager seals its node key and
    # drops the plain KEK, and the old term leaves every keyring once no record
    # on that manager's disk uses it.
    m1.run("update", "--autolock=true")
    for node in (m1, m2, m3):
        wait_until(lambda n=node: n.info()["dek_terms"] == [2], timeout=30, what=f"{node.name} purged DEK term 1")
        assert not (node.data_dir / "keys" / "kek").exists()
        assert not (node.data_dir / "certificates" / "swarm-node.key").read_bytes().startswith(b"-----BEGIN")

    # A demotion that would lose quorum is refused, and nothing changes.
    m3.kill(signal.SIGKILL)
    wait_until(lambda: any(r["manager_status"] == "Unreachable" for r in m1.run("node", "ls", "--format", "json").json),
               what="m3 unreachable")
    target = node_id(m2) if not m2.info()["is_leader"] else node_id(m1)
    result = m1.run("node", "demote", target, check=False)
    assert result.returncode == 1 and "quorum" in result.stderr, result.stderr
    assert m1.info()["managers"] == 3

    # A removed worker is refused from then on, by name.
    worker_id = node_id(w1)
    w1.stop()
    m1.run("node", "rm", "--force", worker_id)  # it stopped seconds ago: not yet reported down
    w1.start()
    wait_until(lambda: w1.info().get("removed") is True, what="worker learns it was removed")
    assert w1.info()["error"] == f"node {worker_id} was removed from the cluster"


def test_sigterm_shuts_down_cleanly(cluster: Cluster) -> None:
    m1 = cluster.add("m1")
    cluster.init(m1)
    m1.run("kv", "put", "k", "v")
    m1.stop()
    assert m1.process is not None and m1.process.returncode == 0
    assert "stopped" in m1.log()
    assert not (m1.data_dir / "raftstore.sock").exists()
    m1.start()
    assert m1.run("kv", "get", "k").stdout == "v\n"


def test_manager_down_across_a_dek_rotation_fetches_the_new_term(cluster: Cluster) -> None:
    m1, m2, m3 = (cluster.add(n) for n in ("m1", "m2", "m3"))
    cluster.init(m1)
    cluster.join(m2, m1, "manager")
    cluster.join(m3, m1, "manager")
    m1.run("kv", "put", "before", "1")
    wait_until(lambda: m3.run("kv", "get", "before", "--consistency", "local", check=False).returncode == 0,
               what="m3 has the first write")
    m3.kill(signal.SIGKILL)
    m1.run("update", "--autolock=true")  # a new DEK term, and the old one purged from m1 and m2
    for node in (m1, m2):
        wait_until(lambda n=node: n.info()["dek_terms"] == [2], timeout=30, what=f"{node.name} purged term 1")
    m1.run("kv", "put", "after", "2")
    # m3 still holds only term 1 and its plain KEK (autolock was off when it went down).
    m3.start()
    wait_until(lambda: m3.run("kv", "get", "after", "--consistency", "local", check=False).stdout == "2\n",
               timeout=30, what="m3 caught up through a snapshot sealed under term 2")
    assert "fetched data key term" in m3.log()
    wait_until(lambda: not (m3.data_dir / "keys" / "kek").exists(), what="m3 re-wrapped under the unlock key")
    assert m3.info()["autolock"] is True
