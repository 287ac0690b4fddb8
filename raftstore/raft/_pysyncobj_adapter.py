"""The one module that imports pysyncobj, and every seam we use in it.

pysyncobj 0.3.17 gives us Raft (elections, replication, membership changes,
log compaction). Everything it does not do well enough is replaced here, at
the narrowest seam available, and each seam is pinned by
``tests/test_pysyncobj_seams.py`` so that an upgrade that moves one fails
loudly instead of silently falling back to pysyncobj's defaults:

``pysyncobj.syncobj.createJournal``
    ``SyncObj.__init__`` builds its journal through this module-level function
    and offers no parameter for it. We swap it, under a lock, only for the
    duration of our own constructor call, and hand out ``SealedJournal``:
    sealed records in checksummed segment files, one fsync per group.

``pysyncobj.syncobj.pickle``
    pysyncobj encodes membership and version commands with its own pickle
    module. We replace that module reference with ``_MsgpackCodec``, so that
    no pickle is produced or read in this process. (Its peer messages never
    reach pickle either: our transport frames them with msgpack.)

``SyncObj._SyncObj__doApplyCommand``
    The apply step for committed entries. Our entries carry command type
    ``ENTRY_TYPE`` (a type pysyncobj does not know and would skip); the
    override hands them to the manager with their Raft index.

``SyncObj._SyncObj__onMessageReceived`` and ``__sendNextNodeIdx``
    The append-entries rule. pysyncobj cuts a follower's log after
    ``prevLogIdx`` on every append-entries and re-adds the message's entries,
    even when they match, so a late or duplicated message, or a crash before
    the re-append is synced, makes a follower forget entries it acknowledged.
    ``_RaftCore._append_rule`` rewrites the message first (Raft §5.3): skip
    what we hold, cut only from the first conflict, never at or below the
    commit index (refused with a critical line, nothing changed), acknowledge
    and commit only what the message proved. A snapshot chunk moves the commit
    index not at all (``_snapshot_chunk_rule``).

``SyncObjConf.serializer / deserializer / serializeChecker`` (public)
    Snapshots: our serializer seals the state machine's dump; pysyncobj
    renames the file and streams it to lagging followers byte for byte.

``SyncObj._SyncObj__serializer.setTransmissionData``
    Receiving a leader's snapshot. pysyncobj writes it with the umask's mode
    and renames it over ours before anything checks it, without fsync.
    ``_SnapshotReceiver`` wraps pysyncobj's serializer and replaces that one
    method: 0600 temporary file, fsync, open with the keyring, rename, fsync
    the directory. A snapshot that does not open is refused and ours stays.

``Transport`` (public)
    ``_TransportAdapter`` forwards to ``RaftTransportCore`` (mutual TLS), or to
    whatever ``RaftNode(transport_factory=...)`` builds with the same keywords
    (tests/raftsim's in-memory network).

Ticking: we run pysyncobj with ``autoTick=False`` and drive ``doTick`` from our
own thread (``RaftNode.tick_once`` is one turn of it), because its auto-tick
thread stops when the thread that built the ``SyncObj`` exits.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import msgpack
import pysyncobj.syncobj as _syncobj_module
from pysyncobj import SyncObj, SyncObjConf
from pysyncobj.config import FAIL_REASON, SERIALIZER_STATE
from pysyncobj.journal import Journal
from pysyncobj.node import Node
from pysyncobj.transport import Transport

from ..storage._fsutil import atomic_write, fsync_directory
from ..telemetry._metrics import FSYNC_SECONDS, SNAPSHOT_BYTES, SNAPSHOT_SECONDS, timed
from ._raft_transport import RaftTransportCore
from ..storage._segments import SegmentLog
from ..storage._snapshot_file import encode_snapshot, read_snapshot
from ..keyring import (
    InvalidRecord,
    Keyring,
    LogChain,
    RecordKind,
    entry_context,
    open_record,
    record_key_id,
    seal,
    snapshot_context,
)

__all__ = [
    "ENTRY_TYPE",
    "install_single_member",
    "write_snapshot_file",
    "FAIL_REASONS",
    "RaftConfig",
    "RaftMember",
    "RaftNode",
    "KeySource",
]

log = logging.getLogger("raftstore.raft")

#: pysyncobj command-type byte of our entries (its own are 0..3).
ENTRY_TYPE = 4
# On-disk payload kinds: an entry sealed by its proposer, or a pysyncobj control
# entry (no-op, membership, version) sealed by the journal.
_DISK_PROPOSAL = 0x04
_DISK_CONTROL = 0x05
_ENTRY_ID_BYTES = 16

FAIL_REASONS = {
    FAIL_REASON.SUCCESS: "success",
    FAIL_REASON.QUEUE_FULL: "queue full",
    FAIL_REASON.MISSING_LEADER: "no leader",
    FAIL_REASON.DISCARDED: "discarded by a new leader",
    FAIL_REASON.NOT_LEADER: "not leader",
    FAIL_REASON.LEADER_CHANGED: "leader changed",
    FAIL_REASON.REQUEST_DENIED: "request denied",
    FAIL_REASON.UNKNOWN_OUTCOME: "unknown outcome",
}


class KeySource:
    """The keyring the Raft layer seals control entries and snapshots with.

    The manager swaps ``keyring`` when a DEK rotation is applied; readers take
    the reference once per use, so a swap is atomic for them.
    """

    def __init__(self, keyring: Keyring, cluster_id: str) -> None:
        self.keyring = keyring
        self.cluster_id = cluster_id


# --------------------------------------------------------------------- nodes


class RaftMember(Node):
    """A manager in the Raft configuration: its id is the node id, not an address."""

    def __init__(self, node_id: str, address: str) -> None:
        super().__init__(node_id)
        self.address = address

    def __repr__(self) -> str:
        return f"RaftMember({self.id!r}, {self.address!r})"


_MEMBER_EXT = 1


class _MsgpackCodec:
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


_syncobj_module.pickle = _MsgpackCodec  # type: ignore[assignment]


# --------------------------------------------------------------------- journal


class _EntryCodec:
    """Converts pysyncobj's in-memory commands to sealed on-disk payloads and back."""

    def __init__(self, keys: KeySource) -> None:
        self.keys = keys

    def to_disk(self, command: bytes, index: int) -> bytes:
        if command[:1] == bytes([ENTRY_TYPE]):
            return bytes([_DISK_PROPOSAL]) + command[1:]
        entry_id = os.urandom(_ENTRY_ID_BYTES)
        sealed = seal(
            self.keys.keyring.active, RecordKind.ENTRY, self.keys.cluster_id, entry_context(entry_id), command
        )
        return bytes([_DISK_CONTROL]) + entry_id + sealed

    def from_disk(self, payload: bytes, where: str) -> bytes:
        kind = payload[:1]
        if kind == bytes([_DISK_PROPOSAL]):
            return bytes([ENTRY_TYPE]) + payload[1:]
        if kind == bytes([_DISK_CONTROL]) and len(payload) > 1 + _ENTRY_ID_BYTES:
            entry_id = payload[1 : 1 + _ENTRY_ID_BYTES]
            try:
                return open_record(
                    self.keys.keyring,
                    RecordKind.ENTRY,
                    self.keys.cluster_id,
                    entry_context(entry_id),
                    payload[1 + _ENTRY_ID_BYTES :],
                )
            except InvalidRecord as error:
                raise InvalidRecord(f"raft log damaged: {where}: {error}") from None
        raise InvalidRecord(f"raft log damaged: {where}: unknown entry kind")

    @staticmethod
    def key_id(payload: bytes) -> int:
        record = payload[1 + _ENTRY_ID_BYTES :]
        if record[:1] == b"\x00":
            return 0  # an entry of the benchmark control without sealing
        return record_key_id(record)


