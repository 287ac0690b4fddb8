"""Fault injection against real managers on 127.0.0.1, Jepsen style.

``FaultCluster`` runs 3 or 5 managers whose Raft connections all pass through
test-owned proxies, one per ordered pair (the dialing manager's dial map
points at the proxy), so that single links can be cut, delayed and healed.
``Workload`` runs clients that put, get and compare-and-set a few keys
through the managers' control sockets and record every operation with its
invocation and return time (a failed write is recorded as "unknown": it may
or may not have taken effect; one refused with NoQuorum or by a locked manager
was never handed to Raft and is left out, so if it ever applied, a read of its
unique value would make the history fail the check). After a scenario the harness checks that the
history is linearizable, that every manager converges to the same state at
the same applied index, and that every data directory opens again.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, Callable

from linearizability import Operation, Verdict, check
from netproxy import Proxy

from raftstore import ControlClient, LockedError, NoQuorum, NotFound, RaftstoreError, UpdateOutOfSequence
from raftstore.tools._local_cluster import Cluster, Node, wait_until
from raftstore.raft._raft_transport import DIAL_MAP_ENV

__all__ = ["FaultCluster", "Workload", "Scenario", "run_scenario", "report_dir"]


def report_dir() -> Path:
    path = Path(os.environ.get("RAFTSTORE_FAULT_REPORTS", Path(__file__).parent.parent.parent / "build" / "fault-reports"))
    path.mkdir(parents=True, exist_ok=True)
    return path


class FaultCluster:
    def __init__(self, root: Path, size: int = 3, autolock: bool = True) -> None:
        self.root = root
        self.cluster = Cluster(root)
        self.size = size
        self.autolock = autolock
        self.nodes: list[Node] = []
        self.ids: dict[str, str] = {}  # node name -> node id
        self.links: dict[tuple[str, str], Proxy] = {}  # (dialer name, target name) -> proxy
        self.unlock_key: str | None = None
        self.stale_node: str | None = None  # whose local reads the workload uses, if any

    # ------------------------------------------------------------- forming

    def form(self) -> None:
        for i in range(self.size):
            name = f"m{i + 1}"
            node = self.cluster.add(name, env={DIAL_MAP_ENV: str(self.root / f"{name}.dial.json")})
            self.nodes.append(node)
        first = self.nodes[0]
        self.cluster.init(first, *(["--autolock"] if self.autolock else []))
        if self.autolock:
            self.unlock_key = first.run("unlock-key", "-q").stdout.strip()
        for node in self.nodes[1:]:
            self.cluster.join(node, first, "manager")
        for node in self.nodes:
            self.ids[node.name] = node.info()["node_id"]
        # A proxy for every pair, on the dialing side (the greater id dials).
        for a, b in combinations(self.nodes, 2):
            dialer, target = (a, b) if self.ids[a.name] > self.ids[b.name] else (b, a)
            self.links[(dialer.name, target.name)] = Proxy(target.port)
        for node in self.nodes:
            dial = {self.ids[t]: p.addr for (d, t), p in self.links.items() if d == node.name}
            (self.root / f"{node.name}.dial.json").write_text(json.dumps(dial))
        # Restart so that every Raft connection is dialed through its proxy.
        for node in self.nodes:
            node.stop()
        for node in self.nodes:
            self.start(node)
        self.wait_healthy()

    def start(self, node: Node) -> None:
        node.start()
        if self.autolock and node.info()["locked"]:
            node.run("unlock", input=(self.unlock_key or "") + "\n")

    def wait_healthy(self, timeout: float = 40.0) -> Node:
        def healthy() -> Node | None:
            leader = None
            for node in self.nodes:
                info = node.run("info", "--format", "json", check=False)
                if info.returncode != 0 or info.json.get("state") != "manager":
                    return None
                if info.json.get("is_leader"):
                    leader = node
            return leader

        return wait_until(healthy, timeout=timeout, what="all managers up with a leader")

    def leader(self) -> Node:
        return self.cluster.leader(self.nodes)

    # ------------------------------------------------------------- faults

    def isolate(self, names: set[str]) -> list[tuple[str, str]]:
        """Cut every link between ``names`` and the others."""
        cut = [pair for pair in self.links if (pair[0] in names) != (pair[1] in names)]
        for pair in cut:
            self.links[pair].sever()
        return cut

    def heal(self) -> None:
        for proxy in self.links.values():
            proxy.heal()
            proxy.delay = 0.0

    def close(self) -> None:
        for proxy in self.links.values():
            proxy.close()
        self.cluster.close()

    # ------------------------------------------------------------- after-checks

    def converged(self, timeout: float = 40.0) -> dict[str, Any]:
        """Every manager at the same applied index with the same state."""

        def same() -> dict[str, Any] | None:
            digests = {}
            for node in self.nodes:
                with ControlClient(node.host, timeout=10) as client:
                    digests[node.name] = client.call("debug.digest")
            # Idle followers learn the last commit index from the next heartbeat.
            return digests if len({d["applied_index"] for d in digests.values()}) == 1 else None

        digests = wait_until(same, timeout=timeout, interval=0.2, what="managers converged")
        values = {d["digest"] for d in digests.values()}
        assert len(values) == 1, f"managers diverged at index {next(iter(digests.values()))['applied_index']}: {digests}"
        return {"applied_index": next(iter(digests.values()))["applied_index"], "digest": values.pop()}

    def critical_lines(self) -> list[str]:
        """Every critical line any manager logged (pysyncobj's "truncating already-applied" among them)."""
        return [
            f"{node.name}: {line}"
            for node in self.nodes
            if node.log_path.exists()
            for line in node.log_path.read_text(errors="replace").splitlines()
            if " critical " in line or '"level": "critical"' in line
        ]

    def reopen_all(self) -> None:
        """Stop every manager and start it again: every data directory must open."""
        for node in self.nodes:
            node.stop()
        for node in self.nodes:
            self.start(node)
        self.wait_healthy()


@dataclass
class Workload:
    """Clients doing put/get/cas on a few keys, recording a history."""

    cluster: FaultCluster
    seed: int
    clients: int = 6
    keys: int = 3
    history: list[Operation] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    stale_reads_from: str | None = None  # deliberately read a manager's local copy (to prove the checker works)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for client in range(self.clients):
            thread = threading.Thread(target=self._run, args=(client,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def finish(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(60)

    def _record(self, op: Operation) -> None:
        with self._lock:
            self.history.append(op)

    def _run(self, client: int) -> None:
        rnd = random.Random(self.seed * 1000 + client)
        seq = 0
        known: dict[str, Any] = {}
        connections: dict[str, ControlClient] = {}

        def conn(node: Node) -> ControlClient:
            if node.name not in connections:
                connections[node.name] = ControlClient(node.host, timeout=8)
            return connections[node.name]

        while not self.stop.is_set():
            node = rnd.choice(self.cluster.nodes)
            key = f"k{rnd.randrange(self.keys)}"
            roll = rnd.random()
            seq += 1
            value = f"c{client}-{seq}"
            try:
                if self.stale_reads_from and roll < 0.4:
                    stale = next(n for n in self.cluster.nodes if n.name == self.stale_reads_from)
                    self._get(client, conn(stale), key, "local")
                elif roll < 0.4:
                    known[key] = self._get(client, conn(node), key, "linearizable")
                elif roll < 0.75 or key not in known:
                    self._write(client, conn(node), key, "put", value, None)
                else:
                    self._write(client, conn(node), key, "cas", value, known[key])
            except (OSError, RaftstoreError):
                connections.pop(node.name, None)
                time.sleep(0.05)
        for client_conn in connections.values():
            client_conn.close()

    def _get(self, client: int, conn: ControlClient, key: str, consistency: str) -> Any:
        call = time.monotonic()
        try:
            record = conn.call("kv.get", {"key": key, "consistency": consistency})
            value, version = record["value"].decode(), record["version"]
        except NotFound:
            value, version = None, 0
        except (OSError, RaftstoreError):
            raise  # a read that failed has no effect: not part of the history
        self._record(Operation(client, key, "get", None, call, time.monotonic(), value))
        return (value, version)

    def _write(self, client: int, conn: ControlClient, key: str, kind: str, value: str, known: Any) -> None:
        call = time.monotonic()
        params: dict[str, Any] = {"key": key, "value": value.encode(), "request_id": os.urandom(16)}
        argument: Any = value
        if kind == "cas":
            expected_value, version = known
            params["version"] = version
            argument = (expected_value, value)
        try:
            conn.call("kv.put" if kind == "put" else "kv.cas", params)
            result = "ok"
        except UpdateOutOfSequence:
            result = "failed"
        except (NoQuorum, LockedError):
            raise  # refused before Raft had it (issue 12): no effect, so not part of the history
        except (OSError, RaftstoreError):
            self._record(Operation(client, key, kind, argument, call, None, None))  # may have applied
            raise
        self._record(Operation(client, key, kind, argument, call, time.monotonic(), result))


@dataclass
class Scenario:
    name: str
    fault: Callable[[FaultCluster, random.Random, list[str]], None]
    size: int = 3
    autolock: bool = True
    expect_linearizable: bool = True
    stale_reads_from_follower: bool = False


def run_scenario(scenario: Scenario, root: Path, seed: int, load_seconds: float) -> dict[str, Any]:
    started = time.monotonic()
    cluster = FaultCluster(root, scenario.size, scenario.autolock)
    faults: list[str] = []
    report: dict[str, Any] = {"scenario": scenario.name, "seed": seed, "managers": scenario.size,
                              "replay": f"RAFTSTORE_FAULT_SEED={seed}"}
    try:
        cluster.form()
        rnd = random.Random(seed)
        if scenario.stale_reads_from_follower:
            leader = cluster.leader()
            cluster.stale_node = next(n.name for n in cluster.nodes if n is not leader)
        workload = Workload(cluster, seed, stale_reads_from=cluster.stale_node)
        workload.start()
        time.sleep(load_seconds * 0.25)  # load first, then the fault, under load
        scenario.fault(cluster, rnd, faults)
        time.sleep(load_seconds * 0.25)
        cluster.heal()
        workload.finish()
        # Final reads of every key, after healing, close the history.
        cluster.wait_healthy()
        for key in range(workload.keys):
            with ControlClient(cluster.nodes[0].host, timeout=15) as client:
                workload._get(99, client, f"k{key}", "linearizable")
        verdict: Verdict = check(workload.history)
        report.update(
            operations=len(workload.history),
            unknown_outcomes=sum(1 for op in workload.history if op.ret is None),
            faults=faults,
            linearizable=verdict.ok,
            anomalies=[] if verdict.ok else [verdict.explain()],
        )
        if scenario.expect_linearizable:
            assert verdict.ok, f"seed {seed}: {verdict.explain()}"
            report["converged"] = cluster.converged()
            report["critical_lines"] = critical = cluster.critical_lines()
            assert not critical, f"seed {seed}: {len(critical)} critical lines, the first: {critical[0]}"
            cluster.reopen_all()
            report["reopened"] = True
        else:
            assert not verdict.ok, f"seed {seed}: the checker missed a deliberate violation"
    finally:
        report["seconds"] = round(time.monotonic() - started, 1)
        (report_dir() / f"{scenario.name}-{seed}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        cluster.close()
    return report


def kill(node: Node, sig: int = signal.SIGKILL) -> None:
    node.kill(sig)


__all__ += ["kill"]
