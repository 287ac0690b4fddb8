"""Damage on disk: refused with the file named; a torn last write repaired with a log line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from raftstore.tools._local_cluster import Cluster, Node, wait_until
from raftstore.storage._segment_format import MAGIC

pytestmark = pytest.mark.integration


def _stopped_manager(cluster: Cluster, writes: int = 12) -> Node:
    node = cluster.add("m1")
    cluster.init(node)
    for i in range(writes):
        node.run("kv", "put", f"k{i}", f"value-{i}")
    node.stop()
    return node


def _start_fails(node: Node) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "raftstore", "daemon", "--data-dir", str(node.data_dir), "--listen-addr", node.addr],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr.decode()
    err = proc.stderr.decode().strip().splitlines()
    assert err[-1].startswith("Error: ") and "Traceback" not in proc.stderr.decode()
    return err[-1]


def _segments(node: Node) -> list[Path]:
    return sorted((node.data_dir / "raft" / "log").glob("*.seg"))


def test_flipped_bytes_in_log_records_refuse_start(cluster: Cluster) -> None:
    node = _stopped_manager(cluster)
    segment = max(_segments(node), key=lambda p: p.stat().st_size)
    original = segment.read_bytes()
    size = len(original)
    offsets = sorted({len(MAGIC) + 1, size // 4, size // 2, (3 * size) // 4, size - 30, size - 5, size - 1})
    for offset in offsets:
        damaged = bytearray(original)
        damaged[offset] ^= 0x20
        segment.write_bytes(bytes(damaged))
        message = _start_fails(node)
        assert str(segment) in message and "offset" in message, message
    segment.write_bytes(original)
    node.start()
    assert node.run("kv", "get", "k11").stdout == "value-11\n"


def test_torn_last_record_is_repaired_with_a_log_line(cluster: Cluster) -> None:
    node = _stopped_manager(cluster)
    segment = _segments(node)[-1]
    data = segment.read_bytes()
    segment.write_bytes(data[:-7])  # the last record, cut mid-way
    node.start()
    assert f"cut a torn write of" in node.log() and str(segment) in node.log()
    node.run("kv", "put", "after", "repair")
    assert node.run("kv", "get", "after").stdout == "repair\n"
    assert node.run("kv", "get", "k0").stdout == "value-0\n"


def test_damaged_snapshot_and_keyring_refuse_start(cluster: Cluster) -> None:
    node = cluster.add("m1")
    cluster.init(node)
    for i in range(5):
        node.run("kv", "put", f"k{i}", "v")
    node.run("update", "--autolock=true")  # rotates the DEK and writes a snapshot under it
    wait_until(lambda: (node.data_dir / "raft" / "snapshot").exists(), what="snapshot")
    node.run("update", "--autolock=false")
    node.stop()
    for name in ("raft/snapshot", "keys/keyring"):
        path = node.data_dir / name
        original = path.read_bytes()
        damaged = bytearray(original)
        damaged[len(damaged) // 2] ^= 0x01
        path.write_bytes(bytes(damaged))
        message = _start_fails(node)
        assert str(path) in message, message
        path.write_bytes(original)
    node.start()
    assert node.run("kv", "get", "k4").stdout == "v\n"
