"""Our certificates as OpenSSL sees them: mutual TLS handshakes in memory (ssl + MemoryBIO).

verify_certificate_chain is our reading of the chain rules; this is the one
that matters on the wire, including the cross-signed root during a rotation.
"""

from __future__ import annotations

import ssl
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from raftstore.keyring import (
    CLIENT_ROLE,
    MANAGER_ROLE,
    WORKER_ROLE,
    RootCA,
    create_root_ca,
    cross_sign,
    generate_private_key,
    issue_certificate,
    issue_daemon_certificate,
    make_csr,
    new_id,
)

# ssl checks validity against the real clock, so these certificates are made for it.
NOW = datetime.now(timezone.utc)
CLUSTER = new_id()


class Node:
    def __init__(self, tmp_path: Path, ca: RootCA, role: str, intermediates: bytes = b"", validity: timedelta = timedelta(hours=2),
                 now: datetime = NOW) -> None:
        key = generate_private_key()
        chain = issue_certificate(ca, make_csr(key), node_id=new_id(), cluster_id=CLUSTER, role=role, now=now,
                                  validity=validity, intermediates_pem=intermediates)
        self._write(tmp_path, chain, key)

    def _write(self, tmp_path: Path, chain: bytes, key: bytes) -> None:
        self.cert_file, self.key_file = tmp_path / f"{new_id()}.pem", tmp_path / f"{new_id()}.key"
        self.cert_file.write_bytes(chain)
        self.key_file.write_bytes(key)

    def context(self, server: bool, trusted: bytes) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_cert_chain(self.cert_file, self.key_file)
        context.load_verify_locations(cadata=trusted.decode())
        return context


class Daemon(Node):
    """A remote control API's server certificate (``ca issue-server``)."""

    def __init__(self, tmp_path: Path, ca: RootCA, hosts: list[str]) -> None:
        key = generate_private_key()
        chain = issue_daemon_certificate(ca, make_csr(key), name="api", cluster_id=CLUSTER, hosts=hosts, now=NOW,
                                         validity=timedelta(hours=2))
        self._write(tmp_path, chain, key)


def handshake(client: Node, client_trusts: bytes, server: Node, server_trusts: bytes,
              hostname: str | None = MANAGER_ROLE) -> bool:
    """Run a full mutual-TLS handshake and one round trip in memory; False if either side refuses.

    ``hostname=None`` is the cluster port's client: no name check, only the chain and the usages.
    """
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client_context = client.context(False, client_trusts)
    if hostname is None:
        client_context.check_hostname = False
    c = client_context.wrap_bio(c_in, c_out, server_hostname=hostname)
    s = server.context(True, server_trusts).wrap_bio(s_in, s_out, server_side=True)
    try:
        done = [False, False]
        for _ in range(10):
            for i, side in enumerate((c, s)):
                if not done[i]:
                    try:
                        side.do_handshake()
                        done[i] = True
                    except ssl.SSLWantReadError:
                        pass
            s_in.write(c_out.read())
            c_in.write(s_out.read())
            if all(done):
                break
        # With TLS 1.3 the server judges the client's certificate after the
        # client has finished, so exchange data to hear the verdict.
        c.write(b"ping")
        s_in.write(c_out.read())
        assert s.read(4) == b"ping"
        s.write(b"pong")
        c_in.write(s_out.read())
        return c.read(4) == b"pong"
    except ssl.SSLError:
        return False


@pytest.fixture(scope="module")
def roots() -> tuple[RootCA, RootCA, RootCA]:
    return create_root_ca(NOW), create_root_ca(NOW), create_root_ca(NOW)


