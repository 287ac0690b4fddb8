"""One manager's Raft: ``RaftNode`` wires the journal, snapshots, outbox, transport and tick thread.

``RaftNode`` is what the manager holds. It builds pysyncobj's ``SyncObj``
(``RaftCore``, the one class that reaches into pysyncobj: ``_seams.py``) with
our journal (``_journal.py``), snapshot hooks (``_snapshots.py``) and outbox
(``_outbox.py``), and drives it from its own tick thread.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from pysyncobj import SyncObjConf
from pysyncobj.config import FAIL_REASON

from ._current_keyring import CurrentKeyring
from ._envelope import EntryCodec
from ._journal import SealedJournal
from ._outbox import Outbox
from ._raft_transport import RaftTransportCore
from ._seams import CoreHooks, RaftCore, RaftMember
from ._snapshots import SealedSnapshots, in_a_thread, install_single_member
from ._tick_watch import TickWatch

__all__ = ["FAIL_REASONS", "RaftConfig", "RaftNode"]

log = logging.getLogger("raftstore.raft")

#: pysyncobj's reasons a proposal or a membership change failed, in words.
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
    # How long the leader's commit notice may wait to ride on the next entry (RaftCore: the commit notice).
    commit_notice_delay: float = 0.01


class RaftNode:
    """One manager's Raft: journal, snapshots, transport and tick thread.

    Callbacks the owner supplies (all run on the tick thread):

    - ``apply(index, payload) -> result``: a committed entry of ours (its
      envelope, ``_envelope.py``);
    - ``advance(index)``: a committed entry of pysyncobj's (no-op, membership);
    - ``dump_state() -> parts`` / ``load_state(parts)``: snapshot contents,
      an iterable of byte strings; ``dump_state`` must only freeze the state
      (the parts are read later, on the snapshot writer's thread);
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
        keys: CurrentKeyring,
        client_context: Callable[[], Any],
        apply: Callable[[int, bytes], Any],
        advance: Callable[[int], None],
        dump_state: Callable[[], Iterable[bytes]],
        load_state: Callable[[Iterable[bytes]], None],
        on_fatal: Callable[[str], None],
        on_leader_change: Callable[[str | None, int], None] = lambda leader, term: None,
        missing_key: Callable[[int], bool] = lambda key_id: False,
        fsync: bool = True,
        log: Callable[[str], None] = log.info,
        config: RaftConfig = RaftConfig(),
        hold_elections: bool = False,
        transport_factory: Callable[..., Any] = RaftTransportCore,
        run_in_background: Callable[[Callable[[], None]], None] = in_a_thread,
    ) -> None:
        self.raft_dir = Path(raft_dir)
        # RaftTransportCore's keyword interface; tests/raftsim passes an in-memory network.
        self.transport_factory = transport_factory
        self.raft_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.keys = keys
        self.client_context = client_context
        self.log = log
        self.config = config
        self._advance_cb = advance
        self._on_leader_change = on_leader_change
        self._leader_seen: str | None = None
        self._snapshots = SealedSnapshots(
            raft_dir=self.raft_dir,
            keys=keys,
            dump_state=dump_state,
            load_state=load_state,
            on_fatal=on_fatal,
            missing_key=missing_key,
            log=log,
            run_in_background=run_in_background,
        )
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # A manager that just joined has an empty log: until it hears from the
        # leader, an election it starts can only depose a healthy leader.
        self._hold_elections_until = time.monotonic() + 30.0 if hold_elections else 0.0
        self._tick_tasks: collections.deque[Callable[[], None]] = collections.deque()
        self._last_log_check = 0.0

        position = self._snapshots.position(check_frames=True)
        first_index = position[0] - 1 if position is not None else 0
        self.journal = SealedJournal(self.raft_dir, EntryCodec(keys), first_index, log, fsync=fsync)
        self._tick_watch = TickWatch(log)
        self._outbox = Outbox(self._tick_watch.timed("fsync", self.journal.sync), ack_window=config.heartbeat_interval / 2)
        self._apply_cb = self._tick_watch.timed("apply", apply)
        # pysyncobj calls it on the tick thread after a snapshot, and we every tick: deleting segment files.
        self.journal.compact_step = self._tick_watch.timed("log compaction", self.journal.compact_step)  # type: ignore[method-assign]
        self._transport: Any = None

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
            fullDumpFile=str(self._snapshots.path),
            journalFile=str(self.raft_dir / "journal-unused"),
            serializer=self._snapshots.serialize_inline,
            deserializer=self._snapshots.deserialize,
            useFork=False,
        )
        hooks = CoreHooks(
            journal=self.journal,
            apply_entry=self._apply,
            advance=self._advance,
            open_transport=self._open_transport,
            send=self._outbox.send,
            after_sends=self._outbox.persist,
        )
        self._core = RaftCore(self_node, others, conf, hooks)
        self._core.commit_notice_delay = config.commit_notice_delay
        self._core.receive_snapshots_with(
            lambda inner: self._snapshots.serializer(inner, self._send_backlog, self._snapshot_installed)
        )

    def _open_transport(self, **wiring: Any) -> Any:
        """Build the transport when pysyncobj asks for it (inside ``RaftCore``'s constructor)."""
        transport = self.transport_factory(
            cluster_id=self.keys.cluster_id, client_context=self.client_context, log=self.log, **wiring
        )
        self._transport = transport
        self._outbox.connect(transport)
        return transport

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="raft-tick", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        period = self.config.tick_period
        while not self._stopping.is_set():
            try:
                self._tick_watch.tick(lambda: self.tick_once(period))
            except Exception:  # keep Raft alive; a bug here must be visible
                log.exception("raft tick failed")
                time.sleep(period)
        try:
            self._core.destroy()
        except Exception:
            log.exception("raft shutdown failed")

    def abandon(self) -> None:
        """Drop this node without a teardown, as a power cut would (the deterministic simulation's crash).

        Only what the operating system would reclaim from a dead process is
        released (pysyncobj's wake-up pipe); the journal is left exactly as
        the crash leaves it, unsynced and unclosed.
        """
        self._core.close_wakeup_pipe()

    def tick_once(self, wait: float = 0.0) -> None:
        """One turn of the tick thread (the deterministic simulation in tests/raftsim calls it directly)."""
        self._hold_elections()
        while self._tick_tasks:
            self._tick_tasks.popleft()()
        # The leader counts itself toward a commit during the tick: whatever
        # it appended (even while polling) is durable first (Outbox.send, duty 2).
        self._outbox.persist()
        due = self._core.next_append_in()  # a commit notice waiting for its deadline: wake for it
        self._core.doTick(wait if due is None else min(wait, due))
        self.journal.compact_step()
        self._watch_leader()
        now = time.monotonic()
        if now - self._last_log_check > 1.0:
            self._last_log_check = now
            self._maybe_compact_by_size()

    def _hold_elections(self) -> None:
        if not self._hold_elections_until:
            return
        if self._core.leader() is not None or time.monotonic() > self._hold_elections_until:
            self._hold_elections_until = 0.0
            return
        self._core.postpone_election(time.monotonic() + self.config.election_timeout_max)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._snapshots.close(timeout)

    # ------------------------------------------------------------ proposals

    def append_entry(self, payload: bytes | Callable[[], bytes | None], callback: Callable[[Any, int], None]) -> None:
        """Hand a sealed entry (an envelope) to Raft to append to the log (thread-safe). ``callback(result, fail_reason)`` runs on the tick thread.

        ``payload`` may be a builder instead: called on the tick thread right
        before Raft takes its commands, it returns the envelope (or None for
        nothing to append), so that the caller's group takes in everything
        queued until then. From the tick thread itself this costs no wake-up.
        """
        if callable(payload):
            self._core.submit_later(payload, callback, wake=threading.current_thread() is not self._thread)
        else:
            self._core.submit(payload, callback)

    def add_member(self, node_id: str, address: str, callback: Callable[[Any, int], None]) -> None:
        self._core.addNodeToCluster(RaftMember(node_id, address), callback=callback)

    def remove_member(self, node_id: str, address: str, callback: Callable[[Any, int], None]) -> None:
        self._core.removeNodeFromCluster(RaftMember(node_id, address), callback=callback)

    def transfer_leadership(self) -> None:
        """Ask the most caught-up follower to take over (best effort; thread-safe)."""
        self._tick_tasks.append(lambda: self._core.transferLeadership(None, callback=lambda *_: None))

    def adopt_connection(self, node_id: str, sock: Any) -> None:
        self._transport.adopt(node_id, sock)

    def is_member(self, node_id: str) -> bool:
        return bool(self._transport.is_peer(node_id))

    def force_snapshot(self) -> None:
        self._core.forceLogCompaction()

    # ------------------------------------------------------------ status

    @property
    def term(self) -> int:
        """The current term, cheap enough to stamp on every log line."""
        return int(self._core.raftCurrentTerm)

    def _watch_leader(self) -> None:
        """Once per tick: report a leader change (a single attribute read when nothing changed)."""
        leader = self._core.leader()
        leader_id = leader.id if leader is not None else None
        if leader_id != self._leader_seen:
            self._leader_seen = leader_id
            self._on_leader_change(leader_id, self._core.raftCurrentTerm)

    def status(self) -> dict[str, Any]:
        """A view of Raft for other threads, computed on request (each read is atomic under the GIL)."""
        core = self._core
        leader = core.leader()
        self_node = core.selfNode
        members = [(self_node.id, self_node.address)] + sorted((n.id, n.address) for n in core.otherNodes)
        return {
            "term": core.raftCurrentTerm,
            "commit_index": core.raftCommitIndex,
            "applied_index": core.raftLastApplied,
            "leader": leader.id if leader is not None else None,
            "is_leader": core.is_leader(),
            "members": members,
            "connected": sorted(self._transport.connected()),
            "has_quorum": core.hasQuorum,
            "log_entries": len(self.journal),
            # On the leader: the highest index known to be on each other manager's log (pysyncobj's matchIndex).
            "match_index": core.match_index() if core.is_leader() else {},
        }

    # ------------------------------------------------------------ apply hooks

    def _apply(self, index: int, payload: bytes) -> Any:
        self._outbox.persist()  # nothing is applied before it is durable here (Outbox.send, duty 3)
        return self._apply_cb(index, payload)

    def _advance(self, index: int) -> None:
        self._outbox.persist()
        self._advance_cb(index)

    # ------------------------------------------------------------ snapshots

    def snapshot_receiving_idle(self) -> float | None:
        """Seconds since a leader's snapshot last made progress here (0 while it loads), or None if none came."""
        return self._snapshots.receiving_idle()

    def _send_backlog(self, node_id: str) -> int:
        """Bytes waiting in the connection to ``node_id`` (0 for a transport that does not say)."""
        backlog = getattr(self._transport, "backlog", None)
        return int(backlog(node_id)) if backlog is not None else 0

    def _snapshot_installed(self) -> None:
        """A leader's snapshot was just loaded, which may have taken longer than an election timeout: that is no reason to start one."""
        self._core.postpone_election(time.monotonic() + self.config.election_timeout_max)

    def _maybe_compact_by_size(self) -> None:
        # Not while one is being written: the log shrinks only once it is in place, and a request
        # made meanwhile would start a second, needless snapshot right after the first.
        if self._snapshots.writing:
            return
        if self.journal.disk_bytes() > self.config.compaction_max_log_bytes:
            self._core.forceLogCompaction()

    def rewrite_as_single_member(self, state_parts: Iterable[bytes], applied_index: int) -> int:
        """After ``stop()``: make this node the only member, keeping state up to ``applied_index``.

        Writes a snapshot at ``applied_index`` whose configuration is this
        node alone and cuts the log to that snapshot (force-new-cluster).
        """
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("stop Raft before rewriting its configuration")
        entries = {entry[1]: entry for entry in self.journal.entries()}
        if applied_index in entries and applied_index - 1 in entries:
            last, prev = entries[applied_index], entries[applied_index - 1]
        else:
            # The applied entries were compacted into the current snapshot: use its position.
            position = self._snapshots.position()
            if position is None:
                raise RuntimeError("the applied entries are neither in the log nor in a snapshot")
            index, term = position
            last, prev = (bytes([1]), index, term), (bytes([1]), index - 1, term)
        me = self._core.selfNode
        install_single_member(self.raft_dir, self.keys, last, prev, (me.id, me.address), state_parts, self.log)
        return int(last[1])
