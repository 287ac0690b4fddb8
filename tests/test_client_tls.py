"""raftstore.Client over TLS, from the hostile side: a server that is not who it claims receives nothing.

The checks are ControlClient's (chain, host name, a daemon's certificate and
not a node's); these tests make sure the Client goes through them, refuses
without failing over to the next endpoint (an impostor is a fact to report,
not an outage to route around), and still reaches the genuine daemon.
"""

from __future__ import annotations

import socket
import ssl
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from raftstore import Client, InvalidArgument, PermissionDenied, tls_context
from raftstore.keyring import (
    CLIENT_ROLE,
    MANAGER_ROLE,
    RootCA,
    create_root_ca,
    generate_private_key,
    issue_certificate,
    issue_daemon_certificate,
    make_csr,
    new_id,
)
from raftstore.net._frames import read_frame, write_frame

NOW = datetime.now(timezone.utc)  # ssl checks validity against the real clock
CLUSTER = new_id()
HOUR = timedelta(hours=2)


def _daemon_cert(ca: RootCA, hosts: list[str]) -> tuple[bytes, bytes]:
    key = generate_private_key()
    return issue_daemon_certificate(ca, make_csr(key), name="api", cluster_id=CLUSTER, hosts=hosts, now=NOW,
                                    validity=HOUR), key


def _node_cert(ca: RootCA, role: str, node_id: str) -> tuple[bytes, bytes]:
    key = generate_private_key()
    return issue_certificate(ca, make_csr(key), node_id=node_id, cluster_id=CLUSTER, role=role, now=NOW,
                             validity=HOUR), key


class FakeTLSDaemon:
    """A TLS server on 127.0.0.1 presenting a given certificate; records every byte after the handshake and
    answers each frame (so that the genuine case shows the path works)."""

    def __init__(self, tmp_path: Path, cert: bytes, key: bytes) -> None:
        name = new_id()
        (tmp_path / f"{name}.pem").write_bytes(cert)
        (tmp_path / f"{name}.key").write_bytes(key)
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(tmp_path / f"{name}.pem", tmp_path / f"{name}.key")
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.received = bytearray()
        self.handshakes = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    tls = self._context.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    continue  # the client walked away during the handshake: nothing was sent
                self.handshakes += 1
                try:
                    while True:
                        request = read_frame(tls)
                        self.received += repr(request).encode()
                        write_frame(tls, {"ok": True, "result": {"answered": request["method"]}})
                except Exception:
                    pass

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, object]:
    """The cluster CA, an admin client certificate set on disk (as ca issue-client writes it), a stranger CA."""
    ca, stranger = create_root_ca(NOW), create_root_ca(NOW)
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    cert, key = _node_cert(ca, CLIENT_ROLE, "client-1")
    (client_dir / "ca.pem").write_bytes(ca.cert_pem)
    (client_dir / "cert.pem").write_bytes(cert)
    (client_dir / "key.pem").write_bytes(key)
    return {"ca": ca, "stranger": stranger, "tls": tls_context(client_dir / "ca.pem", client_dir / "cert.pem",
                                                                client_dir / "key.pem")}


def _impostors(pki: dict[str, object]) -> dict[str, tuple[bytes, bytes]]:
    ca, stranger = pki["ca"], pki["stranger"]
    assert isinstance(ca, RootCA) and isinstance(stranger, RootCA)
    return {
        "a daemon certificate from another CA": _daemon_cert(stranger, ["127.0.0.1", "localhost"]),
        "a daemon certificate for other names": _daemon_cert(ca, ["api.example.com", "10.9.8.7"]),
        # A manager's node certificate states serverAuth; named for the host dialled, only the
        # daemon-certificate check stands between it and the request.
        "a manager's node certificate naming the host": _node_cert(ca, MANAGER_ROLE, "localhost"),
    }


@pytest.mark.parametrize("impostor", ["a daemon certificate from another CA", "a daemon certificate for other names",
                                      "a manager's node certificate naming the host"])
def test_an_impostor_receives_nothing_and_the_next_endpoint_is_not_tried(
        tmp_path: Path, pki: dict[str, object], impostor: str) -> None:
    ca = pki["ca"]
    assert isinstance(ca, RootCA)
    fake = FakeTLSDaemon(tmp_path, *_impostors(pki)[impostor])
    genuine = FakeTLSDaemon(tmp_path, *_daemon_cert(ca, ["localhost"]))
    tls = pki["tls"]
    assert isinstance(tls, ssl.SSLContext)
    try:
        with Client([f"tcp://localhost:{fake.port}", f"tcp://localhost:{genuine.port}"], tls=tls) as client:
            with pytest.raises(PermissionDenied) as refused:
                client.put("k", b"the payload")
            assert "failed verification, nothing was sent" in str(refused.value)
            if "node certificate" in impostor:  # the chain and the name pass; the kind does not
                assert "is not a daemon's" in str(refused.value)
            with pytest.raises(PermissionDenied):
                next(client.watch("k"))
        assert bytes(fake.received) == b"", f"{impostor}: the impostor received a request"
        assert genuine.handshakes == 0 and bytes(genuine.received) == b""
    finally:
        fake.close()
        genuine.close()


def test_the_genuine_daemon_is_reached(tmp_path: Path, pki: dict[str, object]) -> None:
    ca, tls = pki["ca"], pki["tls"]
    assert isinstance(ca, RootCA) and isinstance(tls, ssl.SSLContext)
    genuine = FakeTLSDaemon(tmp_path, *_daemon_cert(ca, ["127.0.0.1"]))
    try:
        with Client(f"tcp://127.0.0.1:{genuine.port}", tls=tls) as client:
            assert client.call("ping") == {"answered": "ping"}
        assert b"ping" in genuine.received
    finally:
        genuine.close()


def test_tls_context_checks_its_files(tmp_path: Path, pki: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument, match="cannot load TLS files"):
        tls_context(tmp_path / "missing.pem")
    with pytest.raises(InvalidArgument, match="go together"):
        tls_context(tmp_path / "client" / "ca.pem", cert=tmp_path / "client" / "cert.pem")
    context = tls_context(tmp_path / "client" / "ca.pem")
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