def test_managers_and_workers_handshake(tmp_path: Path, roots: tuple[RootCA, RootCA, RootCA]) -> None:
    root = roots[0]
    manager, worker = Node(tmp_path, root, MANAGER_ROLE), Node(tmp_path, root, WORKER_ROLE)
    assert handshake(worker, root.cert_pem, manager, root.cert_pem)
    assert handshake(worker, root.cert_pem, manager, root.cert_pem, hostname="swarm-ca")
    assert not handshake(worker, root.cert_pem, manager, root.cert_pem, hostname="example.com")
    # A worker's certificate does not name swarm-manager: it cannot pose as a manager.
    assert not handshake(manager, root.cert_pem, worker, root.cert_pem, hostname=MANAGER_ROLE)
    # Nor as any server, not even under its own name: a worker's certificate has no serverAuth.
    assert not handshake(manager, root.cert_pem, worker, root.cert_pem, hostname=WORKER_ROLE)
    # The cluster port names no host: managers find each other by certificate, not by name.
    assert handshake(manager, root.cert_pem, Node(tmp_path, root, MANAGER_ROLE), root.cert_pem, hostname=None)


def test_daemon_certificates_serve_and_never_connect(tmp_path: Path, roots: tuple[RootCA, RootCA, RootCA]) -> None:
    """``ca issue-server``: serverAuth for the names given, and nothing else; API clients only connect."""
    root = roots[0]
    daemon = Daemon(tmp_path, root, ["daemon.example", "127.0.0.1"])
    client = Node(tmp_path, root, CLIENT_ROLE)
    assert handshake(client, root.cert_pem, daemon, root.cert_pem, hostname="daemon.example")
    assert handshake(client, root.cert_pem, daemon, root.cert_pem, hostname="127.0.0.1")
    assert not handshake(client, root.cert_pem, daemon, root.cert_pem, hostname="127.0.0.2")
    assert not handshake(daemon, root.cert_pem, Node(tmp_path, root, MANAGER_ROLE), root.cert_pem, hostname=None)
    assert not handshake(Node(tmp_path, root, MANAGER_ROLE), root.cert_pem, client, root.cert_pem, hostname=None)


def test_another_clusters_nodes_are_refused(tmp_path: Path, roots: tuple[RootCA, RootCA, RootCA]) -> None:
    ours, _, theirs = roots
    manager, stranger = Node(tmp_path, ours, MANAGER_ROLE), Node(tmp_path, theirs, WORKER_ROLE)
    assert not handshake(stranger, theirs.cert_pem, manager, ours.cert_pem)  # the server refuses the client
    assert not handshake(stranger, ours.cert_pem, manager, ours.cert_pem)
    assert not handshake(Node(tmp_path, ours, WORKER_ROLE), ours.cert_pem, Node(tmp_path, theirs, MANAGER_ROLE),
                         ours.cert_pem)  # the client refuses the server


def test_expired_certificates_are_refused(tmp_path: Path, roots: tuple[RootCA, RootCA, RootCA]) -> None:
    root = roots[0]
    expired = Node(tmp_path, root, WORKER_ROLE, validity=timedelta(hours=1), now=NOW - timedelta(hours=3))
    assert not handshake(expired, root.cert_pem, Node(tmp_path, root, MANAGER_ROLE), root.cert_pem)


def test_ca_rotation_through_the_cross_signed_root(tmp_path: Path, roots: tuple[RootCA, RootCA, RootCA]) -> None:
    old, new, _ = roots
    bridge = cross_sign(old, new.cert_pem, NOW)
    renewed_manager = Node(tmp_path, new, MANAGER_ROLE, intermediates=bridge)
    renewed_worker = Node(tmp_path, new, WORKER_ROLE, intermediates=bridge)
    old_worker = Node(tmp_path, old, WORKER_ROLE)
    both = old.cert_pem + new.cert_pem
    # A node that still trusts only the old root accepts a renewed peer via the bridge...
    assert handshake(old_worker, old.cert_pem, renewed_manager, both)
    assert handshake(renewed_worker, both, Node(tmp_path, old, MANAGER_ROLE), old.cert_pem)
    # ...and one that already trusts only the new root accepts it directly.
    assert handshake(renewed_worker, new.cert_pem, renewed_manager, new.cert_pem)
    # Without the bridge, the old root alone does not know the new certificates.
    assert not handshake(old_worker, old.cert_pem, Node(tmp_path, new, MANAGER_ROLE), both)
    # After the rotation, certificates of the old root are refused.
    assert not handshake(old_worker, both, renewed_manager, new.cert_pem)
