"""The control API: how the ``raftstore`` command talks to its daemon.

Transport: the unix socket ``DATA_DIR/raftstore.sock`` (mode 0600, so only the
daemon's user can use it), or TCP with mutual TLS (``-H tcp://...
--tlsverify``). Protocol: msgpack frames (``_frames``). A request is
``{"method": str, "params": map}``; the reply is ``{"ok": true, "result": x}``
or ``{"ok": false, "error": {"code", "message"}}``. A streaming method
(``events``) sends ``{"ok": true, "item": x}`` frames until the client closes
the connection or the stream ends with a final ``{"ok": true, "end": true}``.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from ._frames import error_reply, raise_for_reply, read_frame, write_frame
from ._node_state import listen_tcp, split_host_port
from ._tls import peer_identity
from .keyring import InvalidArgument, ProtocolError, RaftstoreError, Unavailable

# sun_path holds 108 bytes on Linux, the last one for the terminating NUL.
_MAX_UNIX_PATH = 107

__all__ = ["ControlServer", "ControlClient", "Stream", "parse_host"]

#: Requests may carry a whole backup (snapshot restore); the socket is the daemon user's alone.
MAX_REQUEST_BYTES = 64 * 2**20


class Stream:
    """Returned by a handler to stream items; ``items`` ends when ``stop`` is set or exhausted."""

    def __init__(self, items: Callable[[threading.Event], Iterator[Any]]) -> None:
        self.items = items


Handler = Callable[[str, dict[str, Any], dict[str, Any]], Any]


class ControlServer:
    """Serves control requests on a unix socket and, optionally, a TLS TCP socket."""

    def __init__(self, handler: Handler, log: Callable[[str], None]) -> None:
        self._handler = handler
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
        self._start(sock, None, {"transport": "unix"})

    def listen_tcp(self, address: str, context: ssl.SSLContext | None) -> None:
        sock = listen_tcp(address, backlog=64)
        self._start(sock, context, {"transport": "tcp", "tls": context is not None})

    def _start(self, sock: socket.socket, context: ssl.SSLContext | None, info: dict[str, Any]) -> None:
        self._sockets.append(sock)
        threading.Thread(
            target=self._accept_loop, args=(sock, context, info), name="control-listener", daemon=True
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

    def _accept_loop(self, sock: socket.socket, context: ssl.SSLContext | None, info: dict[str, Any]) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                continue
            threading.Thread(
                target=self._serve, args=(conn, context, info), name="control-conn", daemon=True
            ).start()

    def _serve(self, conn: socket.socket, context: ssl.SSLContext | None, info: dict[str, Any]) -> None:
        try:
            if context is not None:
                conn.settimeout(10)
                conn = context.wrap_socket(conn, server_side=True)
                conn.settimeout(None)
            info = _caller_info(conn, info)
            while not self._stopping.is_set():
                try:
                    request = read_frame(conn, MAX_REQUEST_BYTES)
                except ConnectionError:
                    return
                except ProtocolError as error:
                    write_frame(conn, error_reply(error))
                    return
                if not isinstance(request, dict) or not isinstance(request.get("method"), str):
                    write_frame(conn, error_reply(ProtocolError("a request is a map with a method")))
                    continue
                params = request.get("params") or {}
                if not isinstance(params, dict):
                    write_frame(conn, error_reply(ProtocolError("params must be a map")))
                    continue
                if not self._answer(conn, request["method"], params, info):
                    return
        except (OSError, ssl.SSLError, ConnectionError):
            pass
        finally:
            conn.close()

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


def parse_host(host: str) -> tuple[str, str]:
    """``unix:///path`` → ("unix", "/path"); ``tcp://h:p`` → ("tcp", "h:p")."""
    if host.startswith("unix://"):
        return "unix", host[len("unix://") :]
    if host.startswith("tcp://"):
        address = host[len("tcp://") :].rstrip("/")
        split_host_port(address)
        return "tcp", address
    raise InvalidArgument(f"invalid host {host!r}: use unix:///path/to/raftstore.sock or tcp://HOST:PORT")


class ControlClient:
    """One connection to a daemon's control API."""

    def __init__(self, host: str, *, tls: ssl.SSLContext | None = None, timeout: float | None = 60.0) -> None:
        kind, where = parse_host(host)
        self.host = host
        try:
            if kind == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                sock.connect(where)
            else:
                hostname, port = split_host_port(where)
                sock = socket.create_connection((hostname, port), timeout=timeout)
                if tls is not None:
                    sock = tls.wrap_socket(sock, server_side=False)
        except FileNotFoundError:
            raise Unavailable(
                f"Cannot connect to the raftstore daemon at {host}. Is the daemon running?"
            ) from None
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
            raise Unavailable(f"lost the connection to the daemon at {self.host}: {error}") from None

    def _receive(self) -> dict[str, Any]:
        try:
            reply = read_frame(self._sock)
        except socket.timeout:
            raise Unavailable(f"the daemon at {self.host} did not answer in time") from None
        except (OSError, ConnectionError) as error:
            raise Unavailable(f"lost the connection to the daemon at {self.host}: {error}") from None
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
