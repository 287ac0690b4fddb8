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

Limits before identity (``_admission``): until the TLS handshake has verified
a certificate and the first frame has named the channel, a connection is a
stranger. Strangers get ``STRANGER_FRAME_BYTES`` per frame and one deadline
for the handshake and every request together, and are capped per address and
in total (the longest idle one is evicted for a newcomer). A client without a
certificate stays a stranger for the whole connection. Identified API
connections have their own cap, and Raft connections leave the pool once
adopted, so no number of strangers can starve manager-to-manager traffic.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from typing import Any, Callable

from ..keyring import CertificateIdentity, ProtocolError, RaftstoreError
from ._addresses import listen_tcp
from ._admission import STRANGER_DEADLINE, ConnectionPool, Slot
from ._frames import MAX_FRAME_BYTES, STRANGER_FRAME_BYTES, error_reply, read_frame, write_frame
from ._tls import peer_identity

__all__ = ["ClusterListener", "API_CHANNEL", "RAFT_CHANNEL"]

API_CHANNEL = "api"
RAFT_CHANNEL = "raft"

RaftCheck = Callable[[CertificateIdentity], str | None]
RaftAdopt = Callable[[ssl.SSLSocket, CertificateIdentity], None]
ApiHandler = Callable[[CertificateIdentity | None, str, dict[str, Any], str | None], Any]

_HELLO_BYTES = 4096
#: A stranger whose request took the rest of its deadline still gets the reply (a join is done by then).
_REPLY_GRACE = 2.0


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
        max_strangers: int = 64,
        max_strangers_per_address: int = 32,
        stranger_deadline: float = STRANGER_DEADLINE,
        idle_timeout: float = 300.0,
    ) -> None:
        self.address = address
        self._server_context = server_context
        self._check_raft = check_raft
        self._adopt_raft = adopt_raft
        self._on_api = on_api
        self._log = log
        self._pool = ConnectionPool(
            strangers=max_strangers, strangers_per_address=max_strangers_per_address, identified=max_connections
        )
        self._stranger_deadline = stranger_deadline
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
                raw, peer = self._sock.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                continue
            slot = self._pool.admit(raw, peer[0])
            if slot is None:
                raw.close()  # every slot busy serving: refuse rather than queue
                continue
            threading.Thread(target=self._serve, args=(raw, slot), name="cluster-conn", daemon=True).start()

    def _serve(self, raw: socket.socket, slot: Slot) -> None:
        adopted = False
        sock: socket.socket = raw
        deadline = time.monotonic() + self._stranger_deadline
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = self._server_context().wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            sock = tls
            slot.attach(tls)
            tls.settimeout(self._stranger_deadline)
            tls.do_handshake()  # the socket's timeout bounds the whole handshake
            slot.progress()
            identity = peer_identity(tls)
            hello = read_frame(tls, _HELLO_BYTES, deadline)
            slot.progress()
            channel = hello.get("channel") if isinstance(hello, dict) else None
            if channel == RAFT_CHANNEL:
                adopted = self._serve_raft(tls, identity)
            elif channel == API_CHANNEL and identity is None:
                write_frame(sock, {"ok": True})
                self._serve_api(sock, None, slot, STRANGER_FRAME_BYTES, deadline)
            elif channel == API_CHANNEL and slot.identify():
                write_frame(sock, {"ok": True})
                self._serve_api(sock, identity, slot, MAX_FRAME_BYTES, None)
            elif channel == API_CHANNEL:
                write_frame(sock, {"ok": False, "error": "too many connections; try again later"})
            else:
                write_frame(sock, {"ok": False, "error": "unknown channel"})
        except (OSError, ssl.SSLError, ConnectionError, ProtocolError, ValueError):
            pass  # handshake failures, disconnects, evictions and deadlines are the client's problem
        finally:
            if not adopted:
                sock.close()
            slot.release()

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

    def _serve_api(
        self, sock: socket.socket, identity: CertificateIdentity | None, slot: Slot, limit: int, deadline: float | None
    ) -> None:
        """Requests until the peer leaves; a stranger (``deadline`` set) until its time is up."""
        address = sock.getpeername()[0]  # the handler rate-limits unauthenticated joins per source address
        while not self._stopping.is_set():
            if deadline is None:
                sock.settimeout(self._idle_timeout)
            try:
                request = read_frame(sock, limit, deadline)
            except (ConnectionError, socket.timeout):
                return
            with slot.serving():
                reply = self._answer(identity, request, address)
                if deadline is not None:
                    sock.settimeout(max(deadline - time.monotonic(), _REPLY_GRACE))
                write_frame(sock, reply)

    def _answer(self, identity: CertificateIdentity | None, request: Any, address: str) -> dict[str, Any]:
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            return error_reply(ProtocolError("a request is a map with a method"))
        params = request.get("params") or {}
        try:
            if not isinstance(params, dict):
                raise ProtocolError("params must be a map")
            return {"ok": True, "result": self._on_api(identity, request["method"], params, address)}
        except RaftstoreError as error:
            return error_reply(error)
        except Exception as error:  # a bug: answer, log, keep serving
            self._log(f"cluster API {request['method']} failed: {type(error).__name__}: {error}")
            return error_reply(RaftstoreError("internal error; see the manager's log"))
