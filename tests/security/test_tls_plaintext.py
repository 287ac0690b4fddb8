"""Finding 10, third bullet, from the attacker's side: plain TCP must be asked for.

A local user who finds the control API on a loopback TCP port bypasses the
0600 socket; certificate files given without --tlsverify must not leave the
port in plain text; and the CLI must not send requests in clear to a remote
host.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raftstore.net._frames import read_frame, write_frame
from raftstore.tools._local_cluster import Cluster, free_port

pytestmark = pytest.mark.integration


def _raftstore(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raftstore", *args], capture_output=True, text=True, input="",
                          timeout=timeout, env={**os.environ, "RAFTSTORE_HOST": ""})


def _plain_request(port: int, method: str) -> object:
    """What a local user gets by speaking the control protocol in plain text to the port."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        write_frame(sock, {"method": method, "params": {}})
        return read_frame(sock)


def _daemon_refuses(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    """Start a daemon with these flags; it must exit at once with one error line (killed after 15 s if not)."""
    proc = subprocess.Popen([sys.executable, "-m", "raftstore", "daemon", "--data-dir", str(tmp_path / "d"), *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_local_user_finds_no_plain_tcp_port_by_default(tmp_path: Path) -> None:
    port = free_port()
    result = _daemon_refuses(tmp_path, "-H", f"tcp://127.0.0.1:{port}")
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("Error: -H tcp://127.0.0.1") and "--insecure" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    with pytest.raises(OSError):
        _plain_request(port, "ping")


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7"])
def test_insecure_is_refused_off_loopback(tmp_path: Path, host: str) -> None:
    result = _daemon_refuses(tmp_path, "-H", f"tcp://{host}:2375", "--insecure")
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"Error: refusing to serve the control API in plain text on {host}:2375")


def test_insecure_loopback_is_asked_for_and_warned_about(cluster: Cluster) -> None:
    port = free_port()
    m1 = cluster.add("m1", extra=["-H", f"tcp://127.0.0.1:{port}", "--insecure"])
    cluster.init(m1)
    assert "in plain text (--insecure): every local user can control this node" in m1.log()
    ok = _raftstore("-H", f"tcp://127.0.0.1:{port}", "info", "--format", "json")
    assert ok.returncode == 0 and '"role": "manager"' in ok.stdout, ok.stderr


def test_certificate_files_turn_tls_on(cluster: Cluster, tmp_path: Path) -> None:
    """--tlscert/--tlskey without --tlsverify used to serve plain text in silence."""
    m1 = cluster.add("m1")
    cluster.init(m1)
    server, client = tmp_path / "server", tmp_path / "client"
    m1.run("ca", "issue-server", "--san", "127.0.0.1", "--out", str(server))
    m1.run("ca", "issue-client", "--out", str(client))
    port = free_port()
    m1.stop()
    m1.start(["-H", f"tcp://127.0.0.1:{port}", "--tlscert", str(server / "cert.pem"),
              "--tlskey", str(server / "key.pem"), "--tlscacert", str(server / "ca.pem")])
    assert "(TLS, client certificate optional)" in m1.log()
    reply = None
    try:
        reply = _plain_request(port, "join-token")
    except Exception:
        pass  # the TLS server hangs up on plain text
    assert not (isinstance(reply, dict) and reply.get("ok")), "plain text reached the control API"
    # The CLI without TLS options speaks plain text to loopback: it cannot reach a TLS daemon.
    plain = _raftstore("-H", f"tcp://127.0.0.1:{port}", "info", timeout=30)
    assert plain.returncode == 1 and plain.stderr.startswith("Error: "), plain.stderr
    ok = _raftstore("-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", str(client / "ca.pem"),
                    "--tlscert", str(client / "cert.pem"), "--tlskey", str(client / "key.pem"), "info")
    assert ok.returncode == 0, ok.stderr


def test_cli_sends_no_plain_text_off_loopback(tmp_path: Path) -> None:
    """No listener is needed: the CLI must refuse before it connects (192.0.2.0/24 routes nowhere)."""
    started = time.monotonic()
    result = _raftstore("-H", "tcp://192.0.2.1:2375", "unlock", timeout=30)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("Error: refusing to send requests in plain text to tcp://192.0.2.1:2375")
    assert time.monotonic() - started < 10
