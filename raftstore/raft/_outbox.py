"""The outbox: where this node's Raft messages leave, after what they depend on is on disk.

Persist-before-send is the design's central durability duty; this module
alone owns it. ``Outbox.send`` is the one path of every outgoing Raft message
and its docstring spells the duty out; ``Outbox.persist`` is the one call
that makes the journal durable on the Raft path.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Protocol

__all__ = ["Outbox", "MessageTransport"]


class MessageTransport(Protocol):
    """What the outbox needs of a transport (``RaftTransportCore``, or tests/raftsim's network)."""

    def is_connected(self, node_id: str) -> bool: ...

    def send(self, node_id: str, message: Any) -> bool: ...


class Outbox:
    """Every Raft message this node sends, and the journal syncs they wait for.

    ``persist`` is the journal's ``sync``; ``ack_window`` is half a heartbeat.
    ``RaftNode`` connects the transport once pysyncobj has asked for it.
    """

    def __init__(self, persist: Callable[[], None], ack_window: float) -> None:
        self._persist = persist
        self._ack_window = ack_window
        self._last_ack: dict[str, tuple[int, float]] = {}
        self._transport: MessageTransport | None = None

    def connect(self, transport: MessageTransport) -> None:
        self._transport = transport

    def persist(self) -> None:
        """Make everything pysyncobj wrote to the journal durable now: one fsync for all of it (group commit).

        Cheap when nothing changed. Called by ``send`` and at the other
        points of the duty that ``send`` lists (2 and 3).
        """
        self._persist()

    def send(self, node_id: str, message: dict[str, Any]) -> bool:
        """Send ``message`` to ``node_id``, after persisting what it depends on.

        Every message this node's Raft sends passes through here and through
        nothing else: pysyncobj hands each send to its transport, and the
        transport seam (``_seams.py``) hands it to this method. The duty, in
        the order etcd's ``doc.go`` gives it (persist, send, apply):

        1. Persist before send. Appended entries, a truncation, and the
           current term and vote must be on disk before any message that
           reflects them leaves: an acknowledgement (``next_node_idx``) tells
           the leader the entries are held, a vote reply promises the vote is
           recorded, a request for votes carries the new term. ``persist``
           makes all of it durable with one fsync.
        2. Except the leader's append-entries. The leader may replicate
           before its own write is durable (Raft thesis 10.2.1), so an
           ``append_entries`` leaves at once. The leader's own fsync then runs
           right after pysyncobj's send phase, in parallel with the
           followers' (``RaftNode`` registers ``persist`` as a tick
           callback), and always before the leader counts itself toward a
           commit (``persist`` at the start of every tick, before pysyncobj
           counts the match indices).
        3. Apply only what is durable here: ``persist`` runs before every
           committed entry is applied (``RaftNode._apply`` and ``_advance``).
        4. A message that cannot leave (no connection to ``node_id``) waits
           for nothing: pysyncobj sends it again once the peer is connected.
        5. A repeated acknowledgement does not leave. pysyncobj acknowledges
           every append-entries, including the commit-index-only round that
           follows each write. An ack equal to the one just sent to the same
           node tells the leader nothing: it is dropped, but never for longer
           than ``ack_window``, so the leader still hears from us.

        Returns False when no connection took the message, True otherwise
        (a dropped repeat included).
        """
        if self._repeats_last_ack(node_id, message):
            return True
        transport = self._transport
        assert transport is not None, "the outbox is connected when pysyncobj builds its transport"
        if not transport.is_connected(node_id):
            return False
        if message.get("type") != "append_entries":
            self.persist()
        return transport.send(node_id, message)

    def _repeats_last_ack(self, node_id: str, message: dict[str, Any]) -> bool:
        """Whether ``message`` is a successful ack equal to the last one sent to ``node_id`` less than ``ack_window`` ago."""
        if message.get("type") != "next_node_idx" or not message.get("success") or message.get("reset"):
            return False
        now = time.monotonic()
        last = self._last_ack.get(node_id)
        if last is not None and last[0] == message["next_node_idx"] and now - last[1] < self._ack_window:
            return True
        self._last_ack[node_id] = (message["next_node_idx"], now)
        return False
