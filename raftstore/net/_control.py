"""The control API: how the ``raftstore`` command talks to its daemon.

Transport: the unix socket ``DATA_DIR/raftstore.sock`` (mode 0600, so only the
daemon's user can use it), or TCP: with mutual TLS (``-H tcp://...
--tlsverify``), with server-only TLS (``--tls``), or in plain text on loopback
only when the operator asked for it (``--insecure``). A client speaking TLS
checks the daemon before it sends anything: the certificate must chain to the
CA it trusts, name the host it dialled (DNS or IP SAN, as the docker CLI
checks), and state serverAuth; a node's certificate never identifies a daemon.
A client refuses to send plain text to a host that is not loopback.

Protocol: msgpack frames (``_frames``). A request is
``{"method": str, "params": map}``; the reply is ``{"ok": true, "result": x}``
or ``{"ok": false, "error": {"code", "message"}}``. A streaming method
(``events``) sends ``{"ok": true, "item": x}`` frames until the client closes
the connection or the stream ends with a final ``{"ok": true, "end": true}``.

The TCP listener is reachable by strangers, so it applies the limits before
identity of ``_admission``: until a connection has passed its TLS handshake
and sent its first request, it shares a small pool (capped per address and in
total; the longest idle one is evicted for a newcomer) under one deadline, and
a peer without a verified certificate never gets more than
``STRANGER_FRAME_BYTES`` per frame. Identified connections have their own cap,
so threads stay bounded however many connections are opened.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Iterator

from ..keyring import (
    CLIENT_ROLE,
    InvalidArgument,
    PermissionDenied,
    ProtocolError,
    RaftstoreError,
    Unavailable,
    is_daemon_certificate,
)
from ._addresses import is_loopback_host, listen_tcp, parse_host, split_host_port
from ._admission import STRANGER_DEADLINE, ConnectionPool, Slot
from ._frames import STRANGER_FRAME_BYTES, error_reply, raise_for_reply, read_frame, write_frame
from ._http import HttpApp, looks_like_http, serve_http
from ._tls import peer_certificate_pem, peer_identity

# sun_path holds 108 bytes on Linux, the last one for the terminating NUL.
_MAX_UNIX_PATH = 107

__all__ = ["ControlServer", "ControlClient", "Stream"]

#: Requests may carry a whole backup (snapshot restore); the socket is the daemon user's alone.
MAX_REQUEST_BYTES = 64 * 2**20
#: Said when a plain-TCP connection is dropped or answered with something else: the daemon probably speaks TLS.
TLS_HINT = ("; if the daemon serves TLS, give --tlsverify --tlscacert FILE (and --tlscert/--tlskey for a client "
            "certificate), or set RAFTSTORE_CERT_PATH and RAFTSTORE_TLS_VERIFY=1")
#: The TCP listener's pool: connections still showing who they are, and identified ones (streams included).
MAX_TCP_STRANGERS = 32
MAX_TCP_STRANGERS_PER_ADDRESS = 16
MAX_TCP_CONNECTIONS = 64
#: An HTTP request body from an admin client certificate: a 1.5 MiB transaction, base64 in JSON, fits.
MAX_HTTP_BODY_BYTES = 4 * 2**20


class Stream:
    """Returned by a handler to stream items; ``items`` ends when ``stop`` is set or exhausted."""

    def __init__(self, items: Callable[[threading.Event], Iterator[Any]]) -> None:
        self.items = items


Handler = Callable[[str, dict[str, Any], dict[str, Any]], Any]


class ControlServer:
    """Serves control requests on a unix socket and, optionally, a TLS TCP socket.

    With ``http``, the TCP socket also serves HTTP (``_http``): the first
    byte a peer sends after the handshake says which protocol it speaks.
    """

    def __init__(self, handler: Handler, log: Callable[[str], None], http: HttpApp | None = None) -> None:
        self._handler = handler
        self._http = http
        self._log = log
        self._sockets: list[socket.socket] = []
        self._stopping = threading.Event()
        self._unix_path: Path | None = None

    def listen_unix(self, path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        if len(os.fsencode(path)) > _MAX_UNIX_PATH:
            raise InvalidArgument(f"the control socket path {path} is longer than the {_MAX_UNIX_PATH} bytes "
                                  "a unix socket allows: use a shorter --data-dir")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            sock.bind(str(path))
        except OSError as error:
            sock.close()
            raise Unavailable(f"cannot serve the control socket {path}: {error.strerror or error}") from None
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        sock.listen(64)
        self._unix_path = path
        self._start(sock, None, {"transport": "unix"}, None)

    def listen_tcp(self, address: str, context: ssl.SSLContext | None) -> None:
        sock = listen_tcp(address, backlog=64)
        pool = ConnectionPool(
            strangers=MAX_TCP_STRANGERS,
            strangers_per_address=MAX_TCP_STRANGERS_PER_ADDRESS,
            identified=MAX_TCP_CONNECTIONS,
        )
        self._start(sock, context, {"transport": "tcp", "tls": context is not None}, pool)

    def _start(
        self, sock: socket.socket, context: ssl.SSLContext | None, info: dict[str, Any], pool: ConnectionPool | None
    ) -> None:
        self._sockets.append(sock)
        threading.Thread(
            target=self._accept_loop, args=(sock, context, info, pool), name="control-listener", daemon=True
        ).start()

    def stop(self) -> None:
        self._stopping.set()
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        if self._unix_path is not None:
            try:
                self._unix_path.unlink()
            except FileNotFoundError:
                pass

    def _accept_loop(
        self, sock: socket.socket, context: ssl.SSLContext | None, info: dict[str, Any], pool: ConnectionPool | None
    ) -> None:
        while not self._stopping.is_set():
            try:
                conn, peer = sock.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                continue
            slot = pool.admit(conn, str(peer[0])) if pool is not None else None
            if pool is not None and slot is None:
                conn.close()  # every slot busy serving: refuse rather than queue
                continue
            threading.Thread(
                target=self._serve, args=(conn, context, info, slot), name="control-conn", daemon=True
            ).start()

    def _serve(
        self, conn: socket.socket, context: ssl.SSLContext | None, info: dict[str, Any], slot: Slot | None = None
    ) -> None:
        # TCP connections (``slot``) are strangers until their first request: one deadline for it all.
        # A peer is known once TLS verified an admin client certificate; without TLS (the unix socket, or
        # plain TCP that the operator asked for) it is the local admin. Any other stays a stranger.
        deadline = time.monotonic() + STRANGER_DEADLINE if slot is not None else None
        known = True
        try:
            if context is not None:
                conn = context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
                if slot is not None:
                    slot.attach(conn)
                conn.settimeout(STRANGER_DEADLINE)
                conn.do_handshake()  # type: ignore[attr-defined]
                conn.settimeout(None)
                known = _may_be_admin(conn)  # type: ignore[arg-type]
            info = _caller_info(conn, info)
            prefix = b""
            if slot is not None and self._http is not None:
                prefix = _first_byte(conn, deadline)
                if not prefix:
                    return
                if looks_like_http(prefix):
                    self._serve_http(conn, prefix, info, deadline, known, slot)
                    return
            limit = MAX_REQUEST_BYTES if known else STRANGER_FRAME_BYTES
            while not self._stopping.is_set():
                try:
                    request = read_frame(conn, limit, deadline, prefix)
                    prefix = b""
                except (ConnectionError, socket.timeout):
                    return
                except ProtocolError as error:
                    write_frame(conn, error_reply(error))
                    return
                if slot is not None and known and not slot.identified:
                    if not slot.identify():
                        write_frame(conn, error_reply(Unavailable("too many control connections; try again later")))
                        return
                    deadline = None
                    conn.settimeout(None)
                if not isinstance(request, dict) or not isinstance(request.get("method"), str):
                    write_frame(conn, error_reply(ProtocolError("a request is a map with a method")))
                    continue
                params = request.get("params") or {}
                if not isinstance(params, dict):
                    write_frame(conn, error_reply(ProtocolError("params must be a map")))
                    continue
                with slot.serving() if slot is not None else nullcontext():
                    if not self._answer(conn, request["method"], params, info):
                        return
        except (OSError, ssl.SSLError, ConnectionError):
            pass
        finally:
            conn.close()
            if slot is not None:
                slot.release()

    def _serve_http(
        self, conn: socket.socket, first: bytes, info: dict[str, Any], deadline: float | None, known: bool, slot: Slot
    ) -> None:
        """HTTP on this connection, under the same limits before identity and the same caller ``info``."""
        assert self._http is not None
        serve_http(
            conn, first, self._http, {**info, "protocol": "http"},
            deadline=deadline,
            body_limit=MAX_HTTP_BODY_BYTES if known else STRANGER_FRAME_BYTES,
            identify=slot.identify if known else None,
            serving=slot.serving,
            stopping=self._stopping,
        )

    def _answer(self, conn: socket.socket, method: str, params: dict[str, Any], info: dict[str, Any]) -> bool:
        try:
            result = self._handler(method, params, info)
        except RaftstoreError as error:
            write_frame(conn, error_reply(error))
            return True
        except Exception as error:  # a bug: keep serving, and say where to look
            self._log(f"control request {method} failed: {type(error).__name__}: {error}")
            write_frame(conn, error_reply(RaftstoreError(f"internal error in {method}; see the daemon's log")))
            return True
        if not isinstance(result, Stream):
            write_frame(conn, {"ok": True, "result": result})
            return True
        return self._stream(conn, result)

    def _stream(self, conn: socket.socket, stream: Stream) -> bool:
        stop = threading.Event()

        def watch_close() -> None:
            # The client ends a stream by closing; notice it even while idle.
            try:
                while not stop.is_set():
                    if not conn.recv(1):
                        break
            except OSError:
                pass
            stop.set()

        threading.Thread(target=watch_close, daemon=True).start()
        try:
            for item in stream.items(stop):
                if stop.is_set():
                    return False
                write_frame(conn, {"ok": True, "item": item})
            write_frame(conn, {"ok": True, "end": True})
        except RaftstoreError as error:
            write_frame(conn, error_reply(error))
        except OSError:
            pass
        finally:
            stop.set()
        return False


def _first_byte(conn: socket.socket, deadline: float | None) -> bytes:
    """The peer's first byte (which protocol it speaks), or b"" when it closed or its time ran out."""
    try:
        if deadline is not None:
            conn.settimeout(max(deadline - time.monotonic(), 0.001))
        return conn.recv(1)
    except (socket.timeout, ConnectionError):
        return b""


