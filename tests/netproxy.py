"""A small TCP proxy owned by a test: forwards, records, cuts and delays links on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time


class Proxy:
    """Listens on a free loopback port and forwards every connection to ``target_port``."""

    def __init__(self, target_port: int, record_limit: int = 64 * 2**20) -> None:
        self.target_port = target_port
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.recorded = bytearray()
        self._record_limit = record_limit
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self.cut = False
        self.delay = 0.0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.cut:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while not self._closed:
                data = source.recv(65536)
                if not data or self.cut:
                    break
                with self._lock:
                    if len(self.recorded) < self._record_limit:
                        self.recorded += data
                if self.delay:
                    time.sleep(self.delay)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.close()
                except OSError:
                    pass

    def sever(self) -> None:
        """Cut the link: close every open connection and refuse new ones until ``heal``."""
        self.cut = True
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def heal(self) -> None:
        self.cut = False

    def close(self) -> None:
        self._closed = True
        self.sever()
        self._listener.close()
