"""Every use of pysyncobj's internals, in one module.

pysyncobj 0.3.17 gives us Raft (elections, replication, membership changes,
log compaction). Everything it does not do well enough is replaced at the
narrowest seam available. Each seam below touches a private name of
pysyncobj; no other module of raftstore does (tests/test_package_boundaries.py
checks it), and each is pinned by ``tests/test_pysyncobj_seams.py`` so that
an upgrade that moves one fails loudly instead of silently falling back to
pysyncobj's defaults:

``pysyncobj.syncobj.createJournal``
    ``SyncObj.__init__`` builds its journal through this module-level function
    and offers no parameter for it. We swap it, under a lock, only for the
    duration of ``RaftCore``'s constructor, and hand out our
    ``SealedJournal`` (``_journal.py``).

``pysyncobj.syncobj.pickle``
    pysyncobj encodes membership and version commands with its own pickle
    module. We replace that module reference with ``MsgpackCodec``, so that
    no pickle is produced or read in this process. (Its peer messages never
    reach pickle either: our transport frames them with msgpack.)

``SyncObj._SyncObj__doApplyCommand``
    The apply step for committed entries. Our entries carry command type
    ``ENTRY_TYPE`` (``_envelope.py``; a type pysyncobj does not know and would
    skip); the override hands them to the owner with their Raft index.

``SyncObj._SyncObj__onMessageReceived`` and ``__sendNextNodeIdx``
    The append-entries rule: ``RaftCore`` rewrites a follower's
    append-entries before pysyncobj handles it, and acknowledges only what it
    proved (the rule itself: ``_append_rule.py``).

``SyncObj._SyncObj__serializer``
    Receiving a leader's snapshot. pysyncobj writes it with the umask's mode
    and renames it over ours before anything checks it, without fsync.
    ``RaftCore.receive_snapshots_with`` replaces pysyncobj's serializer with our
    ``SnapshotSerializer`` (``_snapshots.py``), which wraps it.

``SyncObj._doDestroy`` and ``SyncObj._SyncObj__pipeNotifier``
    pysyncobj opens a wake-up pipe per ``SyncObj`` (its ``PipeNotifier``)
    and never closes it, so every manager that stops leaks two descriptors
    (a long-lived daemon locked and unlocked many times, or a simulation of
    thousands of nodes, runs out). ``RaftCore._doDestroy`` closes it after
    pysyncobj's own teardown (``close_wakeup_pipe``).

``SyncObj._checkCommandsToApply`` and ``SyncObj._SyncObj__commandsQueue``
    Entries built on the tick thread (``RaftCore.submit_later``): the
    proposer hands over a builder, not bytes, and forms its group only when
    pysyncobj is about to take its commands, so that everything queued until
    that moment joins one entry. The override builds them and puts them on
    pysyncobj's command queue just before pysyncobj reads it (the same queue
    and command type ``_applyCommand`` uses). A builder handed over from the
    tick thread itself (an entry resolved, the next one goes out) costs no
    wake-up of the poller; from any other thread it writes once to
    pysyncobj's wake-up pipe.

``SyncObj._SyncObj__applyLogEntries`` and ``__newAppendEntriesTime``
    The commit notice. With ``appendEntriesUseBatch=False`` pysyncobj's
    leader sends every follower an append-entries carrying only the new
    commit index right after it applies an entry: two messages out and two
    handled per write, and the tick thread busy sending them while the
    caller whose entry just applied waits for the interpreter. The override
    turns that round into a deadline ``commit_notice_delay`` away (pysyncobj's
    own next-append time, brought forward): the next entry's append-entries
    carries the commit index if it leaves first, as under any steady load.

``Transport._onMessageReceived``, ``_onNodeConnected``, ``_onNodeDisconnected``, ``SyncObj._poller``
    ``PysyncobjTransport`` is pysyncobj's transport over ours
    (``RaftTransportCore``, mutual TLS, or whatever the owner's
    ``open_transport`` builds: tests/raftsim's network). Every message
    pysyncobj sends goes to the owner's outbox (``_outbox.py``).

``SyncObj._getLeader``, ``_isLeader``, ``_applyCommand``,
``__raftElectionDeadline``, ``__raftMatchIndex``
    Read or called through ``RaftCore``'s public methods only.

Public hooks used elsewhere: ``SyncObjConf``'s ``serializer``,
``deserializer`` (``_snapshots.py``), the ``Journal``
interface (``_journal.py``).

Ticking: we run pysyncobj with ``autoTick=False`` and drive ``doTick`` from our
own thread (``RaftNode.tick_once`` is one turn of it), because its auto-tick
thread stops when the thread that built the ``SyncObj`` exits.
"""

