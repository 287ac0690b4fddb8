"""Client of the node-to-manager API on a manager's cluster port.

Every connection verifies that the server is a manager: with the cluster's
roots it checks the chain and OU swarm-manager (and O, once the cluster id is
known). The single exception is ``fetch_root_ca``, which runs before the
client knows the cluster's roots; its caller must compare the result with the
digest in the join token before trusting anything else. Until then the server
is a stranger: its reply gets ``STRANGER_FRAME_BYTES`` (a root CA is a few
KiB) and the whole exchange one deadline.
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any, Callable, Iterable, TypeVar

from ..keyring import MANAGER_ROLE, CertificateIdentity, ProtocolError, RaftstoreError, Unavailable
from ._addresses import split_host_port
from ._frames import MAX_FRAME_BYTES, STRANGER_FRAME_BYTES, raise_for_reply, read_frame, write_frame
from ._tls import TlsIdentity, client_context, peer_identity

__all__ = ["ClusterClient", "fetch_root_ca", "try_each_manager"]

API_CHANNEL = "api"

T = TypeVar("T")


def _connect(address: str, context: ssl.SSLContext, timeout: float, deadline: float | None = None) -> ssl.SSLSocket:
    host, port = split_host_port(address)
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError as error:
        raise Unavailable(f"cannot reach manager at {address}: {error.strerror or error}") from None
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = context.wrap_socket(raw, server_side=False)
        write_frame(sock, {"channel": API_CHANNEL})
        hello = read_frame(sock, 4096, deadline)
    except ssl.SSLError as error:
        raw.close()
        raise Unavailable(f"TLS handshake with {address} failed: {error.reason or error}") from None
    except (OSError, ConnectionError) as error:
        raw.close()
        raise Unavailable(f"connection to {address} failed: {error}") from None
    if not isinstance(hello, dict) or not hello.get("ok"):
        sock.close()
        raise Unavailable(f"{address} refused the API channel")
    return sock


def _call(
    sock: ssl.SSLSocket,
    address: str,
    method: str,
    params: dict[str, Any],
    max_bytes: int = MAX_FRAME_BYTES,
    deadline: float | None = None,
) -> Any:
    try:
        write_frame(sock, {"method": method, "params": params})
        reply = read_frame(sock, max_bytes, deadline)
    except (OSError, ConnectionError) as error:
        raise Unavailable(f"connection to {address} failed: {error}") from None
    return raise_for_reply(reply, address).get("result")


def fetch_root_ca(address: str, timeout: float = 10.0) -> bytes:
    """The manager's root CA bundle, fetched WITHOUT verifying the server (so: small reply, one deadline).

    Raises:
        Unavailable: unreachable, or no answer by ``timeout``.
        ProtocolError: a reply over ``STRANGER_FRAME_BYTES``, or not a CA bundle.
    """
    deadline = time.monotonic() + timeout
    sock = _connect(address, client_context(None, None), timeout, deadline)
    try:
        result = _call(sock, address, "ca.get", {}, STRANGER_FRAME_BYTES, deadline)
    finally:
        sock.close()
    if not isinstance(result, dict) or not isinstance(result.get("root_ca_pem"), bytes):
        raise ProtocolError(f"malformed CA bundle from {address}")
    return result["root_ca_pem"]


class ClusterClient:
    """A verified connection to one manager; use as a context manager."""

    def __init__(
        self,
        address: str,
        *,
        trusted_roots_pem: bytes,
        identity: TlsIdentity | None = None,
        cluster_id: str | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.address = address
        context = client_context(identity, trusted_roots_pem)
        self._sock = _connect(address, context, timeout)
        server = peer_identity(self._sock)
        if server is None or server.role != MANAGER_ROLE or (cluster_id and server.cluster_id != cluster_id):
            self._sock.close()
            raise Unavailable(f"{address} is not a manager of this cluster")
        self.server: CertificateIdentity = server

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return _call(self._sock, self.address, method, params or {})

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "ClusterClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def call_any_manager_anonymous(
    addresses: list[str],
    method: str,
    params: dict[str, Any],
    *,
    trusted_roots_pem: bytes,
    cluster_id: str | None,
    timeout: float = 15.0,
) -> Any:
    """As ``call_any_manager``, presenting no client certificate (the server is still verified)."""
    return call_any_manager(
        addresses, method, params, trusted_roots_pem=trusted_roots_pem, identity=None, cluster_id=cluster_id,
        timeout=timeout,
    )


def call_any_manager(
    addresses: list[str],
    method: str,
    params: dict[str, Any],
    *,
    trusted_roots_pem: bytes,
    identity: TlsIdentity | None,
    cluster_id: str | None,
    timeout: float = 15.0,
) -> Any:
    """Try each manager in turn; errors other than unreachability are final."""

    def call(address: str) -> Any:
        with ClusterClient(
            address, trusted_roots_pem=trusted_roots_pem, identity=identity, cluster_id=cluster_id, timeout=timeout
        ) as client:
            return client.call(method, params)

    return try_each_manager(addresses, call)


def try_each_manager(
    addresses: Iterable[str],
    attempt: Callable[[str], T],
    *,
    move_on: type[RaftstoreError] = Unavailable,
    none_known: str = "no manager address is known",
) -> T:
    """The first answer of ``attempt(address)`` for each manager in turn.

    An error of the ``move_on`` kind tries the next address (by default only
    unreachability: a refusal from one manager is the cluster's answer); any
    other error is final. When every address failed, the last error is
    raised, and with no address at all ``Unavailable(none_known)``.
    """
    last: RaftstoreError = Unavailable(none_known)
    for address in addresses:
        try:
            return attempt(address)
        except move_on as error:
            last = error
    raise last


__all__ += ["call_any_manager", "call_any_manager_anonymous", "try_each_manager"]