class SealedJournal(Journal):
    """pysyncobj's journal on our segment log.

    Memory holds pysyncobj's view (commands, indices, terms); disk holds sealed
    payloads, each chained to its index and term with a key derived from the
    DEK active when it was appended (``keyring.LogChain``), and checked when the
    log is opened. ``sync`` is the group-commit point: the transport calls it
    before any message leaves, and the apply hook before anything is applied.
    """

    def __init__(
        self, directory: Path, codec: _EntryCodec, first_index: int, log_line: Callable[[str], None], fsync: bool = True
    ):
        self._dir = directory
        self._fsync = fsync
        self._codec = codec
        self._meta_path = directory / "meta"
        keys = codec.keys
        chain = LogChain(lambda: keys.keyring, keys.cluster_id)
        self._segments = SegmentLog.open(directory / "log", chain=chain, log=log_line)
        self._entries: list[tuple[bytes, int, int]] = []
        # (index, DEK term) of every record on disk, including the ones before
        # the first entry pysyncobj keeps, so that a term leaves the keyring
        # only when no record on this disk needs it.
        self._disk_keys: list[tuple[int, int]] = []
        for index, term, payload in self._segments.entries():
            self._disk_keys.append((index, codec.key_id(payload)))
            if index < first_index:
                continue
            where = f"{directory / 'log'} entry {index}"
            self._entries.append((codec.from_disk(payload, where), index, term))
        self._meta = self._read_meta()
        self._meta_dirty = False
        self._commit_dirty = False
        self._lock = threading.Lock()

    def _read_meta(self) -> dict[str, Any]:
        try:
            raw = self._meta_path.read_bytes()
        except FileNotFoundError:
            return {"term": 0, "voted_for": None, "commit_index": 1}
        try:
            meta = msgpack.unpackb(raw, raw=False)
            return {
                "term": int(meta["term"]),
                "voted_for": meta["voted_for"],
                "commit_index": int(meta["commit_index"]),
            }
        except Exception:
            raise InvalidRecord(f"raft state damaged: {self._meta_path}") from None

    def _write_meta(self) -> None:
        atomic_write(self._meta_path, msgpack.packb(self._meta))

    # pysyncobj's Journal interface -------------------------------------

    def add(self, command: bytes, idx: int, term: int) -> None:
        payload = self._codec.to_disk(command, idx)
        self._segments.append(idx, term, payload)
        self._entries.append((command, idx, term))
        self._disk_keys.append((idx, self._codec.key_id(payload)))

    def clear(self) -> None:
        self._entries = []
        self._disk_keys = []
        self._segments.reset([])

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        if entryFrom >= len(self._entries):
            return
        first_removed = self._entries[entryFrom][1]
        self._segments.truncate_after(first_removed - 1)
        del self._entries[entryFrom:]
        self._disk_keys = [(i, k) for i, k in self._disk_keys if i < first_removed]

    def deleteEntriesTo(self, entryTo: int) -> None:
        self._entries = self._entries[entryTo:]
        if self._entries:
            self._segments.drop_before(self._entries[0][1])
            segments = self._segments.segments()
            on_disk_from = segments[0].first_index if segments else self._entries[0][1]
            self._disk_keys = [(i, k) for i, k in self._disk_keys if i >= on_disk_from]

    def __getitem__(self, item: Any) -> Any:
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    def _destroy(self) -> None:
        self.sync()
        self._segments.close()

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        if raftCommitIndex != self._meta["commit_index"]:
            self._meta["commit_index"] = raftCommitIndex
            self._commit_dirty = True

    def getRaftCommitIndex(self) -> int:
        last = self._entries[-1][1] if self._entries else 1
        return max(1, min(self._meta["commit_index"], last))

    def setCurrentTerm(self, term: int, votedForNodeId: Any) -> None:
        # Raft needs term and vote durable before any message that reflects
        # them leaves; sync() (called before every send) writes them.
        self._meta["term"] = term
        self._meta["voted_for"] = votedForNodeId
        self._meta_dirty = True

    def getCurrentTerm(self) -> int:
        return self._meta["term"]

    def getVotedForNodeId(self) -> Any:
        return self._meta["voted_for"]

    def onOneSecondTimer(self) -> None:
        if self._commit_dirty:
            with self._lock:
                self._commit_dirty = False
                self._write_meta()

    # ours --------------------------------------------------------------

    def sync(self) -> None:
        """Make every append, truncation, term and vote durable (cheap when there are none)."""
        if self._fsync:  # off only in the benchmark control (see _benchmark_switches)
            started = time.perf_counter()
            if self._segments.sync():
                FSYNC_SECONDS.observe(time.perf_counter() - started)
        if self._meta_dirty:
            with self._lock:
                if self._meta_dirty:
                    self._meta_dirty = False
                    self._commit_dirty = False
                    self._write_meta()

    def roll(self) -> None:
        self._segments.roll()

    def disk_bytes(self) -> int:
        return sum(segment.size_bytes for segment in self._segments.segments())

    def disk_key_ids(self) -> set[int]:
        """Every DEK term that seals a log record, or keys a chain tag, still on this disk."""
        return {key_id for _, key_id in self._disk_keys} | self._segments.chain_key_ids()


