"""HTTP/1.1 on the remote control port: the bytes of it, parsed by h11 and bounded before anything is decoded.

The remote control listener (``_control``) serves two protocols on one TLS
port, as dockerd serves its API: msgpack frames and HTTPS. After the TLS
handshake it reads one byte. A msgpack frame starts with its 4-byte
big-endian length, whose first byte is 0 for any frame a listener accepts (a
first byte of 0x41 or more would claim a frame of 1 GiB or more); an HTTP
request starts with its method, in upper-case ASCII. So an upper-case letter
means HTTP and the connection is handed to ``serve_http``; anything else stays
msgpack. Nothing but that byte is looked at before the choice.

Why h11 rather than ``http.server`` or our own parser: we own the TLS socket
and its limits before identity (one deadline from ``accept``, a per-address
pool, a small size per request), and h11 is sans-IO, so it parses bytes we
read, under our deadline, and never reads on its own. It bounds the request
line and headers (``max_incomplete_event_size``), and we refuse a body longer
than the limit from its ``Content-Length`` before a byte of it is read (a
chunked one as soon as it passes the limit).

What a request means is decided above (``api``): this module hands each
parsed ``HttpRequest`` and the connection's caller ``info`` to an ``HttpApp``
and writes its ``HttpResponse``, streaming a chunked body when the app gives
one (a watch), until the client closes.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, unquote, urlsplit

import h11

__all__ = ["HttpRequest", "HttpResponse", "HttpApp", "looks_like_http", "serve_http", "HTTP_HEAD_BYTES",
           "HTTP_IDLE_SECONDS"]

#: Request line and headers together, for every peer (nginx's default is 8 KiB; etcd's gateway 1 MiB).
HTTP_HEAD_BYTES = 16 * 2**10
#: An identified client's next request must be complete this long after the previous answer.
HTTP_IDLE_SECONDS = 60.0

_RECEIVE = 64 * 2**10
#: After a refusal, what may still be read (and dropped) so that the client sees the answer, not a reset.
_LINGER_BYTES = 256 * 2**10
_LINGER_SECONDS = 1.0


def looks_like_http(first: bytes) -> bool:
    """Whether a connection's first byte starts an HTTP method (upper-case ASCII), not a msgpack frame's length."""
    return len(first) == 1 and 0x41 <= first[0] <= 0x5A


@dataclass(frozen=True)
class HttpRequest:
    """One request, whole: the method, the path (percent-decoded), the query, lower-cased headers and the body."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpResponse:
    """What the app answers: a status and a body, or ``stream`` for a chunked body that runs until ``stop``."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    stream: Callable[[threading.Event], Iterator[bytes]] | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


HttpApp = Callable[[HttpRequest, dict[str, Any]], HttpResponse]


class _Refused(Exception):
    """A request refused by this layer (size, syntax): answered with ``status`` and the connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def serve_http(
    sock: socket.socket,
    first: bytes,
    app: HttpApp,
    info: dict[str, Any],
    *,
    deadline: float | None,
    body_limit: int,
    identify: Callable[[], bool] | None,
    serving: Callable[[], AbstractContextManager[Any]],
    stopping: threading.Event,
) -> None:
    """Serve HTTP requests on ``sock`` (``first`` already read) until either side closes.

    ``deadline`` (``time.monotonic()``) bounds everything a stranger sends.
    ``identify`` is given for a peer that may be an admin: it is called once
    a first request is complete (False: no room, answer 503), and from then on
    each request has ``HTTP_IDLE_SECONDS`` of its own. Without it the peer
    stays a stranger under ``deadline`` for good. ``serving`` wraps the app's
    work, during which the connection's slot is not evicted.
    """
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=HTTP_HEAD_BYTES)
    conn.receive_data(first)
    identified = False
    while not stopping.is_set():
        try:
            request = _read_request(sock, conn, deadline, body_limit, received=len(first))
            first = b""
        except _Refused as refusal:
            _refuse(sock, conn, refusal.status, refusal.message, deadline)
            return
        if request is None:
            return
        if identify is not None and not identified:
            if not identify():
                _refuse(sock, conn, 503, "too many control connections; try again later", deadline)
                return
            identified = True
        with serving():
            try:
                response = app(request, info)
            except Exception:  # the app answers errors itself; this is a bug, and the peer still gets an answer
                response = HttpResponse(500, b'{"error": "RaftstoreError", "message": "internal error"}\n')
            if not _send(sock, conn, response, None if identified else deadline):
                return
        if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            return
        conn.start_next_cycle()
        if identified:
            deadline = time.monotonic() + HTTP_IDLE_SECONDS


