"""What an attacker holds and how it talks: raw TLS to a daemon's ports, no CLI in between.

The tests in ``test_authz_*.py`` use these helpers so that what they prove does
not depend on the CLI's own checks (which another part of issue 11 tightens).
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Any

from cryptography import x509

from raftstore.net._frames import read_frame, write_frame
from raftstore.tools._local_cluster import Node
from raftstore.net._tls import TlsIdentity, client_context


def node_identity(node: Node) -> TlsIdentity:
    """A copy of the node's certificate, key and roots as they are on its disk right now."""
    certs = node.data_dir / "certificates"
    return TlsIdentity((certs / "swarm-node.crt").read_bytes(), (certs / "swarm-node.key").read_bytes(),
                       (certs / "swarm-root-ca.crt").read_bytes())


def files_identity(directory: Path) -> TlsIdentity:
    """The ca.pem/cert.pem/key.pem set that ``raftstore ca issue-client --out`` writes."""
    return TlsIdentity((directory / "cert.pem").read_bytes(), (directory / "key.pem").read_bytes(),
                       (directory / "ca.pem").read_bytes())


def serial_of(chain_pem: bytes) -> str:
    return format(x509.load_pem_x509_certificate(chain_pem).serial_number, "x")


def _connect(port: int, identity: TlsIdentity | None, roots: bytes | None) -> ssl.SSLSocket:
    context = client_context(identity, roots)
    raw = socket.create_connection(("127.0.0.1", port), timeout=15)
    return context.wrap_socket(raw)


def cluster_api(node: Node, identity: TlsIdentity | None) -> ssl.SSLSocket:
    """An API-channel connection to ``node``'s cluster port (the server is not verified: attackers don't care)."""
    sock = _connect(node.port, identity, None)
    write_frame(sock, {"channel": "api"})
    assert read_frame(sock)["ok"]
    return sock


def call(sock: ssl.SSLSocket, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    write_frame(sock, {"method": method, "params": params or {}})
    return read_frame(sock)


def raft_channel(node: Node, identity: TlsIdentity) -> dict[str, Any]:
    with _connect(node.port, identity, None) as sock:
        write_frame(sock, {"channel": "raft"})
        return read_frame(sock)


def control_call(port: int, identity: TlsIdentity, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """One request on a daemon's remote control API (``-H tcp://... --tlsverify``), presenting ``identity``."""
    try:
        with _connect(port, identity, None) as sock:
            write_frame(sock, {"method": method, "params": params or {}})
            return read_frame(sock)
    except (OSError, ConnectionError) as error:  # refused during or right after the handshake
        return {"ok": False, "error": {"code": "ConnectionError", "message": str(error)}}
