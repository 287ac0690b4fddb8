"""Core dumps of a daemon that holds the DEK, the KEK, the CA key and the unlock key.

Finding 10 of issue 11: core dumps were on. The daemon now sets RLIMIT_CORE to
0 (soft and hard) and marks itself not dumpable at start-up, whatever limit it
inherited, and the systemd unit says LimitCORE=0 as well.
"""

from __future__ import annotations

import configparser
import os
import resource
import subprocess
from pathlib import Path

import pytest

from raftstore.tools._local_cluster import RAFTSTORE, Cluster, Node, free_port, wait_until

pytestmark = pytest.mark.integration

UNIT = Path(__file__).resolve().parents[2] / "contrib" / "raftstore.service"
NOGROUP = 65534


def _cores_on() -> None:
    """In the child: what an operator's shell with ``ulimit -c unlimited`` hands the daemon."""
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def _core_limit(pid: int) -> tuple[str, str]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            soft, hard = line.split()[4:6]
            return soft, hard
    raise AssertionError(f"no core limit in /proc/{pid}/limits")


@pytest.fixture
def daemon(cluster: Cluster, tmp_path: Path) -> Node:
    node = Node("m1", tmp_path / "m1", free_port(), tmp_path / "m1.log")
    cluster.nodes.append(node)  # torn down with the cluster
    with open(node.log_path, "ab") as log:
        # As root, run it with another group: the owner of /proc/PID/* then tells dumpable (its
        # own group) from not dumpable (root's), as it does for an unprivileged daemon's user.
        node.process = subprocess.Popen(
            RAFTSTORE + ["daemon", "--data-dir", str(node.data_dir), "--listen-addr", node.addr],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=_cores_on,
            group=NOGROUP if os.getuid() == 0 else None,
        )
    wait_until(lambda: node.run("info", check=False).returncode == 0, timeout=20, what="daemon up")
    cluster.init(node)
    return node


def test_the_daemon_turns_core_dumps_off(daemon: Node) -> None:
    assert daemon.process is not None
    pid = daemon.process.pid
    assert _core_limit(pid) == ("0", "0")
    owner = os.stat(f"/proc/{pid}")  # the directory keeps the process's own uid and gid
    status = os.stat(f"/proc/{pid}/status")  # its files turn root's when the process is not dumpable
    assert (owner.st_uid, owner.st_gid) != (0, 0), "cannot tell dumpable from not: the daemon runs as root:root"
    assert (status.st_uid, status.st_gid) == (0, 0), "the daemon is dumpable"
    # Still itself: its memfd TLS keys (/proc/self/fd) and its metrics' /proc/self reads keep working.
    assert daemon.run("kv", "put", "after", "dumpable").returncode == 0


def test_the_unit_sets_no_core_limit() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    assert parser["Service"].get("LimitCORE") == "0"