def _read_request(sock: socket.socket, conn: h11.Connection, deadline: float | None, body_limit: int,
                  received: int = 0) -> HttpRequest | None:
    """The next whole request, None when the peer closed or its time ran out, or ``_Refused``.

    Until the head is complete, no more than one byte past ``HTTP_HEAD_BYTES``
    is read (``received`` of them already were): h11 enforces its bound
    (``max_incomplete_event_size``, answered 431) only on a head it has not
    seen whole, and one ``recv`` may bring a whole long head.
    """
    head: h11.Request | None = None
    body = bytearray()
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as error:
            raise _Refused(error.error_status_hint, f"malformed request: {error}") from None
        if event is h11.NEED_DATA:
            room = _RECEIVE if head is not None else HTTP_HEAD_BYTES + 1 - received
            if room <= 0:  # h11 refuses before this (see above); never read past the bound regardless
                return None
            got = _receive(sock, conn, deadline, room)
            if got is None:
                return None
            received += got
            continue
        if isinstance(event, h11.Request):
            head = event
            length = _content_length(event)
            if length is not None and length > body_limit:
                raise _Refused(413, f"a request body may have at most {body_limit} bytes here")
            if conn.client_is_waiting_for_100_continue:  # curl asks before a large body: it is within the limit
                sock.sendall(conn.send(h11.InformationalResponse(status_code=100, headers=[], reason="Continue")))
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > body_limit:
                raise _Refused(413, f"a request body may have at most {body_limit} bytes here")
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            return _request(head, bytes(body))
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None


def _receive(sock: socket.socket, conn: h11.Connection, deadline: float | None, most: int) -> int | None:
    """Feed h11 at most ``most`` bytes from the peer: how many, or None when it closed or the deadline passed
    (it is cut, unanswered)."""
    if deadline is not None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        sock.settimeout(remaining)
    else:
        sock.settimeout(None)
    try:
        data = sock.recv(most)
    except (socket.timeout, ConnectionError):
        return None
    conn.receive_data(data)  # b"" tells h11 the peer closed
    if not data and conn.their_state is h11.IDLE:
        return None
    return len(data)


def _content_length(request: h11.Request) -> int | None:
    for name, value in request.headers:
        if name == b"content-length":
            return int(value)  # h11 has checked that it is a number
    return None


def _request(head: h11.Request, body: bytes) -> HttpRequest:
    target = urlsplit(head.target.decode("ascii", "replace"))
    query = {name: values[-1] for name, values in parse_qs(target.query, keep_blank_values=True).items()}
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in head.headers}
    return HttpRequest(head.method.decode("ascii", "replace"), unquote(target.path), query, headers, body)


def _refuse(sock: socket.socket, conn: h11.Connection, status: int, message: str, deadline: float | None) -> None:
    body = (json.dumps({"error": "ProtocolError" if status != 503 else "Unavailable", "message": message})
            + "\n").encode()
    if _send(sock, conn, HttpResponse(status, body, headers=[("Connection", "close")]), deadline):
        _linger(sock)


def _linger(sock: socket.socket) -> None:
    """Discard what the peer still sends, briefly, before closing: a client that is still writing the body
    we refused would otherwise see a reset instead of our answer. Bounded in bytes and time; nothing is decoded."""
    until = time.monotonic() + _LINGER_SECONDS
    left = _LINGER_BYTES
    try:
        while left > 0:
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            sock.settimeout(remaining)
            data = sock.recv(min(left, _RECEIVE))
            if not data:
                return
            left -= len(data)
    except OSError:
        pass


def _send(sock: socket.socket, conn: h11.Connection, response: HttpResponse, deadline: float | None) -> bool:
    """Write the response; False when the connection is done (a stream ended, an error, a close).

    A stranger that does not read its answer is held no longer than its deadline (and at least a second,
    so that a refusal at the deadline still goes out); an identified client ``HTTP_IDLE_SECONDS``.
    """
    headers = [("Content-Type", response.content_type), ("Cache-Control", "no-store"), *response.headers]
    if response.stream is None:
        headers.append(("Content-Length", str(len(response.body))))
    try:
        sock.settimeout(HTTP_IDLE_SECONDS if deadline is None else max(deadline - time.monotonic(), 1.0))
        reason = HTTPStatus(response.status).phrase if response.status in HTTPStatus._value2member_map_ else ""
        sock.sendall(conn.send(h11.Response(status_code=response.status, headers=headers, reason=reason)))
        if response.stream is None:
            if response.body:
                sock.sendall(conn.send(h11.Data(data=response.body)))
            sock.sendall(conn.send(h11.EndOfMessage()))
            return True
        _stream(sock, conn, response.stream)
    except (OSError, h11.LocalProtocolError):
        pass
    return False


def _stream(sock: socket.socket, conn: h11.Connection, items: Callable[[threading.Event], Iterator[bytes]]) -> None:
    """A chunked body until ``items`` ends or the client closes (noticed even while no item comes)."""
    stop = threading.Event()

    def watch_close() -> None:
        try:
            while not stop.is_set():
                if not sock.recv(1):
                    break
        except OSError:
            pass
        stop.set()

    sock.settimeout(None)
    threading.Thread(target=watch_close, name="http-stream-close", daemon=True).start()
    try:
        for chunk in items(stop):
            if stop.is_set():
                return
            sock.sendall(conn.send(h11.Data(data=chunk)))
        sock.sendall(conn.send(h11.EndOfMessage()))
    finally:
        stop.set()
