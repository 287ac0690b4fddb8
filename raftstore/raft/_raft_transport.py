"""Raft traffic between managers: msgpack frames over mutual TLS.

pysyncobj's own ``TcpConnection`` assumes plain sockets and pickles every
message. This module replaces both, and is written against pysyncobj's poller
contract only (``subscribe(fd, callback, mask)`` / ``unsubscribe(fd)`` with the
masks below), so it does not import pysyncobj; ``_seams.PysyncobjTransport``
plugs it in as pysyncobj's ``Transport``.

Threads. Everything here runs on the Raft tick thread except two slow steps
that must never stall it: the outgoing connect plus TLS handshake (a short-lived
connector thread per attempt) and the incoming handshake (done by the cluster
listener). Both hand a finished ``SSLSocket`` over through ``_handoff``, which
the tick thread drains when a byte on the wake-up pipe makes the poller return.

Non-blocking TLS. A readable socket is read until ``SSLWantReadError``, which
also drains bytes OpenSSL already decrypted (``SSLSocket.pending()``) and that
poll cannot see. A send that returns short, or ``SSLWantWriteError``, keeps the
rest buffered and subscribes for writability. Want-read/want-write are flow
control, never errors.

Identity. A peer is the CN of its verified certificate (O must be this cluster,
OU swarm-manager); the address it connects from or announces means nothing.

Durability. This module only moves frames: every message reaches ``send``
through ``Outbox.send`` (``_outbox.py``), which persists what the message
depends on first and spells out that duty.
"""

from __future__ import annotations

import collections
import json
import os
import socket
import ssl
import threading
import time
from typing import Any, Callable

from ..keyring import MANAGER_ROLE, ProtocolError
from ..net import FrameBuffer, encode_frame, peer_identity, read_frame, write_frame

__all__ = ["POLL_READ", "POLL_WRITE", "POLL_ERROR", "RaftTransportCore", "RAFT_CHANNEL", "DIAL_MAP_ENV"]

# pysyncobj's POLL_EVENT_TYPE values (checked by tests/test_pysyncobj_seams.py).
POLL_READ = 1
POLL_WRITE = 2
POLL_ERROR = 4

RAFT_CHANNEL = "raft"
_READ_CHUNK = 256 * 1024
#: Tests that cut single Raft links put a proxy in front of each ordered pair
#: of managers: this names a JSON file {node id: "host:port"} that overrides
#: the address this node dials for that peer. Nothing sets it in operation.
DIAL_MAP_ENV = "RAFTSTORE_TEST_DIAL_MAP"


def _dial_address(node_id: str, address: str) -> str:
    path = os.environ.get(DIAL_MAP_ENV)
    if not path:
        return address
    try:
        with open(path) as f:
            return str(json.load(f).get(node_id, address))
    except (OSError, ValueError):
        return address


