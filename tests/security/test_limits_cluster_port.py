"""Strangers on a manager's cluster port: no certificate, as many connections and bytes as they like.

Findings 1 and 2 of issue 11: a client without a certificate could hold every
connection slot (joins failed, writes timed out) and one unauthenticated frame
of empty maps grew a daemon by half a gigabyte. Before a peer is identified it
now gets a few KiB per frame, strict msgpack limits and one short deadline;
strangers are capped per address and the oldest idle one is evicted for a
newcomer; identified connections and Raft traffic keep their own capacity.
"""

from __future__ import annotations

import select
import socket
import ssl
import struct
import threading
import time
from pathlib import Path

import pytest

from raftstore.net._frames import read_frame, write_frame
from raftstore.tools._local_cluster import Cluster, Node, wait_until

pytestmark = pytest.mark.integration


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _stranger_context() -> ssl.SSLContext:
    """What anyone can do: TLS without a client certificate, not checking the server either."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _stranger(node: Node, timeout: float = 5.0) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", node.port), timeout=timeout)
    return _stranger_context().wrap_socket(raw)


@pytest.fixture
def manager(cluster: Cluster) -> Node:
    m1 = cluster.add("m1")
    cluster.init(m1)
    return m1


def test_one_big_frame_without_a_certificate_is_refused_unread(manager: Node) -> None:
    assert manager.process is not None
    pid = manager.process.pid
    peak_before = _status_kib(pid, "VmHWM")
    # 8 MiB of empty maps: one array header and a byte per map, each worth ~64 bytes decoded.
    count = 8 * 2**20 - 5
    payload = b"\xdd" + struct.pack(">I", count) + b"\x80" * count
    with _stranger(manager, timeout=10) as sock:
        write_frame(sock, {"channel": "api"})
        assert read_frame(sock)["ok"]
        closed = False
        try:
            sock.sendall(struct.pack(">I", len(payload)) + payload)
            sock.settimeout(10)
            while sock.recv(65536):  # an error reply may come first; then the end
                pass
            closed = True
        except (OSError, ssl.SSLError):
            closed = True  # reset while we were still sending: closed as well
    assert closed
    time.sleep(0.2)  # let a decode that started (today's code) show in the peak
    growth_mb = (_status_kib(pid, "VmHWM") - peak_before) / 1024
    assert growth_mb < 64, f"one unauthenticated frame grew the daemon by {growth_mb:.0f} MB"
    assert manager.run("kv", "put", "after", "big-frame").returncode == 0


def test_a_stranger_gets_one_short_deadline_for_everything(manager: Node) -> None:
    with _stranger(manager, timeout=30) as sock:
        write_frame(sock, {"channel": "api"})
        assert read_frame(sock)["ok"]
        started = time.monotonic()
        # Keep asking for the CA, slowly: each request is fine, the whole exchange is not.
        with pytest.raises((OSError, ConnectionError, ssl.SSLError)):
            while time.monotonic() - started < 25:
                write_frame(sock, {"method": "ca.get", "params": {}})
                assert read_frame(sock)["ok"]
                time.sleep(0.5)
    assert time.monotonic() - started < 20, "a stranger kept its connection past the deadline"


class _Crowd:
    """Holds ``size`` unauthenticated TLS connections to ``port``, re-opening each one the daemon closes."""

    def __init__(self, port: int, size: int, threads: int = 6, limit_seconds: float = 60.0) -> None:
        self.port = port
        self.stop = threading.Event()
        self.opened = 0
        self._limit = time.monotonic() + limit_seconds
        self._lock = threading.Lock()
        share = [size // threads + (1 if i < size % threads else 0) for i in range(threads)]
        self._threads = [threading.Thread(target=self._hold, args=(n,), daemon=True) for n in share]

    def __enter__(self) -> "_Crowd":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(10)

    def _open(self) -> ssl.SSLSocket | None:
        try:
            raw = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            sock = _stranger_context().wrap_socket(raw)
            sock.setblocking(False)
        except (OSError, ssl.SSLError):
            return None
        with self._lock:
            self.opened += 1
        return sock

    def _hold(self, count: int) -> None:
        socks: list[ssl.SSLSocket | None] = [None] * count
        while not self.stop.is_set() and time.monotonic() < self._limit:
            for i, sock in enumerate(socks):
                if sock is None and not self.stop.is_set():
                    socks[i] = self._open()
            live = [s for s in socks if s is not None]
            if not live:
                time.sleep(0.05)
                continue
            # poll, not select: the test process may hold descriptors above select's limit of 1024.
            poller = select.poll()
            by_fd = {}
            for sock in live:
                poller.register(sock, select.POLLIN)
                by_fd[sock.fileno()] = sock
            readable = [by_fd[fd] for fd, _ in poller.poll(50)]
            for sock in readable:
                try:
                    if sock.recv(1024):
                        continue
                except (ssl.SSLWantReadError, BlockingIOError):
                    continue
                except OSError:
                    pass
                sock.close()
                socks[socks.index(sock)] = None
        for sock in socks:
            if sock is not None:
                sock.close()


def test_a_node_joins_and_writes_commit_while_strangers_hold_300_connections(cluster: Cluster, manager: Node) -> None:
    m2 = cluster.add("m2")
    with _Crowd(manager.port, 300) as crowd:
        wait_until(lambda: crowd.opened >= 300, timeout=30, what="the strangers' 300 connections")
        started = time.monotonic()
        cluster.join(m2, manager, "manager")
        manager.run("kv", "put", "under", "siege", timeout=15)
        elapsed = time.monotonic() - started
        assert m2.run("kv", "get", "under", timeout=15).stdout == "siege\n"
    print(f"join and write: {elapsed:.1f}s; strangers opened {crowd.opened} connections")
    assert elapsed < 15, f"join and write took {elapsed:.1f}s under 300 stranger connections"
    assert crowd.opened >= 300
