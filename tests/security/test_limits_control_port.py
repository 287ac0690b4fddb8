"""Strangers on the remote control API's TCP port (``daemon -H tcp://...``).

Finding 10 of issue 11: the control listener started a thread per connection
with no cap; 1,000 idle connections made 545 threads. Connections that have
not yet shown who they are now share a small capped pool (the longest idle one
is evicted for a newcomer), under one deadline, so threads stay bounded and a
real client still gets through.
"""

from __future__ import annotations

import os
import resource
import socket
import ssl
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from raftstore.net._frames import read_frame, write_frame
from raftstore.tools._local_cluster import Cluster, Node, free_port
from raftstore.keyring import MANAGER_ROLE, create_root_ca, generate_private_key, issue_certificate, make_csr, new_id

pytestmark = pytest.mark.integration

IDLE_CONNECTIONS = 1000
#: Threads a daemon may add while strangers crowd its control port: the pool's caps, with room to spare.
THREAD_ALLOWANCE = 100


def _tls_files(directory: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for the daemon and a client certificate, as files."""
    now = datetime.now(timezone.utc)
    root = create_root_ca(now)
    files = {"ca": directory / "ca.pem"}
    files["ca"].write_bytes(root.cert_pem)
    cluster_id = new_id()
    for name in ("server", "client"):
        key = generate_private_key()
        chain = issue_certificate(root, make_csr(key), node_id=new_id(), cluster_id=cluster_id, role=MANAGER_ROLE,
                                  now=now, validity=timedelta(hours=2))
        files[f"{name}-cert"] = directory / f"{name}-cert.pem"
        files[f"{name}-key"] = directory / f"{name}-key.pem"
        files[f"{name}-cert"].write_bytes(chain)
        files[f"{name}-key"].write_bytes(key)
        os.chmod(files[f"{name}-key"], 0o600)
    return files


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


@pytest.fixture
def remote(cluster: Cluster, tmp_path: Path) -> tuple[Node, int, dict[str, Path]]:
    files = _tls_files(tmp_path)
    port = free_port()
    node = cluster.add("m1", extra=["-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", str(files["ca"]),
                                    "--tlscert", str(files["server-cert"]), "--tlskey", str(files["server-key"])])
    cluster.init(node)
    return node, port, files


def test_a_thousand_idle_connections_do_not_make_a_thousand_threads(remote: tuple[Node, int, dict[str, Path]]) -> None:
    node, port, files = remote
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < IDLE_CONNECTIONS + 100:
        if hard != resource.RLIM_INFINITY and hard < IDLE_CONNECTIONS + 100:
            pytest.skip(f"{IDLE_CONNECTIONS} connections need more open files than the hard limit of {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (IDLE_CONNECTIONS + 100, hard))
    assert node.process is not None
    pid = node.process.pid
    baseline = _threads(pid)
    idle: list[socket.socket] = []
    peak = baseline
    try:
        for _ in range(IDLE_CONNECTIONS):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            if len(idle) % 50 == 0:
                peak = max(peak, _threads(pid))
        end = time.monotonic() + 2.0  # bounded: watch the daemon take in the last of them
        while time.monotonic() < end:
            peak = max(peak, _threads(pid))
            time.sleep(0.05)
        # A real client still gets through the crowd: its handshake completes and a request is answered.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.load_verify_locations(str(files["ca"]))
        context.load_cert_chain(str(files["client-cert"]), str(files["client-key"]))
        with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10)) as sock:
            write_frame(sock, {"method": "ping", "params": {}})
            assert isinstance(read_frame(sock), dict)
    finally:
        for sock in idle:
            sock.close()
    assert peak - baseline <= THREAD_ALLOWANCE, f"{IDLE_CONNECTIONS} idle connections took the daemon from " \
                                                f"{baseline} to {peak} threads"
    assert node.run("kv", "put", "after", "crowd").returncode == 0