def _caller_info(conn: socket.socket, info: dict[str, Any]) -> dict[str, Any]:
    """What the handler's authorization needs about this connection: the verified peer and its address.

    The certificate only says who the peer claims to be; whether that makes it
    an admin is decided per method by the daemon (see _authz).
    """
    peer = peer_identity(conn) if isinstance(conn, ssl.SSLSocket) else None
    try:
        address = conn.getpeername()
    except OSError:
        address = None
    return {**info, "peer": peer, "address": address[0] if isinstance(address, tuple) else None}


def _may_be_admin(conn: ssl.SSLSocket) -> bool:
    """Whether a TLS peer could be a remote admin at all (an admin client certificate): only such a
    peer leaves the stranger's frame limit. Whether it *is* one (this cluster, not revoked) is the
    daemon's decision, per method (see _authz)."""
    identity = peer_identity(conn)
    return identity is not None and identity.role == CLIENT_ROLE


class ControlClient:
    """One connection to a daemon's control API.

    Over TCP with ``tls``, nothing is sent until the daemon has proved who it
    is (see the module doc); ``tls`` must verify the certificate and the host
    name. Without ``tls`` only a loopback host is dialled.
    """

    def __init__(self, host: str, *, tls: ssl.SSLContext | None = None, timeout: float | None = 60.0) -> None:
        kind, where = parse_host(host)
        self.host = host
        self._hint = TLS_HINT if kind == "tcp" and tls is None else ""
        try:
            if kind == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                sock.connect(where)
            else:
                hostname, port = split_host_port(where)
                if tls is None and not is_loopback_host(hostname):
                    raise InvalidArgument(f"refusing to send requests in plain text to {host}: "
                                          "use --tlsverify with --tlscacert (plain TCP is for loopback only)")
                if tls is not None and not (tls.check_hostname and tls.verify_mode == ssl.CERT_REQUIRED):
                    raise InvalidArgument("a TLS connection to the control API must verify the daemon's certificate "
                                          "and host name")
                sock = socket.create_connection((hostname, port), timeout=timeout)
                if tls is not None:
                    sock = _verified_daemon(tls, sock, host, hostname)
        except FileNotFoundError:
            raise Unavailable(
                f"Cannot connect to the raftstore daemon at {host}. Is the daemon running?"
            ) from None
        except ssl.SSLCertVerificationError as error:
            raise PermissionDenied(f"the daemon at {host} failed verification, nothing was sent: "
                                   f"{error.verify_message or error.reason or error}") from None
        except ssl.SSLError as error:
            raise Unavailable(f"TLS handshake with {host} failed: {error.reason or error}") from None
        except OSError as error:
            raise Unavailable(
                f"Cannot connect to the raftstore daemon at {host}: {error.strerror or error}. Is the daemon running?"
            ) from None
        self._sock = sock

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        reply = self._exchange(method, params)
        return reply.get("result")

    def stream(self, method: str, params: dict[str, Any] | None = None) -> Iterator[Any]:
        self._send(method, params)
        self._sock.settimeout(None)
        while True:
            reply = self._receive()
            if reply.get("end"):
                return
            yield reply.get("item")

    def _send(self, method: str, params: dict[str, Any] | None) -> None:
        try:
            write_frame(self._sock, {"method": method, "params": params or {}})
        except OSError as error:
            raise Unavailable(f"lost the connection to the daemon at {self.host}: {error}{self._hint}") from None

    def _receive(self) -> dict[str, Any]:
        try:
            reply = read_frame(self._sock)
        except socket.timeout:
            raise Unavailable(f"the daemon at {self.host} did not answer in time") from None
        except (OSError, ConnectionError) as error:
            raise Unavailable(f"lost the connection to the daemon at {self.host}: {error}{self._hint}") from None
        except ProtocolError as error:
            if not self._hint:
                raise
            raise ProtocolError(f"the daemon at {self.host} did not answer in the control protocol: "
                                f"{error}{self._hint}") from None
        return raise_for_reply(reply, self.host)

    def _exchange(self, method: str, params: dict[str, Any] | None) -> dict[str, Any]:
        self._send(method, params)
        return self._receive()

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "ControlClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _verified_daemon(tls: ssl.SSLContext, sock: socket.socket, host: str, hostname: str) -> ssl.SSLSocket:
    """The handshake, with the daemon's name checked by ``ssl``; then its certificate's kind, before any request.

    OpenSSL refuses a certificate whose extended key usage lacks serverAuth,
    but accepts one that states none; ``is_daemon_certificate`` closes that
    gap and refuses the node certificates of the cluster, whatever they name.
    """
    try:
        wrapped = tls.wrap_socket(sock, server_side=False, server_hostname=hostname)
    except BaseException:
        sock.close()
        raise
    pem = peer_certificate_pem(wrapped)
    if pem is None or not is_daemon_certificate(pem):
        wrapped.close()
        raise PermissionDenied(f"the daemon at {host} failed verification, nothing was sent: its certificate "
                               "is not a daemon's (see raftstore ca issue-server)")
    return wrapped
