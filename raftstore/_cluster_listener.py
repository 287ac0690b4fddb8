"""The cluster port (``--listen-addr``): Raft between managers and the node API.

One TLS port serves two channels, chosen by the first frame after the
handshake (as Swarm serves Raft and its dispatcher on 2377):

``raft``
    Manager-to-manager Raft traffic. The peer must present a certificate of
    this cluster with OU swarm-manager; ``on_raft`` then decides (is it a
    current member? was it removed?) and ``adopt_raft`` takes the socket over.

``api``
    Request/response frames ``{"method", "params"}`` → ``{"ok", "result"}``
    or ``{"ok": false, "error": {"code", "message"}}``. A client without a
    certificate may only fetch the root CA and join; everything else needs a
    certificate of this cluster, as the node API's table declares (see
    ``_authz``). Handlers learn the peer's address (joins are rate-limited by it).

Handshakes and requests run on a thread per connection (bounded), never on the
Raft tick thread, so a slow or hostile client cannot stall replication.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any, Callable

from ._frames import error_reply, read_frame, write_frame
from ._node_state import listen_tcp
from ._tls import peer_identity
from .keyring import CertificateIdentity, ProtocolError, RaftstoreError

__all__ = ["ClusterListener", "API_CHANNEL", "RAFT_CHANNEL"]

API_CHANNEL = "api"
RAFT_CHANNEL = "raft"

RaftCheck = Callable[[CertificateIdentity], str | None]
RaftAdopt = Callable[[ssl.SSLSocket, CertificateIdentity], None]
ApiHandler = Callable[[CertificateIdentity | None, str, dict[str, Any], str | None], Any]


class ClusterListener:
    def __init__(
        self,
        address: str,
        *,
        server_context: Callable[[], ssl.SSLContext],
        check_raft: RaftCheck,
        adopt_raft: RaftAdopt,
        on_api: ApiHandler,
        log: Callable[[str], None],
        max_connections: int = 256,
        handshake_timeout: float = 5.0,
        idle_timeout: float = 300.0,
    ) -> None:
        self.address = address
        self._server_context = server_context
        self._check_raft = check_raft
        self._adopt_raft = adopt_raft
        self._on_api = on_api
        self._log = log
        self._slots = threading.BoundedSemaphore(max_connections)
        self._handshake_timeout = handshake_timeout
        self._idle_timeout = idle_timeout
        self._sock: socket.socket | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._sock = listen_tcp(self.address, backlog=128)
        self._thread = threading.Thread(target=self._accept_loop, name="cluster-listener", daemon=True)
        self._thread.start()

    @property
    def bound_port(self) -> int:
        assert self._sock is not None
        return int(self._sock.getsockname()[1])

    def stop(self) -> None:
        self._stopping.set()
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
        if self._thread is not None:
            self._thread.join(2)

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                raw, _ = self._sock.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                continue
            if not self._slots.acquire(blocking=False):
                raw.close()  # too many connections: refuse rather than queue
                continue
            threading.Thread(target=self._serve, args=(raw,), name="cluster-conn", daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        adopted = False
        sock: ssl.SSLSocket | None = None
        try:
            raw.settimeout(self._handshake_timeout)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock = self._server_context().wrap_socket(raw, server_side=True)
            identity = peer_identity(sock)
            hello = read_frame(sock, 4096)
            channel = hello.get("channel") if isinstance(hello, dict) else None
            if channel == RAFT_CHANNEL:
                adopted = self._serve_raft(sock, identity)
            elif channel == API_CHANNEL:
                write_frame(sock, {"ok": True})
                self._serve_api(sock, identity)
            else:
                write_frame(sock, {"ok": False, "error": "unknown channel"})
        except (OSError, ssl.SSLError, ConnectionError, ProtocolError, ValueError):
            pass  # handshake failures and disconnects are the client's problem
        finally:
            if not adopted:
                (sock or raw).close()
            self._slots.release()

    def _serve_raft(self, sock: ssl.SSLSocket, identity: CertificateIdentity | None) -> bool:
        if identity is None:
            write_frame(sock, {"ok": False, "error": "a manager certificate is required"})
            return False
        refusal = self._check_raft(identity)
        if refusal is not None:
            write_frame(sock, {"ok": False, "error": refusal})
            return False
        write_frame(sock, {"ok": True})
        sock.settimeout(None)
        self._adopt_raft(sock, identity)
        return True

    def _serve_api(self, sock: ssl.SSLSocket, identity: CertificateIdentity | None) -> None:
        sock.settimeout(self._idle_timeout)
        address = sock.getpeername()[0]  # the handler rate-limits unauthenticated joins per source address
        while not self._stopping.is_set():
            try:
                request = read_frame(sock)
            except (ConnectionError, socket.timeout):
                return
            if not isinstance(request, dict) or not isinstance(request.get("method"), str):
                write_frame(sock, error_reply(ProtocolError("a request is a map with a method")))
                continue
            params = request.get("params") or {}
            try:
                if not isinstance(params, dict):
                    raise ProtocolError("params must be a map")
                result = self._on_api(identity, request["method"], params, address)
                reply = {"ok": True, "result": result}
            except RaftstoreError as error:
                reply = error_reply(error)
            except Exception as error:  # a bug: answer, log, keep serving
                self._log(f"cluster API {request['method']} failed: {type(error).__name__}: {error}")
                reply = error_reply(RaftstoreError("internal error; see the manager's log"))
            write_frame(sock, reply)