from __future__ import annotations

import collections
import os
import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import msgpack
import pysyncobj.syncobj as _syncobj_module
from pysyncobj import SyncObj, SyncObjConf
from pysyncobj.config import FAIL_REASON
from pysyncobj.journal import Journal
from pysyncobj.node import Node
from pysyncobj.transport import Transport

from ._append_rule import hold_commit_for_snapshot_chunk, rewrite_append_entries
from ._envelope import ENTRY_TYPE, envelope_of

__all__ = ["CoreHooks", "MsgpackCodec", "RaftCore", "RaftMember"]


class RaftMember(Node):
    """A manager in the Raft configuration: its id is the node id, not an address."""

    def __init__(self, node_id: str, address: str) -> None:
        super().__init__(node_id)
        self.address = address

    def __repr__(self) -> str:
        return f"RaftMember({self.id!r}, {self.address!r})"


# --------------------------------------------------------------------- pickle

_MEMBER_EXT = 1


class MsgpackCodec:
    """Stands in for ``pysyncobj.pickle`` inside ``pysyncobj.syncobj``.

    pysyncobj only ever encodes lists, strings, ints, bytes, tuples and nodes
    with it (membership and version commands, oversized entries).
    """

    @staticmethod
    def _default(obj: Any) -> Any:
        if isinstance(obj, RaftMember):
            return msgpack.ExtType(_MEMBER_EXT, msgpack.packb([obj.id, obj.address]))
        raise TypeError(f"raftstore does not encode {type(obj).__name__} for pysyncobj")

    @staticmethod
    def _ext(code: int, data: bytes) -> Any:
        if code == _MEMBER_EXT:
            node_id, address = msgpack.unpackb(data, raw=False)
            return RaftMember(node_id, address)
        return msgpack.ExtType(code, data)

    @classmethod
    def dumps(cls, obj: Any, protocol: Any = None) -> bytes:
        return msgpack.packb(obj, default=cls._default, use_bin_type=True)

    @classmethod
    def loads(cls, data: bytes) -> Any:
        return msgpack.unpackb(data, ext_hook=cls._ext, raw=False, strict_map_key=False)

    @staticmethod
    def to_bytes(data: Any) -> bytes:
        return data if isinstance(data, bytes) else data.encode("utf-8")


_syncobj_module.pickle = MsgpackCodec  # type: ignore[assignment]


# --------------------------------------------------------------------- journal factory

_journal_lock = threading.Lock()
_pending_journal: list[Journal] = []
_original_create_journal = _syncobj_module.createJournal


def _create_journal(journal_file: Any = None) -> Journal:
    if _pending_journal:
        return _pending_journal.pop()
    return _original_create_journal(journal_file)


_syncobj_module.createJournal = _create_journal


# --------------------------------------------------------------------- transport


class PysyncobjTransport(Transport):
    """pysyncobj's Transport interface over ours; built by pysyncobj inside ``RaftCore``'s constructor."""

    def __init__(self, syncObj: "RaftCore", selfNode: Node, otherNodes: Iterable[Node]) -> None:
        super().__init__(syncObj, selfNode, otherNodes)
        hooks = syncObj.hooks
        self._members: dict[str, Node] = {}
        self._send = hooks.send
        self.core = hooks.open_transport(
            poller=syncObj._poller,
            local_id=selfNode.id,
            on_message=self._message,
            on_connected=self._connected,
            on_disconnected=self._disconnected,
        )
        syncObj.addOnTickCallback(self.core.tick)
        # Runs after pysyncobj has appended and sent, before it polls for replies.
        syncObj.addOnTickCallback(hooks.after_sends)
        for node in otherNodes:
            self.addNode(node)

    def _message(self, node_id: str, message: Any) -> None:
        node = self._members.get(node_id)
        if node is not None:
            self._onMessageReceived(node, message)

    def _connected(self, node_id: str) -> None:
        node = self._members.get(node_id)
        if node is not None:
            self._onNodeConnected(node)

    def _disconnected(self, node_id: str) -> None:
        node = self._members.get(node_id)
        if node is not None:
            self._onNodeDisconnected(node)

    def addNode(self, node: Node) -> None:
        self._members[node.id] = node
        self.core.add_peer(node.id, node.address)

    def dropNode(self, node: Node) -> None:
        self.core.drop_peer(node.id)
        self._members.pop(node.id, None)

    def send(self, node: Node, message: Any) -> bool:
        return self._send(node.id, message)

    def destroy(self) -> None:
        self.core.close()


