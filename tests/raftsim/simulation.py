"""A deterministic simulation of raftstore's Raft layer (etcd rafttest / FoundationDB style).

What runs here is the real code: N ``RaftNode`` objects of ``raftstore.raft``
(pysyncobj's ``SyncObj`` with our seams: apply hook, append-entries rule and
transport; the ``Outbox`` with its persist-before-send and ack filter; and the
``SealedJournal`` on real segment files in a temporary directory). Only three
things are replaced, all from one seed:

- **the network**: ``SimNetwork`` stands in for ``RaftTransportCore`` (through
  ``RaftNode(transport_factory=...)``). Messages are msgpack frames, exactly as
  on the wire. A link is a connection: it comes up some time after both ends
  can reach each other, carries frames in order, and loses what is in flight
  when it breaks (a crash, a partition). On top of that ``Faults`` can drop,
  duplicate and reorder single frames, which TCP would never do but Raft must
  survive.
- **time**: every node has its own clock (an offset and a drift from the
  simulated time). While a node ticks or receives, pysyncobj's
  ``monotonicTime`` and ``random`` and the Raft layer's ``time`` read that node's
  clock and random generator. Nothing sleeps; an hour of Raft runs in seconds.
- **the disk's memory**: fsync is a no-op here, and the ``Durability`` tracker
  models it instead. A crash is a power cut: the node's segment log is cut
  back to what was synced (a truncation is assumed to reach the disk at once,
  the appends after it only at the next sync), its meta file holds what was
  last written atomically, and everything in memory is gone.

The event loop takes the earliest event (a node's tick, a frame's delivery, a
connection coming up, a fault, a client proposal). A node ticks every 50 ms
and, as the real tick thread does when its poll returns, within a millisecond
of a frame or a proposal reaching it. Ties are broken by node ids
and per-link counters, never by the order of set iteration, so a seed replays
the same run in any process.

Checks (a ``SafetyViolation`` names the first one broken):

- election safety: at most one leader per term;
- log matching: two logs with an entry of the same index and term are
  identical up to it;
- leader completeness: a new leader's log holds every entry committed so far;
- state machine safety: no two nodes apply different entries at one index;
- no acknowledged entry lost: at the end, with every node up and connected,
  every proposal whose callback said success is applied, at the index it was
  acknowledged with, on every node;
- no critical log line (pysyncobj's ``truncating already-applied`` or our own
  refusal to truncate a committed entry).

Adding a scenario: a function that takes a ``Cluster`` and drives it, e.g.::

    def scenario_flaky_links(cluster: Cluster) -> None:
        cluster.faults = Faults(drop=0.05, duplicate=0.05, reorder=0.05)
        cluster.run(10.0)        # random faults and proposals for 10 s
        cluster.settle()         # heal, restart, wait for one committed log

then ``run_seed(seed, scenario_flaky_links, tmp_path)`` (see test_raftsim.py).
``RAFTSIM_SEED=N`` makes the tests run only seed N and print its whole trace.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import heapq
import logging
import os
import random
import re
import shutil
import types
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pysyncobj.syncobj as pysyncobj_module

from raftstore.raft import _current_keyring, _envelope, _journal, _node, _outbox, _snapshots
from raftstore.net._frames import FrameBuffer, encode_frame
from raftstore.storage._segments import SegmentLog
from raftstore.keyring import DataKey, Keyring, RecordKind, entry_context, seal

__all__ = [
    "SEED_ENV",
    "SLOW_ENV",
    "Cluster",
    "Faults",
    "SafetyViolation",
    "DATA_LOSS",
    "SimTransportCore",
    "run_seed",
    "seeds",
    "SCENARIOS",
    "scenario_random_faults",
    "scenario_chaos_network",
    "scenario_duplicates_and_power_cuts",
    "scenario_log_compaction",
]

SEED_ENV = "RAFTSIM_SEED"
SLOW_ENV = "RAFTSTORE_SLOW_FAULTS"

#: The kinds of violation that mean committed data was lost or diverged.
DATA_LOSS = frozenset({"leader completeness", "state machine safety", "acknowledged entry lost", "log matching"})


class SafetyViolation(AssertionError):
    """A Raft invariant does not hold; ``kind`` names it, the message says where (``index``: the entry, if one)."""

    def __init__(self, kind: str, message: str, index: int | None = None) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.index = index


_MILESTONE = re.compile(r" (start|crash|pause|partition|heal|settling|CRITICAL|inject)\b| leads term ")
_SPAN = re.compile(r"\[(\d+)\.\.(\d+)\]| at (\d+)$")


def _touches(line: str, index: int) -> bool:
    """Whether a trace line carries entry ``index`` (an append-entries span, or an ack "at N")."""
    for match in _SPAN.finditer(line):
        if match.group(3) is not None:
            if int(match.group(3)) == index:
                return True
        elif int(match.group(1)) <= index <= int(match.group(2)):
            return True
    return False


def seeds(count: int, slow_count: int) -> list[int]:
    """The seeds a test runs: RAFTSIM_SEED alone, else ``count`` (``slow_count`` under make test-slow)."""
    if os.environ.get(SEED_ENV):
        return [int(os.environ[SEED_ENV])]
    return list(range(slow_count if os.environ.get(SLOW_ENV) else count))


@dataclass
class Faults:
    """What the nemesis does; rates are per simulated second, probabilities per frame."""

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    crash_rate: float = 0.3
    partition_rate: float = 0.2
    pause_rate: float = 0.2
    proposal_rate: float = 20.0
    max_down: int = 99  # crashed nodes at once (any number keeps safety; fewer keeps liveness)
    crash_on_receive: float = 0.0  # a power cut right after a node handled a frame

    @classmethod
    def none(cls) -> "Faults":
        """No nemesis and no background proposals: for scripted scenarios."""
        return cls(crash_rate=0, partition_rate=0, pause_rate=0, proposal_rate=0)


# ------------------------------------------------------------------ runtime patches


class _Runtime:
    """Routes pysyncobj's and the Raft layer's clock and randomness to the node being run."""

    def __init__(self, cluster: "Cluster") -> None:
        self.cluster = cluster
        self.node: SimNode | None = None

    def monotonic(self) -> float:
        node = self.node
        now = self.cluster.now
        if node is None:
            return now
        # Every read moves on by 50 us, as work takes time: pysyncobj has loops
        # that end only when the clock has moved (a snapshot not yet ready to send).
        node.clock_read = max(node.clock_offset + now * (1.0 + node.clock_drift), node.clock_read + 5e-5)
        return node.clock_read

    def random(self) -> float:
        assert self.node is not None, "randomness outside a node's turn would not replay"
        return self.node.rng.random()

    def sleep(self, seconds: float) -> None:  # pysyncobj sleeps only when its transport is not ready
        raise AssertionError("nothing may sleep in the simulation")


#: The modules of raftstore.raft that read the clock while Raft runs.
_TIMED_MODULES = (_journal, _node, _outbox, _snapshots)


@contextmanager
def _patched(runtime: _Runtime) -> Iterator[None]:
    fake_time = types.SimpleNamespace(
        monotonic=runtime.monotonic, time=runtime.monotonic, perf_counter=runtime.monotonic, sleep=runtime.sleep
    )
    fake_random = types.SimpleNamespace(random=runtime.random)
    saved = (pysyncobj_module.monotonicTime, pysyncobj_module.random, pysyncobj_module.time, os.fsync)
    saved_times = [module.time for module in _TIMED_MODULES]
    pysyncobj_module.monotonicTime = runtime.monotonic
    pysyncobj_module.random = fake_random
    pysyncobj_module.time = fake_time
    for module in _TIMED_MODULES:
        module.time = fake_time  # type: ignore[assignment]
    os.fsync = lambda fd: None  # durability is modelled by ``Durability``
    try:
        yield
    finally:
        (
            pysyncobj_module.monotonicTime,
            pysyncobj_module.random,
            pysyncobj_module.time,
            os.fsync,
        ) = saved
        for module, saved_time in zip(_TIMED_MODULES, saved_times):
            module.time = saved_time  # type: ignore[assignment]


class _CriticalLines(logging.Handler):
    def __init__(self, cluster: "Cluster") -> None:
        super().__init__(logging.CRITICAL)
        self.cluster = cluster

    def emit(self, record: logging.LogRecord) -> None:
        self.cluster.critical.append(record.getMessage())
        self.cluster.trace(f"CRITICAL {record.getMessage()}")


# ------------------------------------------------------------------ disk


class Durability:
    """What a node's segment log would hold after a power cut.

    Wraps the ``SegmentLog`` inside a ``SealedJournal``: an append is durable
    at the next ``sync``; a truncation is taken to be durable at once (the
    worst case: the file's new length reached the disk, the appends after it
    did not).
    """

    def __init__(self, segments: SegmentLog) -> None:
        self.segments = segments
        self.durable_last = segments.last_index
        for name in ("sync", "truncate_after", "reset", "roll", "drop_before"):
            setattr(segments, name, self._wrap(name, getattr(segments, name)))

    def _wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            if name == "truncate_after":
                if self.durable_last is not None:
                    self.durable_last = min(self.durable_last, args[0])
            elif name in ("sync", "reset", "roll"):
                self.durable_last = self.segments.last_index
            return result

        return wrapped

    def power_cut(self) -> tuple[int | None, int | None]:
        """Close without syncing and cut the files back to the durable entries; returns (durable, in memory)."""
        in_memory = self.segments.last_index
        directory = self.segments.directory
        self.segments.close_quietly()
        reopened = SegmentLog.open(directory, chain=self.segments.chain, log=lambda line: None)
        reopened.entries()
        if self.durable_last is None:
            reopened.reset([])
        elif reopened.last_index is not None and reopened.last_index > self.durable_last:
            reopened.truncate_after(self.durable_last)
        reopened.close()
        return self.durable_last, in_memory


# ------------------------------------------------------------------ network


class SimNetwork:
    """Connections between nodes, frames in flight, partitions."""

    def __init__(self, cluster: "Cluster") -> None:
        self.cluster = cluster
        self.cores: dict[str, SimTransportCore] = {}
        self.epoch: dict[frozenset[str], int] = collections.defaultdict(int)
        self.up: set[frozenset[str]] = set()
        self.connecting: set[frozenset[str]] = set()
        self.groups: list[set[str]] | None = None  # a partition: only nodes in one group talk
        self.link_seq: dict[tuple[str, str], int] = collections.defaultdict(int)
        self.link_last: dict[tuple[str, str], float] = collections.defaultdict(float)
        self.link_rng: dict[tuple[str, str], random.Random] = {}

    def rng(self, src: str, dst: str) -> random.Random:
        key = (src, dst)
        if key not in self.link_rng:
            self.link_rng[key] = random.Random(f"{self.cluster.seed}:{src}->{dst}")
        return self.link_rng[key]

    def reachable(self, a: str, b: str) -> bool:
        ca, cb = self.cores.get(a), self.cores.get(b)
        if ca is None or cb is None or not ca.is_peer(b) or not cb.is_peer(a):
            return False
        return self.groups is None or any(a in g and b in g for g in self.groups)

    def reconcile(self) -> None:
        """Break connections that can no longer exist; schedule the ones that now can."""
        ids = sorted(self.cluster.nodes)
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                pair = frozenset((a, b))
                if self.reachable(a, b):
                    if pair not in self.up and pair not in self.connecting:
                        self.connecting.add(pair)
                        delay = self.rng(min(a, b), max(a, b)).uniform(0.05, 0.5)  # dial retry and handshake
                        self.cluster.schedule(self.cluster.now + delay, (2, a, b), ("connect", pair))
                elif pair in self.up:
                    self.disconnect(pair)

    def connect(self, pair: frozenset[str]) -> None:
        self.connecting.discard(pair)
        a, b = sorted(pair)
        if pair in self.up or not self.reachable(a, b):
            return
        self.up.add(pair)
        self.epoch[pair] += 1
        self.cluster.trace(f"link {a}-{b} up")
        for here, there in ((a, b), (b, a)):
            self.cluster.as_node(here, lambda: self.cores[here].on_connected(there))

    def disconnect(self, pair: frozenset[str]) -> None:
        self.up.discard(pair)
        self.epoch[pair] += 1  # what is in flight is lost with the connection
        a, b = sorted(pair)
        self.cluster.trace(f"link {a}-{b} down")
        for here, there in ((a, b), (b, a)):
            if here in self.cores:
                self.cluster.as_node(here, lambda: self.cores[here].on_disconnected(there))

    def transmit(self, src: str, dst: str, frame: bytes, summary: str) -> None:
        self.cluster.sends_this_step += 1
        if self.cluster.sends_this_step > _MAX_SENDS_PER_STEP:  # pysyncobj loops on the clock in places
            raise SafetyViolation("livelock", f"{src} sent {_MAX_SENDS_PER_STEP} frames in one step, the last: {summary}")
        pair = frozenset((src, dst))
        faults = self.cluster.faults
        rng = self.rng(src, dst)
        roll_drop, roll_dup, roll_reorder = rng.random(), rng.random(), rng.random()
        if roll_drop < faults.drop:
            self.cluster.trace(f"drop {src}->{dst} {summary}")
            return
        copies = 2 if roll_dup < faults.duplicate else 1
        for _ in range(copies):
            at = self.cluster.now + rng.uniform(0.0002, 0.003)
            if roll_reorder < faults.reorder:
                at += rng.uniform(0.0, 0.15)  # may overtake or be overtaken
            else:
                at = max(at, self.link_last[(src, dst)])  # a connection delivers in order
                self.link_last[(src, dst)] = at
            self.link_seq[(src, dst)] += 1
            key = (1, src, dst, self.link_seq[(src, dst)])
            self.cluster.schedule(at, key, ("deliver", src, dst, self.epoch[pair], frame, summary))

    def deliver(self, src: str, dst: str, epoch: int, frame: bytes, summary: str) -> None:
        pair = frozenset((src, dst))
        if pair not in self.up or self.epoch[pair] != epoch:
            return
        node = self.cluster.nodes[dst]
        if node.paused_until > self.cluster.now:  # a stopped process reads nothing; TCP buffers
            self.link_seq[(src, dst)] += 1
            key = (1, src, dst, self.link_seq[(src, dst)])
            self.cluster.schedule(node.paused_until, key, ("deliver", src, dst, epoch, frame, summary))
            return
        buffer = FrameBuffer()
        buffer.feed(frame)
        (message,) = buffer.frames()
        noisy = summary.startswith(("append_entries hb", "apply_command"))
        self.cluster.trace(f"recv {src}->{dst} {summary}", noisy=noisy)
        self.cluster.as_node(dst, lambda: self.cores[dst].on_message(src, message))
        crash_on_receive = self.cluster.faults.crash_on_receive
        if crash_on_receive and self.cluster.rng.random() < crash_on_receive:
            self.cluster.crash(dst)  # before the tick thread gets to sync what the frame changed
        else:
            self.cluster.wake(dst)


#: More frames than this from one event means a loop that waits for time to pass (the clock stands still).
_MAX_SENDS_PER_STEP = 5000


class SimTransportCore:
    """``RaftTransportCore``'s interface over ``SimNetwork`` (built by ``RaftNode``'s transport factory)."""

    def __init__(
        self,
        network: SimNetwork,
        *,
        local_id: str,
        on_message: Callable[[str, Any], None],
        on_connected: Callable[[str], None],
        on_disconnected: Callable[[str], None],
        **_: Any,
    ) -> None:
        self.network = network
        self.local_id = local_id
        self.on_message = on_message
        self.on_connected = on_connected
        self.on_disconnected = on_disconnected
        self._peers: dict[str, str] = {}
        network.cores[local_id] = self

    def add_peer(self, node_id: str, address: str) -> None:
        self._peers[node_id] = address
        self.network.reconcile()

    def drop_peer(self, node_id: str) -> None:
        self._peers.pop(node_id, None)
        self.network.reconcile()

    def is_peer(self, node_id: str) -> bool:
        return node_id in self._peers

    def connected(self) -> set[str]:
        return {p for p in self._peers if frozenset((self.local_id, p)) in self.network.up}

    def is_connected(self, node_id: str) -> bool:
        return frozenset((self.local_id, node_id)) in self.network.up

    def send(self, node_id: str, message: Any) -> bool:
        if not self.is_connected(node_id):
            return False
        self.network.transmit(self.local_id, node_id, encode_frame(message), _summary(message))
        return True

    def backlog(self, node_id: str) -> int:
        return 0  # a link takes every frame at once; delivery times and faults are the network's

    def tick(self) -> None:
        pass

    def adopt(self, node_id: str, sock: Any) -> None:
        raise AssertionError("no sockets in the simulation")

    def close(self) -> None:
        pass


def _summary(message: dict[str, Any]) -> str:
    kind = message.get("type")
    if kind == "append_entries":
        entries = message.get("entries") or []
        if not entries and "prevLogIdx" in message:
            return f"append_entries hb t{message['term']} prev={message['prevLogIdx']} commit={message['commit_index']}"
        span = f"{entries[0][1]}..{entries[-1][1]}" if entries else "snapshot"
        prev = message.get("prevLogIdx")
        return f"append_entries t{message['term']} prev={prev} [{span}] commit={message['commit_index']}"
    if kind == "next_node_idx":
        return f"ack next={message['next_node_idx']} ok={message['success']} reset={message['reset']}"
    if kind in ("request_vote", "response_vote"):
        return f"{kind} t{message['term']}"
    return str(kind)


# ------------------------------------------------------------------ nodes


@dataclass
class SimNode:
    node_id: str
    directory: Path
    clock_offset: float
    clock_drift: float
    rng: random.Random
    raft: _node.RaftNode | None = None
    durability: Durability | None = None
    incarnation: int = 0
    paused_until: float = 0.0
    clock_read: float = 0.0
    wake_pending: bool = False
    applied_upto: int = 0
    leader_terms: set[int] = field(default_factory=set)

    @property
    def alive(self) -> bool:
        return self.raft is not None

    @property
    def core(self) -> Any:
        assert self.raft is not None
        return self.raft._core

    def log(self) -> list[tuple[bytes, int, int]]:
        assert self.raft is not None
        return [(bytes(c), int(i), int(t)) for c, i, t in self.raft.journal._entries]


#: The daemon's Raft settings, with log compaction out of reach (a scenario may set ``Cluster.config``).
NO_COMPACTION = _node.RaftConfig(compaction_min_entries=10**9, compaction_min_seconds=10.0**9)


class Cluster:
    """N simulated managers, the network between them, a nemesis and the checks."""

    def __init__(self, seed: int, directory: Path, size: int = 3, faults: Faults | None = None, trace_lines: int = 400):
        self.seed = seed
        self.directory = directory
        self.faults = faults or Faults()
        self.config = NO_COMPACTION  # read when a node starts
        self.rng = random.Random(f"{seed}:nemesis")
        self.now = 0.0
        self._events: list[tuple[float, tuple[Any, ...], tuple[Any, ...]]] = []
        self.steps = 0
        self.sends_this_step = 0
        self._trace: collections.deque[str] = collections.deque(maxlen=trace_lines)
        self.full_trace: list[str] = []
        self.runtime = _Runtime(self)
        self.network = SimNetwork(self)
        self.keys = _current_keyring.CurrentKeyring(Keyring((DataKey.generate(1),), 1), "raftsim" + "0" * 18)
        self.critical: list[str] = []
        self.tolerate_critical = False  # True: only the data checks fail (to watch a known bug run its course)
        ids = [f"n{i}" for i in range(1, size + 1)]
        self.members = [(i, f"sim:{i}") for i in ids]
        self.nodes = {
            i: SimNode(
                i,
                directory / i,
                clock_offset=self.rng.uniform(0, 1000),
                clock_drift=self.rng.uniform(-0.01, 0.01),
                rng=random.Random(f"{seed}:{i}"),
            )
            for i in ids
        }
        # checks
        self.leaders: dict[int, str] = {}
        self.committed: dict[int, tuple[int, bytes]] = {}
        self.applied: dict[int, tuple[str, str]] = {}
        self.acknowledged: dict[bytes, int] = {}
        self.labels: dict[bytes, str] = {}
        self.proposals = 0

    # ------------------------------------------------------------ running

    @contextmanager
    def running(self) -> Iterator["Cluster"]:
        handler = _CriticalLines(self)
        loggers = [logging.getLogger("pysyncobj"), logging.getLogger("raftstore.raft")]
        for lg in loggers:
            lg.addHandler(handler)
        try:
            with _patched(self.runtime):
                for node_id in sorted(self.nodes):
                    self.start(node_id)
                self._schedule_nemesis()
                self._schedule_proposal()
                yield self
        finally:
            for lg in loggers:
                lg.removeHandler(handler)
            for node in self.nodes.values():
                if node.raft is not None:
                    node.raft.abandon()
                if node.durability is not None:
                    node.durability.segments.close_quietly()

    def schedule(self, at: float, key: tuple[Any, ...], event: tuple[Any, ...]) -> None:
        heapq.heappush(self._events, (at, key, event))

    def as_node(self, node_id: str, action: Callable[[], Any]) -> Any:
        previous, self.runtime.node = self.runtime.node, self.nodes[node_id]
        try:
            return action()
        finally:
            self.runtime.node = previous

    def run(self, seconds: float) -> None:
        """Process events for ``seconds`` of simulated time, checking after each."""
        end = self.now + seconds
        while self._events and self._events[0][0] <= end:
            at, _key, event = heapq.heappop(self._events)
            self.now = at
            self.steps += 1
            self.sends_this_step = 0
            self._dispatch(event)
            self._observe()
        self.now = end

    def _dispatch(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "tick":
            node_id, incarnation = event[1], event[2]
            node = self.nodes[node_id]
            if node.incarnation != incarnation or not node.alive:
                return
            if node.paused_until <= self.now:
                self.as_node(node_id, lambda: node.raft.tick_once(0.0))  # type: ignore[union-attr]
            period = self.config.tick_period * node.rng.uniform(0.9, 1.1)
            self.schedule(max(self.now + period, node.paused_until), (0, node_id), ("tick", node_id, incarnation))
        elif kind == "wake":
            node = self.nodes[event[1]]
            node.wake_pending = False
            if node.incarnation == event[2] and node.alive and node.paused_until <= self.now:
                self.as_node(event[1], lambda: node.raft.tick_once(0.0))  # type: ignore[union-attr]
        elif kind == "deliver":
            self.network.deliver(*event[1:])
        elif kind == "connect":
            self.network.connect(event[1])
        elif kind == "nemesis":
            self._nemesis()
            self._schedule_nemesis()
        elif kind == "propose":
            self._propose()
            self._schedule_proposal()
        elif kind == "call":
            event[1]()

    def wake(self, node_id: str) -> None:
        """The tick thread's poll returns when a frame or a proposal arrives: tick again at once."""
        node = self.nodes[node_id]
        if not node.wake_pending:
            node.wake_pending = True
            self.schedule(self.now + node.rng.uniform(0.0001, 0.001), (0, node_id), ("wake", node_id, node.incarnation))

    def trace(self, line: str, noisy: bool = False) -> None:
        text = f"{self.now:9.4f} {line}"
        self.full_trace.append(text)
        if not noisy:
            self._trace.append(text)

    def shortened_trace(self, index: int | None = None, tail: int = 30) -> str:
        """The story of a failure: every fault, start and election, what touched entry ``index``, and the last lines."""
        recent = set(list(self._trace)[-tail:])
        kept = [
            line
            for line in self.full_trace
            if line in recent or _MILESTONE.search(line) or (index is not None and _touches(line, index))
        ]
        return "\n".join(kept)

    # ------------------------------------------------------------ node lifecycle

    def start(self, node_id: str) -> None:
        node = self.nodes[node_id]
        node.incarnation += 1
        node.applied_upto = 0
        node.paused_until = 0.0
        node.wake_pending = False

        def build() -> None:
            node.raft = _node.RaftNode(
                raft_dir=node.directory,
                self_member=(node_id, f"sim:{node_id}"),
                members=self.members,
                keys=self.keys,
                client_context=lambda: None,
                apply=lambda index, payload: self._on_apply(node, index, payload),
                advance=lambda index: self._on_apply(node, index, None),
                dump_state=lambda: [str(node.applied_upto).encode()],
                load_state=lambda parts: setattr(node, "applied_upto", int(b"".join(parts))),
                on_fatal=lambda message: self._fail("fatal", f"{node_id}: {message}"),
                log=lambda line: self.trace(f"{node_id} {line}"),
                config=self.config,
                transport_factory=lambda **kw: SimTransportCore(self.network, **kw),
                run_in_background=lambda job: job(),  # a snapshot is written at once: no thread, same seed same run
            )
            node.durability = Durability(node.raft.journal._segments)

        self.as_node(node_id, build)
        self.trace(f"start {node_id} (incarnation {node.incarnation}, log ..{node.log()[-1][1]})")
        self.network.reconcile()
        first_tick = self.now + node.rng.uniform(0, self.config.tick_period)
        self.schedule(first_tick, (0, node_id), ("tick", node_id, node.incarnation))

    def crash(self, node_id: str) -> None:
        """Power cut: unsynced appends are lost, everything in memory too."""
        node = self.nodes[node_id]
        if not node.alive:
            return
        assert node.durability is not None
        if node.raft is not None:
            node.raft.abandon()
        node.raft = None
        self.network.cores.pop(node_id, None)
        for pair in sorted((p for p in self.network.up if node_id in p), key=sorted):
            self.network.disconnect(pair)
        self.network.connecting = {p for p in self.network.connecting if node_id not in p}
        durable, in_memory = node.durability.power_cut()
        node.durability = None
        self.trace(f"crash {node_id} (log on disk ..{durable}, in memory ..{in_memory})")
        self.network.reconcile()

    def pause(self, node_id: str, seconds: float) -> None:
        node = self.nodes[node_id]
        node.paused_until = max(node.paused_until, self.now + seconds)
        self.trace(f"pause {node_id} for {seconds:.2f}s")

    def partition(self, *groups: set[str]) -> None:
        self.network.groups = [set(g) for g in groups]
        self.trace(f"partition {' | '.join(','.join(sorted(g)) for g in groups)}")
        self.network.reconcile()

    def heal(self) -> None:
        if self.network.groups is not None:
            self.network.groups = None
            self.trace("heal")
            self.network.reconcile()

    def leader(self) -> str | None:
        """The node that leads the highest term, if any is up and leading."""
        leading = [n for n in self.nodes.values() if n.alive and n.core._isLeader()]
        return max(leading, key=lambda n: n.core.raftCurrentTerm).node_id if leading else None

    def run_until(self, condition: Callable[[], bool], limit: float = 10.0, step: float = 0.05) -> None:
        """Run until ``condition()`` holds, in ``step``s of simulated time, for at most ``limit`` seconds."""
        deadline = self.now + limit
        while not condition():
            if self.now >= deadline:
                self._fail("liveness", f"condition not reached within {limit}s")
            self.run(step)

    def deliver_now(self, src: str, dst: str, message: dict[str, Any]) -> None:
        """Hand ``dst`` a message from ``src`` at once, as if the network carried it (a forged or stale frame)."""
        buffer = FrameBuffer()
        buffer.feed(encode_frame(message))
        (decoded,) = buffer.frames()
        self.trace(f"inject {src}->{dst} {_summary(message)}")
        self.as_node(dst, lambda: self.network.cores[dst].on_message(src, decoded))

    def at(self, when: float, action: Callable[[], None]) -> None:
        """Run ``action`` at simulated time ``when`` (for scripted scenarios)."""
        self.schedule(when, (3, self.steps), ("call", action))

    # ------------------------------------------------------------ nemesis and clients

    def _schedule_nemesis(self) -> None:
        f = self.faults
        rate = f.crash_rate + f.partition_rate + f.pause_rate
        if rate > 0:
            self.schedule(self.now + self.rng.expovariate(rate), (4,), ("nemesis",))

    def _nemesis(self) -> None:
        f = self.faults
        ids = sorted(self.nodes)
        roll = self.rng.uniform(0, f.crash_rate + f.partition_rate + f.pause_rate)
        if roll < f.crash_rate:
            down = [i for i in ids if not self.nodes[i].alive]
            if down and (len(down) >= min(f.max_down, len(ids)) or self.rng.random() < 0.6):
                self.start(self.rng.choice(down))
            else:
                self.crash(self.rng.choice([i for i in ids if self.nodes[i].alive]))
        elif roll < f.crash_rate + f.partition_rate:
            if self.network.groups is not None and self.rng.random() < 0.6:
                self.heal()
            else:
                shuffled = ids[:]
                self.rng.shuffle(shuffled)
                cut = self.rng.randint(1, len(ids) - 1)
                self.partition(set(shuffled[:cut]), set(shuffled[cut:]))
        else:
            self.pause(self.rng.choice(ids), self.rng.uniform(0.1, 3.0))

    def _schedule_proposal(self) -> None:
        if self.faults.proposal_rate > 0:
            self.schedule(self.now + self.rng.expovariate(self.faults.proposal_rate), (5,), ("propose",))

    def _propose(self) -> None:
        alive = [i for i in sorted(self.nodes) if self.nodes[i].alive and self.nodes[i].paused_until <= self.now]
        if not alive:
            return
        node_id = self.rng.choice(alive)
        self.propose(node_id)

    def propose(self, node_id: str) -> bytes:
        """Submit a fresh entry through ``node_id``; a success callback marks it acknowledged."""
        self.proposals += 1
        label = f"p{self.proposals}"
        # What a manager's proposer submits: a 16-byte entry id and the record sealed under it.
        entry_id = hashlib.blake2s(f"{self.seed}:{label}".encode(), digest_size=16).digest()
        payload = entry_id + seal(
            self.keys.keyring.active, RecordKind.ENTRY, self.keys.cluster_id, entry_context(entry_id), label.encode()
        )
        self.labels[payload] = label
        node = self.nodes[node_id]

        def done(result: Any, reason: int) -> None:
            if reason == 0:  # FAIL_REASON.SUCCESS: result is the index it applied at
                self.acknowledged[payload] = result
                self.trace(f"ack {label} at {result}")

        self.trace(f"propose {label} via {node_id}", noisy=True)
        self.as_node(node_id, lambda: node.raft.append_entry(payload, done))  # type: ignore[union-attr]
        self.wake(node_id)
        return payload

    # ------------------------------------------------------------ checks

    def _fail(self, kind: str, message: str, index: int | None = None) -> None:
        raise SafetyViolation(kind, message, index)

    def _label(self, command: bytes | None) -> str:
        """A proposal's label, or the kind of a pysyncobj control entry."""
        if command is None:
            return "control"
        if command[:1] == bytes([_envelope.ENTRY_TYPE]):
            return self.labels.get(command[1:], "?")
        return {0: "no-op", 2: "membership", 3: "version"}.get(command[0], "control")

    def _on_apply(self, node: SimNode, index: int, payload: bytes | None) -> int:
        label = "control" if payload is None else self.labels.get(payload, "?")
        first = self.applied.setdefault(index, (node.node_id, label))
        if first[1] != label:
            message = f"{node.node_id} applied {label} at {index}, {first[0]} applied {first[1]}"
            self._fail("state machine safety", message, index)
        node.applied_upto = index
        return index

    def _observe(self) -> None:
        if self.critical and not self.tolerate_critical:
            self._fail("critical log line", self.critical[0])
        for node_id in sorted(self.nodes):
            node = self.nodes[node_id]
            if not node.alive or not node.core._isLeader():
                continue
            term = node.core.raftCurrentTerm
            holder = self.leaders.setdefault(term, node_id)
            if holder != node_id:
                self._fail("election safety", f"{holder} and {node_id} both lead term {term}")
            if term not in node.leader_terms:
                node.leader_terms.add(term)
                self.trace(f"{node_id} leads term {term} (log ..{node.log()[-1][1]})")
                self._check_leader_completeness(node)
            self._record_commits(node)

    def _check_leader_completeness(self, node: SimNode) -> None:
        entries = {i: (t, c) for c, i, t in node.log()}
        first = min(entries)
        for index, (term, command) in sorted(self.committed.items()):
            if index < first:
                continue
            if entries.get(index) != (term, command):
                have = entries.get(index)
                acked = " acknowledged to its client" if command[1:] in self.acknowledged else ""
                self._fail(
                    "leader completeness",
                    f"{node.node_id} leads term {node.core.raftCurrentTerm} without committed entry {index} "
                    f"(term {term}, {self._label(command)}{acked}); it has "
                    + (f"term {have[0]}, {self._label(have[1])}" if have else "nothing there"),
                    index,
                )

    def _record_commits(self, node: SimNode) -> None:
        commit = node.core.raftCommitIndex
        known = max(self.committed, default=0)
        if commit <= known:
            return
        for command, index, term in node.log():
            if known < index <= commit:
                self.committed[index] = (term, command)

    def check_log_matching(self) -> None:
        logs = {i: {e[1]: e for e in n.log()} for i, n in self.nodes.items() if n.alive}
        ids = sorted(logs)
        for x, a in enumerate(ids):
            for b in ids[x + 1 :]:
                la, lb = logs[a], logs[b]
                common = sorted(set(la) & set(lb))
                matched = [i for i in common if la[i][2] == lb[i][2]]
                if not matched:
                    continue
                top = matched[-1]
                for i in common:
                    if i <= top and la[i] != lb[i]:
                        self._fail(
                            "log matching",
                            f"{a} and {b} agree on entry {top} (term {la[top][2]}) but differ at {i}: "
                            f"term {la[i][2]} {self._label(la[i][0])} vs term {lb[i][2]} {self._label(lb[i][0])}",
                            i,
                        )

    def settle(self, limit: float = 30.0) -> None:
        """Stop the nemesis, heal, restart every node, and wait until all apply the same committed log."""
        self.faults = Faults.none()
        self._events = [e for e in self._events if e[2][0] not in ("nemesis", "propose")]
        heapq.heapify(self._events)
        self.heal()
        for node_id in sorted(self.nodes):
            self.nodes[node_id].paused_until = 0.0
            if not self.nodes[node_id].alive:
                self.start(node_id)
        self.trace("settling")
        # One more entry, proposed on the leader, commits everything before it (Raft's no-op rule).
        deadline = self.now + limit
        proposed = False
        while self.now < deadline:
            self.run(0.25)
            leaders = [n for n in self.nodes.values() if n.core._isLeader()]
            if not leaders:
                continue
            if not proposed:
                self.propose(leaders[0].node_id)
                proposed = True
                continue
            last = leaders[0].log()[-1][1]
            if all(n.applied_upto >= last and n.log()[-1][1] == last for n in self.nodes.values()):
                break
        else:
            self._fail("liveness", f"no agreement {limit:.0f}s after healing (steps {self.steps})")

    def check_final(self) -> None:
        """After ``settle``: the checks that need every node up."""
        self.check_log_matching()
        for payload, index in sorted(self.acknowledged.items(), key=lambda kv: kv[1]):
            applied = self.applied.get(index)
            for node in self.nodes.values():
                entries = {i: c for c, i, _ in node.log()}
                if index < min(entries):  # compacted into a snapshot: what was applied there is checked
                    if applied is None or applied[1] != self.labels[payload]:
                        self._fail("acknowledged entry lost", f"{self.labels[payload]} acknowledged at {index}, "
                                   f"applied there: {applied}", index)
                    continue
                command = entries.get(index)
                if command is None or command[1:] != payload:
                    self._fail(
                        "acknowledged entry lost",
                        f"{self.labels[payload]} was acknowledged at {index}; {node.node_id} has "
                        + (self._label(command) if command else "nothing") + f" there (applied: {applied})",
                        index,
                    )
        if self.critical and not self.tolerate_critical:
            self._fail("critical log line", self.critical[0])

    def digest(self) -> str:
        """A fingerprint of the run (for the replay test)."""
        h = hashlib.sha256()
        for line in self._trace:
            h.update(line.encode())
        h.update(repr(sorted((self.labels[p], i) for p, i in self.acknowledged.items())).encode())
        return h.hexdigest()


