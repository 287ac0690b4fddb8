"""raftstore.Client against a real manager: compacted history, transactions, and the remote control API over TLS.

One manager serves every test of this module (its setup restarts it twice),
reached on its control socket and on its remote control API with mutual TLS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from raftstore import (
    Client,
    Compacted,
    Compare,
    Delete,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Put,
    tls_context,
)
from raftstore.tools._local_cluster import Cluster, Node, free_port, wait_until

pytestmark = pytest.mark.integration


class Manager:
    def __init__(self, node: Node, tls_endpoint: str, certs: Path, compacted_below: int) -> None:
        self.node, self.tls_endpoint, self.certs = node, tls_endpoint, certs
        self.compacted_below = compacted_below


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    """A manager with history before its last snapshot (gone after a restart), serving TLS on 127.0.0.1."""
    root = tmp_path_factory.mktemp("client")
    cluster = Cluster(root)
    try:
        m1 = cluster.add("m1")
        cluster.init(m1)
        certs, server = root / "client-certs", root / "server-certs"
        m1.run("ca", "issue-client", "--out", str(certs))
        m1.run("ca", "issue-server", "--san", "127.0.0.1", "--out", str(server))
        with Client(m1.host) as client:
            for n in range(5):
                client.put(f"early/{n}", b"before the snapshot")
        m1.run("update", "--rotate-dek")  # every manager writes a snapshot under the new key
        wait_until(lambda: m1.info()["dek_terms"] == [2], timeout=30, what="the old key's records gone")
        port = free_port()
        m1.stop()
        m1.start(["-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", str(server / "ca.pem"),
                  "--tlscert", str(server / "cert.pem"), "--tlskey", str(server / "key.pem")])
        with Client(m1.host) as client:
            snapshot_index = client.info().applied_index
            assert snapshot_index is not None
        yield Manager(m1, f"tcp://127.0.0.1:{port}", certs, snapshot_index)
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.close()


def test_a_watch_from_compacted_history_raises_compacted(manager: Manager) -> None:
    with Client(manager.node.host) as client:
        early = client.get("early/0").version
        with pytest.raises(Compacted) as gone:
            next(iter(client.watch("early/", since=early - 1, follow=False)))
        assert isinstance(gone.value, NotFound) and "has been compacted" in str(gone.value)
        oldest = gone.value.oldest_version
        assert oldest is not None and early < oldest
        client.put("late/1", b"after")
        with client.watch("late/", since=oldest - 1, follow=False) as events:  # where the error says to start
            assert [e.name for e in events] == ["late/1"]


def test_the_cli_names_the_oldest_version_through_the_client(manager: Manager) -> None:
    refused = manager.node.run("events", "--since", "0", "--no-follow", check=False)
    assert refused.returncode == 1
    assert refused.stderr.startswith("Error: version 0 has been compacted; the oldest version still available is ")


def test_a_transaction_applies_as_one_entry_or_not_at_all(manager: Manager) -> None:
    with Client(manager.node.host) as client:
        base = client.put("txn/a", b"1")
        client.put("txn/gone", b"x")
        done = client.txn([Compare("txn/a", base), Compare("txn/b", 0)],
                          [Put("txn/a", b"2"), Put("txn/b", b"2"), Delete("txn/gone")])
        assert done.succeeded and done.version is not None
        assert [kv.version for kv in client.list("txn/")] == [done.version, done.version]
        with client.watch("txn/", since=done.version - 1, follow=False) as events:
            assert sorted((e.version, e.action, e.name) for e in events) == [
                (done.version, "create", "txn/b"), (done.version, "delete", "txn/gone"),
                (done.version, "update", "txn/a")]

        before = client.list("txn/")
        stale = client.txn([Compare("txn/a", base)], [Put("txn/a", b"3"), Put("txn/c", b"3")])
        assert not stale.succeeded and stale.versions == {"txn/a": done.version, "txn/c": 0}
        assert "expected version" in (stale.conflict or "")
        missing = client.txn([], [Put("txn/c", b"3"), Delete("txn/never")])
        assert not missing.succeeded
        for bad in ([Compare("txn/z", 0)], [Put("txn/a", b"x")]), ([], [Put("txn/a", b"x"), Delete("txn/a")]), \
                ([], []):
            with pytest.raises(InvalidArgument):
                client.txn(*bad)
        assert client.list("txn/") == before  # neither the failed nor the refused ones changed anything


def test_the_remote_control_api_with_an_admin_certificate(manager: Manager, tmp_path: Path) -> None:
    certs = manager.certs
    tls = tls_context(certs / "ca.pem", certs / "cert.pem", certs / "key.pem")
    with Client([manager.tls_endpoint], tls=tls) as remote:
        version = remote.put("remote/key", b"over TLS")
        assert remote.get("remote/key").version == version
        assert remote.info().node_id == manager.node.info()["node_id"]
    # A node's certificate is not an admin's: the daemon refuses it, and nothing is written.
    node_cert = manager.node.data_dir / "certificates"
    as_node = tls_context(certs / "ca.pem", node_cert / "swarm-node.crt", node_cert / "swarm-node.key")
    with Client(manager.tls_endpoint, tls=as_node) as impostor, pytest.raises(PermissionDenied):
        impostor.put("remote/key", b"from a node")
    with Client(manager.node.host) as local:
        assert local.get("remote/key").value == b"over TLS"


def test_kv_txn_on_the_command_line(manager: Manager) -> None:
    node = manager.node
    done = node.run("kv", "txn", "--compare", "cli/lock=0", "--put", "cli/lock=me", "--put", "cli/owner=a=b")
    version = int(done.stdout)
    assert node.run("kv", "get", "cli/owner").stdout == "a=b\n"
    assert node.run("kv", "get", "cli/lock", "--format", "json").json["version"] == version
    again = node.run("kv", "txn", "--compare", "cli/lock=0", "--put", "cli/lock=you", check=False)
    assert again.returncode == 1
    assert again.stderr == (f"Error: transaction not applied: update out of sequence: expected version 0, "
                            f"the key is at version {version}\n")
    unwritten = node.run("kv", "txn", "--compare", "cli/other=0", "--put", "cli/lock=x", check=False)
    assert unwritten.returncode == 1 and "which no operation writes" in unwritten.stderr
    assert node.run("kv", "txn", "--compare", "cli/lock=v1", "--put", "cli/lock=x", check=False).returncode == 2
    assert node.run("kv", "get", "cli/lock").stdout == "me\n"
