"""A snapshot streamed from the leader: written privately, made durable and checked before it replaces ours.

Finding 10 of issue 11: a follower renamed a received snapshot into place
before verifying it, without fsync, at mode 0644; a bad one replaced the good
one and stopped the node. Now it lands in a 0600 temporary file, is fsynced,
opened with the keyring, and only then renamed (and the directory fsynced).
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from raftstore.tools._local_cluster import Cluster, Node, wait_until
from raftstore.storage._snapshot_file import SnapshotReader, SnapshotWriter

pytestmark = pytest.mark.integration

REFUSED = "refused the snapshot received from the leader"
FAILED = "could not be loaded"


def _snapshot(node: Node) -> Path:
    return node.data_dir / "raft" / "snapshot"


def _rotate_dek(node: Node, times_retired: int) -> None:
    """Rotate the DEK (turning autolock on does) and back off; wait until the old term left the disk."""
    node.run("update", "--autolock=true")
    node.run("update", "--autolock=false")
    wait_until(lambda: node.log().count("retired data encryption key term") >= times_retired, timeout=30,
               what=f"{node.name} compacted under the new DEK")


def _forge(path: Path) -> None:
    """Flip a ciphertext byte in the last chunk and rewrite the checksums: only opening the records can tell."""
    with SnapshotReader(path) as reader:
        index, term, payloads = reader.index, reader.term, list(reader.payloads())
    payloads[-1] = payloads[-1][:-1] + bytes([payloads[-1][-1] ^ 1])
    with SnapshotWriter(path, index, term) as writer:
        for payload in payloads:
            writer.add(payload)
        writer.commit()


def test_received_snapshots_are_private_and_checked_before_they_replace_ours(cluster: Cluster) -> None:
    m1, m2, m3 = cluster.add("m1"), cluster.add("m2"), cluster.add("m3")
    cluster.init(m1)
    m1.run("kv", "put", "first", "1")
    _rotate_dek(m1, 1)  # the leader's log now starts at a snapshot: joiners receive it
    for node in (m2, m3):
        cluster.join(node, m1, "manager")
    wait_until(lambda: m3.run("kv", "get", "first", "--consistency", "local", check=False).stdout == "1\n",
               what="m3 caught up from the leader's snapshot")
    received = _snapshot(m3)
    assert received.exists()
    assert stat.S_IMODE(received.stat().st_mode) == 0o600, oct(received.stat().st_mode)

    m3.stop()
    good = received.read_bytes()
    _rotate_dek(m1, 2)  # compacted past m3's log: m3 will need a snapshot again
    m1.run("kv", "put", "second", "2")
    for node in (m1, m2):  # whoever leads streams a damaged file
        _forge(_snapshot(node))
    m3.start()
    wait_until(lambda: REFUSED in m3.log() or FAILED in m3.log(), timeout=30, what="m3 received a snapshot")
    assert received.read_bytes() == good, "a snapshot that does not open replaced the good one"
    assert REFUSED in m3.log()
    assert stat.S_IMODE(received.stat().st_mode) == 0o600
    assert not list(received.parent.glob("*.tmp")), "the refused snapshot was left behind"
    assert m3.run("kv", "get", "first", "--consistency", "local").stdout == "1\n"