class _Connection:
    def __init__(self, core: "RaftTransportCore", node_id: str, sock: ssl.SSLSocket) -> None:
        self.core = core
        self.node_id = node_id
        self.sock = sock
        self.fd = sock.fileno()
        self.inbox = FrameBuffer()
        self.outbox = bytearray()
        self.closed = False
        self.read_wants_write = False
        self.last_progress = time.monotonic()
        sock.setblocking(False)
        self._mask = 0
        self._subscribe()

    def _subscribe(self) -> None:
        mask = POLL_READ | POLL_ERROR
        if self.outbox or self.read_wants_write:
            mask |= POLL_WRITE
        if mask != self._mask:
            self._mask = mask
            self.core.poller.subscribe(self.fd, self._on_event, mask)

    def send(self, frame: bytes) -> None:
        if not self.outbox:
            self.last_progress = time.monotonic()
        self.outbox += frame
        self._flush()

    def _flush(self) -> None:
        while self.outbox and not self.closed:
            try:
                sent = self.sock.send(memoryview(self.outbox)[:_READ_CHUNK])
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError, InterruptedError):
                break
            except OSError as error:
                self.close(f"send failed: {error}")
                return
            if sent <= 0:
                break
            del self.outbox[:sent]
            self.last_progress = time.monotonic()
        if not self.closed:
            self._subscribe()

    def _on_event(self, fd: int, mask: int) -> None:
        if self.closed or fd != self.fd:
            return
        if mask & POLL_WRITE:
            self._flush()
            if self.read_wants_write:
                self.read_wants_write = False
                mask |= POLL_READ
        if mask & POLL_READ and not self.closed:
            self._read()
        elif mask & POLL_ERROR and not self.closed:
            self.close("connection error")

    def _read(self) -> None:
        while not self.closed:
            try:
                chunk = self.sock.recv(_READ_CHUNK)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLWantWriteError:
                self.read_wants_write = True
                self._subscribe()
                break
            except (BlockingIOError, InterruptedError):
                break
            except OSError as error:
                self.close(f"receive failed: {error}")
                return
            if not chunk:
                self.close("closed by peer")
                return
            self.inbox.feed(chunk)
        try:
            messages = self.inbox.frames()
        except ProtocolError as error:
            self.close(str(error))
            return
        for message in messages:
            if self.closed:
                return
            self.core._deliver(self, message)

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.core.poller.unsubscribe(self.fd)
        try:
            self.sock.close()
        except OSError:
            pass
        self.core._on_closed(self, reason)


