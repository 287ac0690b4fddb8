"""Two daemons on one data directory: the second must not take over the first one's control socket.

Finding 10 of issue 11: nothing locked the data directory, so a second
``raftstore daemon --data-dir D`` replaced the running daemon's socket and
served it with its own (second) copy of the node. The running daemon now holds
an exclusive lock on the directory for its whole life; a second one stops
with one line naming the directory.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from raftstore.tools._local_cluster import RAFTSTORE, Cluster, free_port

pytestmark = pytest.mark.integration


def test_a_second_daemon_on_the_same_data_dir_stops_with_one_line(cluster: Cluster) -> None:
    first = cluster.add("m1")
    cluster.init(first)
    first.run("kv", "put", "owner", "first")
    socket_inode = os.stat(first.data_dir / "raftstore.sock").st_ino
    second = subprocess.Popen(
        RAFTSTORE + ["daemon", "--data-dir", str(first.data_dir), "--listen-addr", f"127.0.0.1:{free_port()}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _, stderr = second.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        second.kill()
        second.communicate()
        pytest.fail("a second daemon on the same data directory kept running")
    assert second.returncode == 1
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and str(first.data_dir) in lines[0], stderr
    assert os.stat(first.data_dir / "raftstore.sock").st_ino == socket_inode
    assert first.run("kv", "get", "owner").stdout == "first\n"
    # The lock goes with the process: once the first daemon is gone, the directory can be served again.
    first.stop()
    first.start()
    assert first.run("kv", "get", "owner").stdout == "first\n"
