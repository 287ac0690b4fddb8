"""Messages that help (issue 16): each error says what happened and what to do, and no more."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from raftstore import Timeout
from raftstore.tools._local_cluster import Cluster, free_port
from raftstore.manager._proposer import Proposer

pytestmark = pytest.mark.integration


def test_a_failed_cas_says_the_current_version(cluster: Cluster) -> None:
    m1 = cluster.add("m1")
    cluster.init(m1)
    m1.run("kv", "put", "k", "v1")
    version = m1.run("kv", "get", "k", "--format", "json").json["version"]
    stale = m1.run("kv", "cas", "k", "v2", "--version", str(version - 1), check=False)
    assert (stale.returncode, stale.stderr.strip()) == (
        1, f"Error: update out of sequence: expected version {version - 1}, the key is at version {version}")
    missing = m1.run("kv", "cas", "nothing-here", "v", "--version", "3", check=False)
    assert missing.stderr.strip() == ("Error: update out of sequence: expected version 3, "
                                      "the key does not exist (version 0)")
    gone = m1.run("kv", "rm", "k", "--version", str(version + 100), check=False)
    assert gone.stderr.strip().endswith(f"the key is at version {version}")
    assert m1.run("kv", "get", "k").stdout == "v1\n"


def test_unlock_without_input_says_no_key_was_given(cluster: Cluster) -> None:
    m1 = cluster.add("m1")
    cluster.init(m1, "--autolock")
    m1.stop()
    m1.start()
    with open(os.devnull, "rb") as nothing:
        result = subprocess.run([sys.executable, "-m", "raftstore", "-H", m1.host, "unlock"], stdin=nothing,
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: no unlock key was given"), result.stderr
    assert m1.info()["locked"]


def test_a_read_that_times_out_does_not_speak_of_writes() -> None:
    """A barrier that never commits (a leader that cannot replicate) against one that is a write."""
    # The leader takes the entry (its builder runs) and never replicates it.
    proposer = Proposer(submit=lambda payload, done: payload() if callable(payload) else None,
                        seal_entry=lambda data: data, clock=lambda: "now",
                        has_leader=lambda: True)
    try:
        with pytest.raises(Timeout) as read:
            proposer.barrier(timeout=0.2)
        assert "read" in str(read.value) and "applied" not in str(read.value) and "write" not in str(read.value)
        with pytest.raises(Timeout) as write:
            proposer.commit([{"op": "put", "key": "k", "value": b"v"}], timeout=0.2)
        assert "may or may not have been applied" in str(write.value)
    finally:
        proposer.close()


def test_a_tls_daemon_reached_without_tls_flags_gets_a_hint(cluster: Cluster, tmp_path: Path) -> None:
    m1 = cluster.add("m1")
    cluster.init(m1)
    server = tmp_path / "server"
    m1.run("ca", "issue-server", "--san", "127.0.0.1", "--out", str(server))
    port = free_port()
    m1.stop()
    m1.start(["-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscert", str(server / "cert.pem"),
              "--tlskey", str(server / "key.pem"), "--tlscacert", str(server / "ca.pem")])
    plain = subprocess.run([sys.executable, "-m", "raftstore", "-H", f"tcp://127.0.0.1:{port}", "info"],
                           capture_output=True, text=True, timeout=60,
                           env={k: v for k, v in os.environ.items() if not k.startswith("RAFTSTORE_")})
    assert plain.returncode == 1 and len(plain.stderr.strip().splitlines()) == 1, plain.stderr
    assert "--tlsverify" in plain.stderr and "TLS" in plain.stderr, plain.stderr