class RaftTransportCore:
    """Connections to the other managers, one per peer, driven by the tick thread."""

    def __init__(
        self,
        *,
        poller: Any,
        local_id: str,
        cluster_id: str,
        client_context: Callable[[], ssl.SSLContext],
        on_message: Callable[[str, Any], None],
        on_connected: Callable[[str], None],
        on_disconnected: Callable[[str], None],
        log: Callable[[str], None],
        retry_interval: float = 0.5,
        connect_timeout: float = 2.0,
        stall_timeout: float = 5.0,
    ) -> None:
        self.poller = poller
        self.local_id = local_id
        self.cluster_id = cluster_id
        self._client_context = client_context
        self._on_message = on_message
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._log = log
        self._retry_interval = retry_interval
        self._connect_timeout = connect_timeout
        self._stall_timeout = stall_timeout
        self._peers: dict[str, str] = {}  # node id -> address
        self._connections: dict[str, _Connection] = {}
        self._connecting: set[str] = set()
        self._last_attempt: dict[str, float] = {}
        self._handoff: collections.deque[tuple[str, ssl.SSLSocket]] = collections.deque()
        self._closed = False
        self._dial_failures: dict[str, str] = {}
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        poller.subscribe(self._wake_r, self._on_wake, POLL_READ)

    # ----------------------------------------------------------- membership

    def add_peer(self, node_id: str, address: str) -> None:
        self._peers[node_id] = address
        self._last_attempt.pop(node_id, None)

    def drop_peer(self, node_id: str) -> None:
        self._peers.pop(node_id, None)
        conn = self._connections.get(node_id)
        if conn is not None:
            conn.close("peer removed from the Raft configuration")

    def is_peer(self, node_id: str) -> bool:
        return node_id in self._peers

    def connected(self) -> set[str]:
        return set(self._connections)

    def is_connected(self, node_id: str) -> bool:
        return node_id in self._connections

    # ----------------------------------------------------------- sending

    def send(self, node_id: str, message: Any) -> bool:
        """Frame ``message`` for ``node_id``'s connection; False when there is none (or it just broke)."""
        conn = self._connections.get(node_id)
        if conn is None:
            return False
        conn.send(encode_frame(message))
        return not conn.closed

    def backlog(self, node_id: str) -> int:
        """Bytes queued for ``node_id`` that its connection has not taken yet (0 when there is none)."""
        conn = self._connections.get(node_id)
        return len(conn.outbox) if conn is not None else 0

    # ----------------------------------------------------------- connections

    def adopt(self, node_id: str, sock: ssl.SSLSocket) -> None:
        """Hand over a verified, handshaken socket from any thread."""
        if self._closed:
            sock.close()
            return
        self._handoff.append((node_id, sock))
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass  # a wake-up is already pending

    def _on_wake(self, fd: int, mask: int) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        self._adopt_pending()

    def _adopt_pending(self) -> None:
        while self._handoff:
            node_id, sock = self._handoff.popleft()
            self._connecting.discard(node_id)
            if self._closed or node_id not in self._peers:
                sock.close()
                continue
            old = self._connections.get(node_id)
            if old is not None:
                old.close("replaced by a new connection")
            self._connections[node_id] = _Connection(self, node_id, sock)
            self._log(f"raft connection to {node_id} established")
            self._on_connected(node_id)

    def _deliver(self, conn: _Connection, message: Any) -> None:
        if self._connections.get(conn.node_id) is conn and isinstance(message, dict):
            self._on_message(conn.node_id, message)

    def _on_closed(self, conn: _Connection, reason: str) -> None:
        if self._connections.get(conn.node_id) is conn:
            del self._connections[conn.node_id]
            self._log(f"raft connection to {conn.node_id} lost: {reason}")
            self._on_disconnected(conn.node_id)

    def _should_dial(self, node_id: str) -> bool:
        # One connection per pair: the node with the greater id dials.
        return self.local_id > node_id

    def tick(self) -> None:
        self._adopt_pending()
        now = time.monotonic()
        for conn in list(self._connections.values()):
            if conn.outbox and now - conn.last_progress > self._stall_timeout:
                conn.close(f"no progress sending for {self._stall_timeout:.0f}s")
        for node_id, address in list(self._peers.items()):
            if node_id in self._connections or node_id in self._connecting or not self._should_dial(node_id):
                continue
            if now - self._last_attempt.get(node_id, 0.0) < self._retry_interval:
                continue
            self._last_attempt[node_id] = now
            self._connecting.add(node_id)
            threading.Thread(
                target=self._dial, args=(node_id, address), name=f"raft-dial-{node_id[:8]}", daemon=True
            ).start()

    def _dial(self, node_id: str, address: str) -> None:
        sock: ssl.SSLSocket | None = None
        try:
            host, port = _dial_address(node_id, address).rsplit(":", 1)
            raw = socket.create_connection((host.strip("[]"), int(port)), timeout=self._connect_timeout)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock = self._client_context().wrap_socket(raw, server_side=False)
            identity = peer_identity(sock)
            if (
                identity is None
                or identity.cluster_id != self.cluster_id
                or identity.role != MANAGER_ROLE
                or identity.node_id != node_id
            ):
                raise ProtocolError(f"peer at {address} is not manager {node_id} of this cluster")
            write_frame(sock, {"channel": RAFT_CHANNEL})
            reply = read_frame(sock, 4096)
            if not isinstance(reply, dict) or not reply.get("ok"):
                message = reply.get("error") if isinstance(reply, dict) else "refused"
                raise ProtocolError(f"manager {node_id} refused the raft connection: {message}")
            sock.settimeout(None)
        except Exception as error:  # any failure is retried after retry_interval
            if sock is not None:
                sock.close()
            self._connecting.discard(node_id)
            self._log_dial_failure(node_id, address, error)
            return
        self.adopt(node_id, sock)

    def _log_dial_failure(self, node_id: str, address: str, error: Exception) -> None:
        text = f"{type(error).__name__}: {error}"
        if self._dial_failures.get(node_id) != text:  # log each new reason once
            self._dial_failures[node_id] = text
            self._log(f"cannot reach manager {node_id} at {address}: {text}")

    def close(self) -> None:
        self._closed = True
        for conn in list(self._connections.values()):
            conn.close("shutting down")
        while self._handoff:
            self._handoff.popleft()[1].close()
        self.poller.unsubscribe(self._wake_r)
        os.close(self._wake_r)
        os.close(self._wake_w)
