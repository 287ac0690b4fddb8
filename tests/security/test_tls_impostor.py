"""Finding 5, from the attacker's side: a fake daemon waits for the operator's CLI.

Anyone holding the worker join token can get a certificate from the cluster CA,
and a removed or demoted manager keeps one. An impostor that presents such a
certificate on an address the operator dials must receive nothing: not the
unlock key, not a request frame, not one byte after the handshake.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from raftstore.tools._local_cluster import Cluster, Node, free_port

pytestmark = pytest.mark.integration


@dataclass
class FakeDaemon:
    """A TLS server on 127.0.0.1 that presents a stolen certificate and records what arrives."""

    cert: Path
    key: Path
    port: int = field(default_factory=free_port)
    received: bytearray = field(default_factory=bytearray)
    handshakes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> "FakeDaemon":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.2)
        self._thread = threading.Thread(target=self._serve, args=(context,), daemon=True)
        self._thread.start()
        return self

    def _serve(self, context: ssl.SSLContext) -> None:
        for _ in range(50):  # bounded: a few CLI runs at most
            if self._stop.is_set():
                return
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    tls = context.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    continue  # the client walked away during the handshake: nothing sent
                self.handshakes += 1
                try:
                    while len(self.received) < 1 << 20:
                        chunk = tls.recv(65536)
                        if not chunk:
                            break
                        self.received += chunk
                except (ssl.SSLError, OSError):
                    pass

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._listener.close()


def _raftstore(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raftstore", *args], input=input, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "RAFTSTORE_HOST": ""})


def _tls_args(host: str, port: int, client: Path) -> list[str]:
    return ["-H", f"tcp://{host}:{port}", "--tlsverify", "--tlscacert", str(client / "ca.pem"),
            "--tlscert", str(client / "cert.pem"), "--tlskey", str(client / "key.pem")]


@pytest.fixture
def swarm(cluster: Cluster, tmp_path: Path) -> tuple[Node, Node, str, Path]:
    """A locked-capable manager, a worker, the unlock key, and an operator's client certificate set."""
    m1, w1 = cluster.add("m1"), cluster.add("w1")
    cluster.init(m1, "--autolock")
    cluster.join(w1, m1, "worker")
    unlock_key = m1.run("unlock-key", "-q").stdout.strip()
    client = tmp_path / "operator"
    m1.run("ca", "issue-client", "--out", str(client))
    return m1, w1, unlock_key, client


def _certificate_of(node: Node) -> tuple[Path, Path]:
    return node.data_dir / "certificates" / "swarm-node.crt", node.data_dir / "certificates" / "swarm-node.key"


def test_impostor_with_a_workers_certificate_gets_nothing(swarm: tuple[Node, Node, str, Path]) -> None:
    _, w1, unlock_key, client = swarm
    with FakeDaemon(*_certificate_of(w1)) as fake:
        result = _raftstore(*_tls_args("127.0.0.1", fake.port, client), "unlock", input=unlock_key + "\n")
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert bytes(fake.received) == b"", "the impostor received a request"
    assert unlock_key.split("-")[-1].encode() not in fake.received


def test_impostor_with_a_certificate_for_another_name_gets_nothing(cluster: Cluster, tmp_path: Path) -> None:
    """A manager's own node certificate (serverAuth, for the cluster port, naming no host) and a daemon
    certificate for other names both fail on the address dialled."""
    m1 = cluster.add("m1")
    cluster.init(m1)  # no autolock: the manager's key is plain PEM, as a removed manager's disk would hold it
    client, other = tmp_path / "operator", tmp_path / "other-daemon"
    m1.run("ca", "issue-client", "--out", str(client))
    m1.run("ca", "issue-server", "--san", "daemon.example", "--san", "10.9.8.7", "--out", str(other))
    for cert, key in (_certificate_of(m1), (other / "cert.pem", other / "key.pem")):
        with FakeDaemon(cert, key) as fake:
            result = _raftstore(*_tls_args("127.0.0.1", fake.port, client), "unlock", input="SWMKEY-1-" + "A" * 43)
        assert result.returncode == 1 and result.stderr.startswith("Error: "), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert bytes(fake.received) == b"", f"the impostor with {cert.name} received a request"


def test_daemon_named_by_its_certificate_is_reached(swarm: tuple[Node, Node, str, Path], tmp_path: Path) -> None:
    """The genuine daemon, with a certificate from ``ca issue-server`` for the name dialled, answers."""
    m1, _, _, client = swarm
    server = tmp_path / "server"
    help_text = m1.run("ca", "issue-server", "--help").stdout
    assert "--san" in help_text and "Example" in help_text
    m1.run("ca", "issue-server", "--san", "localhost", "--san", "127.0.0.1", "--out", str(server))
    assert (server / "key.pem").stat().st_mode & 0o777 == 0o600
    port = free_port()
    m1.stop()
    m1.start(["-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", str(server / "ca.pem"),
              "--tlscert", str(server / "cert.pem"), "--tlskey", str(server / "key.pem")])
    for host in ("127.0.0.1", "localhost"):
        ok = _raftstore(*_tls_args(host, port, client), "info", "--format", "json")
        assert ok.returncode == 0, (host, ok.stderr)
    # A daemon certificate is not a client certificate: it has no clientAuth.
    refused = _raftstore("-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", str(server / "ca.pem"),
                         "--tlscert", str(server / "cert.pem"), "--tlskey", str(server / "key.pem"), "info")
    assert refused.returncode == 1 and refused.stderr.startswith("Error: "), refused.stderr