# ------------------------------------------------------------------ scenarios


def scenario_random_faults(cluster: Cluster) -> None:
    """Crashes (power cuts), partitions and pauses over connections that keep order."""
    cluster.run(12.0)
    cluster.check_log_matching()
    cluster.settle()


def scenario_chaos_network(cluster: Cluster) -> None:
    """The same nemesis, and frames dropped, duplicated and reordered inside connections."""
    cluster.faults.drop = 0.03
    cluster.faults.duplicate = 0.05
    cluster.faults.reorder = 0.05
    cluster.run(12.0)
    cluster.check_log_matching()
    cluster.settle()


def scenario_duplicates_and_power_cuts(cluster: Cluster) -> None:
    """Frames delivered twice (as after a leader's retry), and power cuts right after a frame is handled.

    A repeated append-entries is what made pysyncobj cut and re-append
    entries it had acknowledged; a power cut before the re-append was synced
    then lost them.
    """
    cluster.faults.duplicate = 0.2
    cluster.faults.crash_rate = 0.5
    cluster.faults.crash_on_receive = 0.02
    cluster.run(12.0)
    cluster.check_log_matching()
    cluster.settle()


def scenario_log_compaction(cluster: Cluster) -> None:
    """The random faults, with a snapshot every few dozen entries, streamed to followers that fall behind."""
    cluster.config = dataclasses.replace(NO_COMPACTION, compaction_min_entries=30)
    for node_id in sorted(cluster.nodes):  # they started before the scenario could choose
        cluster.crash(node_id)
        cluster.start(node_id)
    cluster.run(12.0)
    cluster.check_log_matching()
    cluster.settle()


SCENARIOS = (
    scenario_random_faults,
    scenario_chaos_network,
    scenario_duplicates_and_power_cuts,
    scenario_log_compaction,
)


def run_seed(
    seed: int, scenario: Callable[[Cluster], None], directory: Path, size: int = 3, faults: Faults | None = None
) -> Cluster:
    """Run ``scenario`` with ``seed`` in a fresh directory; on a violation, print the trace and re-raise."""
    workdir = directory / f"seed-{seed}"
    shutil.rmtree(workdir, ignore_errors=True)
    cluster = Cluster(seed, workdir, size=size, faults=faults)
    try:
        with cluster.running():
            scenario(cluster)
            cluster.check_final()
    except SafetyViolation as violation:
        print(f"\nraftsim: seed {seed} ({scenario.__name__}) failed after {cluster.steps} steps at t={cluster.now:.4f}")
        print(f"  {violation}")
        print(f"  replay: {SEED_ENV}={seed} pytest -q -n 0 tests/raftsim -k {scenario.__name__}")
        print("\n".join(cluster.full_trace) if os.environ.get(SEED_ENV) else cluster.shortened_trace(violation.index))
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return cluster