# --------------------------------------------------------------------- core


@dataclass(frozen=True)
class CoreHooks:
    """What ``RaftCore`` calls back into; ``RaftNode`` supplies each."""

    #: pysyncobj's journal (a ``SealedJournal``), also read by the append-entries rule.
    journal: Journal
    #: ``(index, envelope) -> result``: a committed entry of ours.
    apply_entry: Callable[[int, bytes], Any]
    #: ``(index)``: a committed entry of pysyncobj's (no-op, membership, version).
    advance: Callable[[int], None]
    #: ``(poller=, local_id=, on_message=, on_connected=, on_disconnected=) -> transport``
    #: (``RaftTransportCore``'s interface).
    open_transport: Callable[..., Any]
    #: ``(node id, message) -> bool``: the outbox, for every message pysyncobj sends.
    send: Callable[[str, Any], bool]
    #: A tick callback after pysyncobj's send phase (the leader's own fsync).
    after_sends: Callable[[], None]


class RaftCore(SyncObj):
    """SyncObj with our journal, apply hook, append-entries rule and transport; built only by ``RaftNode``."""

    def __init__(self, self_node: RaftMember, others: list[RaftMember], conf: SyncObjConf, hooks: CoreHooks):
        self.hooks = hooks
        self._raftstore_ack: int | None = None  # the next index the reply being handled acknowledges
        #: How long the commit notice may wait for the next append-entries (0: pysyncobj's at once).
        self.commit_notice_delay = 0.0
        # Entries to build on the tick thread (``submit_later``): (build, callback).
        self._deferred: collections.deque[tuple[Callable[[], bytes | None], Callable[[Any, int], None]]] = (
            collections.deque()
        )
        with _journal_lock:
            _pending_journal.append(hooks.journal)
            try:
                super().__init__(self_node, others, conf=conf, transportClass=PysyncobjTransport)
            finally:
                _pending_journal.clear()

    # ------------------------------------------------------------ overrides

    def _doDestroy(self) -> None:
        super()._doDestroy()
        self.close_wakeup_pipe()

    def close_wakeup_pipe(self) -> None:
        """Close pysyncobj's wake-up pipe (it never does); later wake-ups go nowhere."""
        notifier = getattr(self, "_SyncObj__pipeNotifier", None)
        if notifier is None:
            return
        notifier.notify = lambda: None  # a late submit must not write to a closed (or reused) descriptor
        for name in ("_PipeNotifier__pipeR", "_PipeNotifier__pipeW"):
            fd = getattr(notifier, name, None)
            if fd is None:
                continue
            if name.endswith("pipeR"):
                try:
                    self._poller.unsubscribe(fd)
                except (KeyError, ValueError, OSError):
                    pass
            try:
                os.close(fd)
            except OSError:
                pass
            setattr(notifier, name, None)

    def _SyncObj__onMessageReceived(self, node: Node, message: Any) -> None:
        if message.get("type") == "append_entries" and "prevLogIdx" in message and "transmission" not in message:
            rewritten = self._append_rule(message)
            if rewritten is None:
                return
            message = rewritten
        elif message.get("type") == "append_entries" and "serialized" in message:
            message = self._snapshot_chunk_rule(message)
        try:
            SyncObj._SyncObj__onMessageReceived(self, node, message)  # type: ignore[attr-defined]
        finally:
            self._raftstore_ack = None

    def _append_rule(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """Raft's rule instead of pysyncobj's (``_append_rule.rewrite_append_entries``); None drops the message."""
        rewritten, self._raftstore_ack = rewrite_append_entries(
            message, self.hooks.journal, self.raftCurrentTerm, self.raftCommitIndex
        )
        return rewritten

    def _snapshot_chunk_rule(self, message: dict[str, Any]) -> dict[str, Any]:
        """A snapshot chunk does not move the commit index (``_append_rule.hold_commit_for_snapshot_chunk``)."""
        return hold_commit_for_snapshot_chunk(message, self.raftCommitIndex)

    def _SyncObj__sendNextNodeIdx(
        self, node: Node, reset: bool = False, nextNodeIdx: int | None = None, success: bool = False
    ) -> None:
        if success and self._raftstore_ack is not None:
            nextNodeIdx = self._raftstore_ack  # what the leader's message proved, not our log's end
        send = SyncObj._SyncObj__sendNextNodeIdx  # type: ignore[attr-defined]
        send(self, node, reset=reset, nextNodeIdx=nextNodeIdx, success=success)

    def _SyncObj__applyLogEntries(self) -> bool:
        """Apply what committed; the leader's commit notice becomes a deadline (see the module doc)."""
        notify = bool(SyncObj._SyncObj__applyLogEntries(self))  # type: ignore[attr-defined]
        if notify and self.commit_notice_delay > 0 and self._isLeader():
            due = _syncobj_module.monotonicTime() + self.commit_notice_delay
            if due < self._SyncObj__newAppendEntriesTime:  # type: ignore[has-type]
                self._SyncObj__newAppendEntriesTime = due
            return False
        return notify

    def next_append_in(self) -> float | None:
        """On the leader: seconds until pysyncobj's next append-entries round is due (None elsewhere)."""
        if not self._isLeader():
            return None
        return max(0.0, self._SyncObj__newAppendEntriesTime - _syncobj_module.monotonicTime())  # type: ignore[has-type]

    def _SyncObj__doApplyCommand(self, command: bytes) -> Any:
        index = self.raftLastApplied + 1
        envelope = envelope_of(command)
        if envelope is not None:
            return self.hooks.apply_entry(index, envelope)
        result = SyncObj._SyncObj__doApplyCommand(self, command)  # type: ignore[attr-defined]
        self.hooks.advance(index)
        return result

    # ------------------------------------------------------------ pysyncobj's private state, read or set here only

    def submit(self, envelope: bytes, callback: Callable[[Any, int], None]) -> None:
        """Append an entry of ours on the leader (thread-safe); ``callback(result, fail_reason)`` on the tick thread."""
        self._applyCommand(envelope, callback, ENTRY_TYPE)

    def submit_later(self, build: Callable[[], bytes | None], callback: Callable[[Any, int], None], *,
                     wake: bool = True) -> None:
        """Like ``submit``, but the envelope is ``build()``'s, called on the tick thread just before
        pysyncobj takes its commands (None: nothing to append, and ``callback`` is not called).

        ``wake``: wake the tick thread from its poll (not needed when called on the tick thread).
        """
        self._deferred.append((build, callback))
        if wake:
            self.wake()

    def wake(self) -> None:
        """Wake the tick thread from its poll (pysyncobj's wake-up pipe; thread-safe)."""
        notifier = getattr(self, "_SyncObj__pipeNotifier", None)
        if notifier is not None:
            notifier.notify()

    def _checkCommandsToApply(self) -> None:
        commands = self._SyncObj__commandsQueue  # type: ignore[attr-defined]
        while self._deferred:
            build, callback = self._deferred.popleft()
            envelope = build()
            if envelope is None:
                continue
            try:
                commands.put_nowait((bytes([ENTRY_TYPE]) + envelope, callback))
            except queue.Full:
                callback(None, FAIL_REASON.QUEUE_FULL)
        super()._checkCommandsToApply()

    def leader(self) -> Any:
        """The member this node takes for the leader, or None."""
        return self._getLeader()

    def is_leader(self) -> bool:
        return bool(self._isLeader())

    def match_index(self) -> dict[str, int]:
        """On the leader: the highest index known to be on each other member's log."""
        return {node.id: index for node, index in dict(self._SyncObj__raftMatchIndex).items()}  # type: ignore[attr-defined]

    def postpone_election(self, until: float) -> None:
        """Start no election before ``until`` (pysyncobj's monotonic clock)."""
        self._SyncObj__raftElectionDeadline = until

    def receive_snapshots_with(self, wrap: Callable[[Any], Any]) -> None:
        """Replace pysyncobj's serializer with ``wrap(serializer)``: it receives the leader's snapshots."""
        self._SyncObj__serializer = wrap(self._SyncObj__serializer)  # type: ignore[has-type]
