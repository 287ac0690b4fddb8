"""Connection slots of the listeners that anyone can reach: limits before identity.

A connection is a *stranger* from ``accept`` until its listener knows who the
peer is (a verified certificate, and a first frame that says what it wants).
Strangers are capped per source address and in total. When a cap is reached,
the newcomer is still admitted and the stranger that has waited longest on its
peer is evicted (its socket shut down) instead: an attacker who holds every
stranger slot cannot lock out a node that joins from the same address, it only
makes its own connections short-lived. A stranger whose request is being served
is never evicted, so a join is not cut off half done.

Identified connections have a cap of their own, which no number of strangers
can take; Raft connections between managers leave the pool once the Raft
transport adopts them. A hard cap on the slots alive (and so on the threads
that serve them, evicted ones included until they notice) holds whatever peers
do: past it a newcomer is refused.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

__all__ = ["ConnectionPool", "Slot", "STRANGER_DEADLINE"]

#: One deadline for everything a stranger does: TLS handshake, first frame, requests.
STRANGER_DEADLINE = 10.0


class Slot:
    """One admitted connection; the serving thread reports progress and releases it."""

    def __init__(self, pool: "ConnectionPool", sock: socket.socket, address: str) -> None:
        self.address = address
        self.last_progress = time.monotonic()
        self.busy = False
        self.identified = False
        self.evicted = False
        self.released = False
        self._pool = pool
        self._sock = sock

    def attach(self, sock: socket.socket) -> None:
        """Follow the connection to its TLS socket (the raw one is detached by wrapping).

        Raises:
            ConnectionError: the slot was evicted meanwhile.
        """
        with self._pool.lock:
            self._sock = sock
            if self.evicted:
                raise ConnectionError("evicted")

    def progress(self) -> None:
        self.last_progress = time.monotonic()

    @contextmanager
    def serving(self) -> Iterator[None]:
        """While the server works on a request of this peer, the slot is not evicted."""
        self.busy = True
        try:
            yield
        finally:
            self.busy = False
            self.progress()

    def identify(self) -> bool:
        """Move to the identified pool; False when it is full or this slot was evicted."""
        return self._pool._identify(self)

    def release(self) -> None:
        self._pool._release(self)

    def _shut_down(self) -> None:
        try:
            # socket.socket's own shutdown: an SSLSocket's would also drop its TLS state under
            # the serving thread's feet. Shutting the descriptor wakes that thread's recv.
            socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
        except OSError:
            pass


class ConnectionPool:
    """Admission for one listener (see the module docstring)."""

    def __init__(self, *, strangers: int, strangers_per_address: int, identified: int) -> None:
        self.lock = threading.Lock()
        self._max_strangers = strangers
        self._max_per_address = strangers_per_address
        self._max_identified = identified
        self._max_alive = 2 * strangers + identified
        self._strangers: list[Slot] = []
        self._identified = 0
        self._alive = 0

    def admit(self, sock: socket.socket, address: str) -> Slot | None:
        """A slot for a new connection from ``address``, evicting an idle stranger if need be; None to refuse."""
        with self.lock:
            if self._alive >= self._max_alive:
                return None
            same = [slot for slot in self._strangers if slot.address == address]
            if len(same) >= self._max_per_address:
                crowd: list[Slot] | None = same
            elif len(self._strangers) >= self._max_strangers:
                crowd = self._strangers
            else:
                crowd = None
            if crowd is not None:
                idle = [slot for slot in crowd if not slot.busy]
                if not idle:
                    return None
                self._evict(min(idle, key=lambda slot: slot.last_progress))
            slot = Slot(self, sock, address)
            self._strangers.append(slot)
            self._alive += 1
            return slot

    def _evict(self, slot: Slot) -> None:
        slot.evicted = True
        self._strangers.remove(slot)
        slot._shut_down()

    def _identify(self, slot: Slot) -> bool:
        with self.lock:
            if slot.evicted or slot.released or self._identified >= self._max_identified:
                return False
            if not slot.identified:
                self._strangers.remove(slot)
                slot.identified = True
                self._identified += 1
            return True

    def _release(self, slot: Slot) -> None:
        with self.lock:
            if slot.released:
                return
            slot.released = True
            if slot.identified:
                self._identified -= 1
            elif not slot.evicted:
                self._strangers.remove(slot)
            self._alive -= 1