_journal_lock = threading.Lock()
_pending_journal: list[SealedJournal] = []
_original_create_journal = _syncobj_module.createJournal


def _create_journal(journal_file: Any = None) -> Journal:
    if _pending_journal:
        return _pending_journal.pop()
    return _original_create_journal(journal_file)


_syncobj_module.createJournal = _create_journal


# --------------------------------------------------------------------- snapshots on disk


def write_snapshot_file(
    path: str, keys: KeySource, last: Any, prev: Any, members: list[tuple[str, str]], state: bytes
) -> None:
    """Seal and write a snapshot file (fsynced; the caller renames it into place)."""
    codec = _EntryCodec(keys)
    index, term = last[1], last[2]
    plaintext = msgpack.packb(
        {
            "state": state,
            "last": [codec.to_disk(last[0], last[1]), last[1], last[2]],
            "prev": [codec.to_disk(prev[0], prev[1]), prev[1], prev[2]],
            "members": [list(m) for m in members],
        },
        use_bin_type=True,
    )
    sealed = seal(keys.keyring.active, RecordKind.SNAPSHOT, keys.cluster_id, snapshot_context(index, term), plaintext)
    with open(path, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(encode_snapshot(index, term, sealed))
        f.flush()
        os.fsync(f.fileno())


def install_single_member(
    raft_dir: Path,
    keys: KeySource,
    last: Any,
    prev: Any,
    member: tuple[str, str],
    state: bytes,
    log_line: Callable[[str], None],
) -> None:
    """Make ``raft_dir`` a one-member Raft at ``last``: a snapshot of ``state`` and a log cut to it.

    Used by force-new-cluster and by restoring a backup; Raft must not be running.
    """
    raft_dir = Path(raft_dir)
    raft_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    snapshot_path = raft_dir / "snapshot"
    tmp = str(snapshot_path) + ".install.tmp"
    write_snapshot_file(tmp, keys, last, prev, [member], state)
    os.replace(tmp, snapshot_path)
    fsync_directory(raft_dir)
    journal = SealedJournal(raft_dir, _EntryCodec(keys), 0, log_line)
    journal.clear()
    journal.add(*prev)
    journal.add(*last)
    journal.setRaftCommitIndex(last[1])
    journal._meta_dirty = True
    journal._destroy()


# --------------------------------------------------------------------- receiving snapshots

_REFUSAL_REPORT_SECONDS = 60.0


class _SnapshotReceiver:
    """pysyncobj's ``Serializer`` for everything but receiving a leader's snapshot (see the module docstring).

    pysyncobj calls ``setTransmissionData((chunk, is_first, is_last))`` per
    chunk on the tick thread, and loads the snapshot file when it returns True.
    """

    def __init__(self, inner: Any, path: Path, verify: Callable[[str], None], log_line: Callable[[str], None]) -> None:
        self._inner = inner
        self._path = path
        self._tmp = path.with_name(path.name + ".recv.tmp")
        self._verify = verify
        self._log = log_line
        self._fd: int | None = None
        self._refused = 0
        self._reported_at = -_REFUSAL_REPORT_SECONDS

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def setTransmissionData(self, data: Any) -> bool:  # noqa: N802 (pysyncobj's name)
        if data is None:
            return False
        chunk, is_first, is_last = data
        try:
            if is_first:
                self._discard()
                self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            if self._fd is None:
                return False  # a transmission whose start we missed
            view = memoryview(chunk)
            while view:
                view = view[os.write(self._fd, view) :]
            if not is_last:
                return False
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            self._verify(str(self._tmp))
        except Exception as error:  # disk or snapshot: either way ours stays, the leader will resend
            self._discard()
            self._report_refusal(error)
            return False
        os.replace(self._tmp, self._path)
        fsync_directory(self._path.parent)
        return True

    def _report_refusal(self, error: Exception) -> None:
        """Once a minute at most: a leader with a damaged snapshot resends it every heartbeat."""
        self._refused += 1
        now = time.monotonic()
        if now - self._reported_at < _REFUSAL_REPORT_SECONDS:
            return
        self._reported_at = now
        message = str(error) if isinstance(error, InvalidRecord) else f"{type(error).__name__}: {error}"
        self._log(f"refused the snapshot received from the leader ({self._refused} so far): {message}; "
                  "keeping the one on disk")

    def _discard(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        try:
            os.unlink(self._tmp)
        except FileNotFoundError:
            pass


# --------------------------------------------------------------------- core


class _TransportAdapter(Transport):
    """pysyncobj's Transport interface over ``RaftTransportCore``."""

    def __init__(self, syncObj: "_RaftCore", selfNode: Node, otherNodes: Iterable[Node]) -> None:
        super().__init__(syncObj, selfNode, otherNodes)
        self._members: dict[str, Node] = {}
        self._last_ack: dict[str, tuple[int, float]] = {}
        self._ack_window = syncObj.conf.appendEntriesPeriod / 2
        owner = syncObj._raftstore_owner
        self.core = owner.transport_factory(
            poller=syncObj._poller,
            local_id=selfNode.id,
            cluster_id=owner.keys.cluster_id,
            client_context=owner.client_context,
            on_message=self._message,
            on_connected=self._connected,
            on_disconnected=self._disconnected,
            before_send=owner.journal.sync,
            log=owner.log,
        )
        syncObj.addOnTickCallback(self.core.tick)
        # Runs after pysyncobj has appended and sent, before it polls for replies.
        syncObj.addOnTickCallback(owner.journal.sync)
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
        if message.get("type") == "next_node_idx" and message.get("success") and not message.get("reset"):
            # pysyncobj acknowledges every append-entries, including the
            # commit-index-only round that follows each write. An ack equal to
            # the one just sent tells the leader nothing: drop it, but never
            # for longer than a heartbeat, so the leader still hears from us.
            now = time.monotonic()
            last = self._last_ack.get(node.id)
            if last is not None and last[0] == message["next_node_idx"] and now - last[1] < self._ack_window:
                return True
            self._last_ack[node.id] = (message["next_node_idx"], now)
        # The leader replicates before its own fsync (Raft thesis 10.2.1): the
        # fsync runs right after, in parallel with the followers' (the tick
        # callback below), and always before the leader counts itself toward a
        # commit. Every other message - a follower's ack, a vote - waits for it.
        return self.core.send(node.id, message, sync_first=message.get("type") != "append_entries")

    def destroy(self) -> None:
        self.core.close()


@dataclass(frozen=True)
class AppendPlan:
    """How a follower takes an append-entries whose previous entry it holds (Raft §5.3).

    ``entries`` are the ones to write after ``prev_index``: the message's entries
    minus the leading ones already in the log. ``conflict`` is the first index
    whose term differs from ours (the log is cut there, and only there).
    ``verified`` is the last index known to match the leader's log: the reply
    acknowledges up to it and the commit index may not pass it, because the
    entries after it in our log, if any, are not known to be the leader's.
    """

    prev_index: int
    prev_term: int
    entries: list[Any]
    conflict: int | None
    verified: int


def plan_append(
    term_at: Callable[[int], int], last_index: int, prev_index: int, prev_term: int, entries: list[Any]
) -> AppendPlan:
    """Skip the entries whose index and term we hold; find the first conflict, if any.

    ``term_at(i)`` is the term of our entry ``i`` (``prev_index`` <= i <= ``last_index``).
    """
    skip, conflict = 0, None
    for _command, index, term in entries:
        if index > last_index:
            break
        if term_at(index) != term:
            conflict = index
            break
        skip += 1
    anchor_index, anchor_term = (entries[skip - 1][1], entries[skip - 1][2]) if skip else (prev_index, prev_term)
    remaining = list(entries[skip:])
    if not remaining and anchor_index < last_index:
        # Everything in the message is already here and our log goes on: write
        # nothing and keep the tail (pysyncobj would cut it after the anchor).
        anchor_index, anchor_term = last_index, term_at(last_index)
    return AppendPlan(anchor_index, anchor_term, remaining, conflict, prev_index + len(entries))


class _RaftCore(SyncObj):
    """SyncObj with our apply hook and append-entries rule; built only by ``RaftNode``."""

    def __init__(self, owner: "RaftNode", self_node: RaftMember, others: list[RaftMember], conf: SyncObjConf):
        self._raftstore_owner = owner
        self._raftstore_ack: int | None = None  # the next index the reply being handled acknowledges
        super().__init__(self_node, others, conf=conf, transportClass=_TransportAdapter)

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
        """Own Raft's append-entries rule; pysyncobj's would cut every entry after ``prevLogIdx``.

        pysyncobj deletes the whole tail after ``prevLogIdx`` and re-adds the
        message's entries even when they match, so a duplicated or late
        append-entries, or a crash between the cut and the re-append, makes a
        follower forget entries it acknowledged. Here the message is rewritten
        into one pysyncobj handles correctly: it starts after the entries we
        already hold, so pysyncobj cuts only from the first conflict, or not at
        all. Returns None to drop a message that would cut a committed entry.
        """
        journal = self._raftstore_owner.journal
        prev_index = message["prevLogIdx"]
        if message["term"] < self.raftCurrentTerm or not len(journal) or prev_index is None:
            return message
        first, last = journal[0][1], journal[-1][1]
        if not first <= prev_index <= last or journal[prev_index - first][2] != message["prevLogTerm"]:
            return message  # pysyncobj asks the leader to go back
        entries = message.get("entries") or []
        plan = plan_append(lambda index: journal[index - first][2], last, prev_index, message["prevLogTerm"], entries)
        if plan.conflict is not None and plan.conflict <= self.raftCommitIndex:
            log.critical(
                "refusing an append-entries that conflicts with committed entry %d (commit index %d, term %d): "
                "the log is left as it is",
                plan.conflict,
                self.raftCommitIndex,
                message["term"],
            )
            return None
        self._raftstore_ack = plan.verified + 1
        return dict(
            message,
            prevLogIdx=plan.prev_index,
            prevLogTerm=plan.prev_term,
            entries=plan.entries,
            commit_index=min(message["commit_index"], plan.verified),
        )

    def _snapshot_chunk_rule(self, message: dict[str, Any]) -> dict[str, Any]:
        """A snapshot chunk does not move the commit index.

        It proves nothing about our log, yet pysyncobj would raise the commit
        index to min(the leader's, our last index) on every chunk, and so
        apply entries of ours that were never committed (a deposed leader's).
        Once the snapshot is installed, the next append-entries moves it on.
        """
        return dict(message, commit_index=min(message["commit_index"], self.raftCommitIndex))

    def _SyncObj__sendNextNodeIdx(
        self, node: Node, reset: bool = False, nextNodeIdx: int | None = None, success: bool = False
    ) -> None:
        if success and self._raftstore_ack is not None:
            nextNodeIdx = self._raftstore_ack  # what the leader's message proved, not our log's end
        send = SyncObj._SyncObj__sendNextNodeIdx  # type: ignore[attr-defined]
        send(self, node, reset=reset, nextNodeIdx=nextNodeIdx, success=success)

    def _SyncObj__doApplyCommand(self, command: bytes) -> Any:
        index = self.raftLastApplied + 1
        if command[:1] == bytes([ENTRY_TYPE]):
            return self._raftstore_owner._apply(index, command[1:])
        result = SyncObj._SyncObj__doApplyCommand(self, command)  # type: ignore[attr-defined]
        self._raftstore_owner._advance(index)
        return result


# --------------------------------------------------------------------- node


@dataclass(frozen=True)
class RaftConfig:
    """Timing and size knobs; the defaults are what the daemon runs with."""

    election_timeout_min: float = 0.6
    election_timeout_max: float = 1.4
    heartbeat_interval: float = 0.1
    leader_fallback_timeout: float = 2.0
    tick_period: float = 0.05
    # Above the largest entry the proposer builds (pysyncobj splits larger
    # entries with wrong chunk boundaries and stalls).
    append_batch_bytes: int = 8 * 2**20
    snapshot_chunk_bytes: int = 2**20
    compaction_min_entries: int = 5000
    compaction_min_seconds: float = 600.0
    compaction_max_log_bytes: int = 256 * 2**20


class RaftNode:
    """One manager's Raft: journal, snapshots, transport and tick thread.

    Callbacks the owner supplies (all run on the tick thread):

    - ``apply(index, payload) -> result``: a committed entry of ours;
    - ``advance(index)``: a committed entry of pysyncobj's (no-op, membership);
    - ``dump_state() -> bytes`` / ``load_state(bytes)``: snapshot contents;
    - ``on_fatal(message)``: the node cannot go on (a snapshot it received does
      not open); the owner stops it;
    - ``on_leader_change(leader id or None, term)``;
    - ``missing_key(key_id)``: a snapshot names a DEK term we lack; fetch the
      keyring from a peer (over mutual TLS) into ``keys`` if possible.
    """

    def __init__(
        self,
        *,
        raft_dir: Path,
        self_member: tuple[str, str],
        members: Iterable[tuple[str, str]],
        keys: KeySource,
        client_context: Callable[[], Any],
        apply: Callable[[int, bytes], Any],
        advance: Callable[[int], None],
        dump_state: Callable[[], bytes],
        load_state: Callable[[bytes], None],
        on_fatal: Callable[[str], None],
        on_leader_change: Callable[[str | None, int], None] = lambda leader, term: None,
        missing_key: Callable[[int], bool] = lambda key_id: False,
        fsync: bool = True,
        log: Callable[[str], None] = log.info,
        config: RaftConfig = RaftConfig(),
        hold_elections: bool = False,
        transport_factory: Callable[..., Any] = RaftTransportCore,
    ) -> None:
        self.raft_dir = Path(raft_dir)
        # RaftTransportCore's keyword interface; tests/raftsim passes an in-memory network.
        self.transport_factory = transport_factory
        self.raft_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.keys = keys
        self.client_context = client_context
        self.log = log
        self.config = config
        self._apply_cb = apply
        self._advance_cb = advance
        self._dump_state = dump_state
        self._load_state = load_state
        self._on_fatal = on_fatal
        self._on_leader_change = on_leader_change
        self._missing_key = missing_key
        self._leader_seen: str | None = None
        self._snapshot_path = self.raft_dir / "snapshot"
        self._serialize_status = SERIALIZER_STATE.NOT_SERIALIZING
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # A manager that just joined has an empty log: until it hears from the
        # leader, an election it starts can only depose a healthy leader.
        self._hold_elections_until = time.monotonic() + 30.0 if hold_elections else 0.0
        self._tick_tasks: collections.deque[Callable[[], None]] = collections.deque()
        self._last_log_check = 0.0

        codec = _EntryCodec(keys)
        self._codec = codec
        first_index = 0
        if self._snapshot_path.exists():
            index, _term, _payload = read_snapshot(self._snapshot_path)
            first_index = index - 1
        self.journal = SealedJournal(self.raft_dir, codec, first_index, log, fsync=fsync)

        self_node = RaftMember(*self_member)
        others = [RaftMember(i, a) for i, a in members if i != self_node.id]
        conf = SyncObjConf(
            autoTick=False,
            appendEntriesUseBatch=False,
            dynamicMembershipChange=True,
            commandsWaitLeader=True,
            raftMinTimeout=config.election_timeout_min,
            raftMaxTimeout=config.election_timeout_max,
            appendEntriesPeriod=config.heartbeat_interval,
            leaderFallbackTimeout=config.leader_fallback_timeout,
            connectionTimeout=max(3.5, config.election_timeout_max),
            appendEntriesBatchSizeBytes=config.append_batch_bytes,
            logCompactionBatchSize=config.snapshot_chunk_bytes,
            logCompactionMinEntries=config.compaction_min_entries,
            logCompactionMinTime=config.compaction_min_seconds,
            fullDumpFile=str(self._snapshot_path),
            journalFile=str(self.raft_dir / "journal-unused"),
            serializer=self._serialize,
            deserializer=self._deserialize,
            serializeChecker=self._serialize_checker,
            useFork=False,
        )
        with _journal_lock:
            _pending_journal.append(self.journal)
            try:
                self._core = _RaftCore(self, self_node, others, conf)
            finally:
                _pending_journal.clear()
        self._transport: _TransportAdapter = self._core._SyncObj__transport  # type: ignore[attr-defined]
        self._core._SyncObj__serializer = _SnapshotReceiver(  # type: ignore[attr-defined]
            self._core._SyncObj__serializer, self._snapshot_path, self._open_snapshot, log  # type: ignore[attr-defined]
        )

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="raft-tick", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        period = self.config.tick_period
        while not self._stopping.is_set():
            try:
                self.tick_once(period)
            except Exception:  # keep Raft alive; a bug here must be visible
                log.exception("raft tick failed")
                time.sleep(period)
        try:
            self._core._doDestroy()
        except Exception:
            log.exception("raft shutdown failed")

    def tick_once(self, wait: float = 0.0) -> None:
        """One turn of the tick thread (the deterministic simulation in tests/raftsim calls it directly)."""
        self._hold_elections()
        while self._tick_tasks:
            self._tick_tasks.popleft()()
        # The leader counts itself toward a commit at the start of a
        # tick: whatever it appended (even while polling) is durable first.
        self.journal.sync()
        self._core.doTick(wait)
        self._watch_leader()
        now = time.monotonic()
        if now - self._last_log_check > 1.0:
            self._last_log_check = now
            self._maybe_compact_by_size()

    def _hold_elections(self) -> None:
        if not self._hold_elections_until:
            return
        if self._core._getLeader() is not None or time.monotonic() > self._hold_elections_until:
            self._hold_elections_until = 0.0
            return
        self._core._SyncObj__raftElectionDeadline = time.monotonic() + self.config.election_timeout_max

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # ------------------------------------------------------------ proposals

    def propose(self, payload: bytes, callback: Callable[[Any, int], None]) -> None:
        """Submit an entry (thread-safe). ``callback(result, fail_reason)`` runs on the tick thread."""
        self._core._applyCommand(payload, callback, ENTRY_TYPE)

    def add_member(self, node_id: str, address: str, callback: Callable[[Any, int], None]) -> None:
        self._core.addNodeToCluster(RaftMember(node_id, address), callback=callback)

    def remove_member(self, node_id: str, address: str, callback: Callable[[Any, int], None]) -> None:
        self._core.removeNodeFromCluster(RaftMember(node_id, address), callback=callback)

    def transfer_leadership(self) -> None:
        """Ask the most caught-up follower to take over (best effort; thread-safe)."""
        self._tick_tasks.append(lambda: self._core.transferLeadership(None, callback=lambda *_: None))

    def adopt_connection(self, node_id: str, sock: Any) -> None:
        self._transport.core.adopt(node_id, sock)

    def is_member(self, node_id: str) -> bool:
        return self._transport.core.is_peer(node_id)

    def force_snapshot(self) -> None:
        self._core.forceLogCompaction()

    # ------------------------------------------------------------ status

    @property
    def term(self) -> int:
        """The current term, cheap enough to stamp on every log line."""
        return int(self._core.raftCurrentTerm)

    def _watch_leader(self) -> None:
        """Once per tick: report a leader change (a single attribute read when nothing changed)."""
        leader = self._core._getLeader()
        leader_id = leader.id if leader is not None else None
        if leader_id != self._leader_seen:
            self._leader_seen = leader_id
            self._on_leader_change(leader_id, self._core.raftCurrentTerm)

    def status(self) -> dict[str, Any]:
        """A view of Raft for other threads, computed on request (each read is atomic under the GIL)."""
        core = self._core
        leader = core._getLeader()
        self_node = core.selfNode
        members = [(self_node.id, self_node.address)] + sorted((n.id, n.address) for n in core.otherNodes)
        return {
            "term": core.raftCurrentTerm,
            "commit_index": core.raftCommitIndex,
            "applied_index": core.raftLastApplied,
            "leader": leader.id if leader is not None else None,
            "is_leader": core._isLeader(),
            "members": members,
            "connected": sorted(self._transport.core.connected()),
            "has_quorum": core.hasQuorum,
            "log_entries": len(self.journal),
            # On the leader: the highest index known to be on each other manager's log (pysyncobj's matchIndex).
            "match_index": {node.id: index for node, index in
                            dict(core._SyncObj__raftMatchIndex).items()} if core._isLeader() else {},  # type: ignore[attr-defined]
        }

    # ------------------------------------------------------------ apply hooks

    def _apply(self, index: int, payload: bytes) -> Any:
        self.journal.sync()  # nothing is applied before it is durable here
        return self._apply_cb(index, payload)

    def _advance(self, index: int) -> None:
        self.journal.sync()
        self._advance_cb(index)

    # ------------------------------------------------------------ snapshots

    def _maybe_compact_by_size(self) -> None:
        if self.journal.disk_bytes() > self.config.compaction_max_log_bytes:
            self._core.forceLogCompaction()

    def _serialize(self, tmp_path: str, data: tuple[Any, Any, Any]) -> None:
        last, prev, cluster = data
        try:
            self._write_snapshot(tmp_path, last, prev, [(n.id, n.address) for n in cluster], self._dump_state())
            self._serialize_status = SERIALIZER_STATE.SUCCESS
        except Exception:
            self._serialize_status = SERIALIZER_STATE.FAILED
            raise

    def _write_snapshot(
        self, path: str, last: Any, prev: Any, members: list[tuple[str, str]], state: bytes
    ) -> None:
        with timed(SNAPSHOT_SECONDS):
            write_snapshot_file(path, self.keys, last, prev, members, state)
        SNAPSHOT_BYTES.set(os.path.getsize(path))
        self.log(f"snapshot written at index {last[1]} (term {last[2]})")

    def rewrite_as_single_member(self, state: bytes, applied_index: int) -> int:
        """After ``stop()``: make this node the only member, keeping state up to ``applied_index``.

        Writes a snapshot at ``applied_index`` whose configuration is this
        node alone and cuts the log to that snapshot (force-new-cluster).
        """
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("stop Raft before rewriting its configuration")
        entries = {entry[1]: entry for entry in self.journal._entries}
        if applied_index in entries and applied_index - 1 in entries:
            last, prev = entries[applied_index], entries[applied_index - 1]
        else:
            # The applied entries were compacted into the current snapshot: use its position.
            index, term, _ = read_snapshot(self._snapshot_path)
            last, prev = (bytes([1]), index, term), (bytes([1]), index - 1, term)
        me = self._core.selfNode
        install_single_member(self.raft_dir, self.keys, last, prev, (me.id, me.address), state, self.log)
        return int(last[1])

    def _serialize_checker(self) -> int:
        status = self._serialize_status
        if status == SERIALIZER_STATE.SUCCESS:
            # pysyncobj renamed the file after our serializer returned.
            fsync_directory(self.raft_dir)
        if status in (SERIALIZER_STATE.SUCCESS, SERIALIZER_STATE.FAILED):
            self._serialize_status = SERIALIZER_STATE.NOT_SERIALIZING
        return status

    def _open_snapshot(self, path: str) -> tuple[bytes, Any, Any, list[RaftMember]]:
        """A snapshot file's state, last and previous entries and members; raises if it does not open."""
        index, term, sealed = read_snapshot(Path(path))
        key_id = record_key_id(sealed)
        if key_id not in self.keys.keyring.key_ids:
            # Sealed under a DEK term this manager never saw (it was down
            # while the term was added and the log compacted): ask a peer.
            self._missing_key(key_id)
        plaintext = open_record(
            self.keys.keyring,
            RecordKind.SNAPSHOT,
            self.keys.cluster_id,
            snapshot_context(index, term),
            sealed,
        )
        body = msgpack.unpackb(plaintext, raw=False)
        last = (self._codec.from_disk(body["last"][0], path), body["last"][1], body["last"][2])
        prev = (self._codec.from_disk(body["prev"][0], path), body["prev"][1], body["prev"][2])
        members = [RaftMember(i, a) for i, a in body["members"]]
        return body["state"], last, prev, members

    def _deserialize(self, path: str) -> tuple[Any, Any, Any]:
        # Our own snapshots and received ones alike were fsynced and renamed by us (the receiver above).
        try:
            state, last, prev, members = self._open_snapshot(path)
            self._load_state(state)
            return last, prev, members
        except Exception as error:
            message = str(error) if isinstance(error, InvalidRecord) else f"{type(error).__name__}: {error}"
            self._on_fatal(f"snapshot {path} could not be loaded: {message}")
            raise

