"""The systems the scale benchmark fills, each as 3 managers on 127.0.0.1, with what it times after a fill.

``RaftstoreScale`` (sealing, fsync and autolock on, ``/metrics`` served by
each manager) and ``EtcdScale`` (its backend quota raised to fit) share one
shape: ``start``/``stop``, ``writer_factory``, ``pids``, ``scrape`` (each
manager's metrics, parsed), ``put_probe``, ``restart`` (all managers stopped
and started, to the first linearizable read) and ``join`` (a 4th manager, to
its first local read; then removed again). Every wait has a deadline and
ends in an exception that says what did not happen.
"""

from __future__ import annotations

import base64
import http.client
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

from raftstore.net._control import ControlClient
from raftstore.tools._loadgen import Writer
from raftstore.tools._local_cluster import wait_until

from .peers import EtcdPeer, RaftstorePeer
from .scale_report import Samples, parse_prometheus

__all__ = ["RaftstoreScale", "EtcdScale", "ETCD_QUOTA_BYTES"]

#: etcd's backend quota for the fill (its default, 2 GiB, is less than the largest store; 8 GiB is its suggested most).
ETCD_QUOTA_BYTES = 8 * 2**30


def _http_get(port: int, path: str, timeout: float) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read().decode()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status}")
        return body
    finally:
        conn.close()


def _poll(what: str, deadline: float, attempt: Callable[[], bool], interval: float = 0.05) -> float:
    """Call ``attempt`` until it returns True; the monotonic time it did, or TimeoutError naming ``what``."""
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if attempt():
                return time.monotonic()
        except Exception as error:  # a member still starting, unlocking or catching up
            last = error
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within its deadline" + (f" (last error: {last})" if last else ""))


class _Scaled:
    """What both systems share: a peer (benchmarks/peers.py) started and stopped as one cluster."""

    peer: Any

    def start(self) -> None:
        self.peer.start()

    def stop(self) -> None:
        self.peer.stop()


class RaftstoreScale(_Scaled):
    name = "raftstore"
    metric_names = {"leader_changes": "raftstore_raft_leader_changes_total", "term": "raftstore_raft_term",
                    "snapshot": "raftstore_snapshot_save_duration_seconds",
                    "tick": "raftstore_raft_tick_duration_seconds",
                    "tick_longest": "raftstore_raft_tick_longest_seconds"}

    def __init__(self, root: Path) -> None:
        self.peer = RaftstorePeer(root, autolock=True, metrics=True)
        self._joins = 0

    def pids(self) -> dict[str, int]:
        return {m.name: m.process.pid for m in self.peer.members if m.process is not None}

    def slow_ticks(self) -> dict[str, str]:
        """Each manager's last "slow raft tick" log line: where its slowest recent tick went."""
        found = {}
        for member in self.peer.members:
            lines = [line for line in member.log().splitlines() if "slow raft tick" in line]
            if lines:
                found[member.name] = lines[-1].split("slow raft tick: ", 1)[-1]
        return found

    def writer_factory(self) -> Callable[[], Writer]:
        return self.peer.writer_factory(self.peer.leader())

    def scrape(self, timeout: float = 10.0) -> dict[str, Samples | None]:
        """Each manager's /metrics, parsed (None for a manager that did not answer within ``timeout``)."""
        out: dict[str, Samples | None] = {}
        for member in self.peer.members:
            try:
                out[member.name] = parse_prometheus(
                    _http_get(self.peer.metrics_ports[member.name], "/metrics", timeout))
            except Exception:
                out[member.name] = None
        return out

    def put_probe(self, key: str, value: bytes, deadline: float) -> None:
        def put() -> bool:
            with ControlClient(self.peer.leader().host, timeout=30) as client:
                client.call("kv.put", {"key": key, "value": value})
            return True

        _poll(f"write {key}", deadline, put, interval=0.5)

    def _read(self, member: Any, key: str, consistency: str) -> Any:
        with ControlClient(member.host, timeout=10) as client:
            return client.call("kv.get", {"key": key, "consistency": consistency})["value"]

    def restart(self, key: str, value: bytes, seconds: float) -> dict[str, Any]:
        """Stop all managers (SIGTERM), start them, unlock each; seconds from the start to the first linearizable read."""
        members = self.peer.members
        began = time.monotonic()
        for member in members:
            member.stop()
        stopped = time.monotonic()
        deadline = stopped + seconds
        unlocked: dict[str, float] = {}
        for member in members:
            member.start(self.peer.daemon_flags(member.name), wait=False)

        def unlock(member: Any) -> None:
            def attempt() -> bool:
                with ControlClient(member.host, timeout=max(1.0, deadline - time.monotonic())) as client:
                    client.call("unlock", {"key": self.peer.unlock_key})
                return True

            try:
                unlocked[member.name] = _poll(f"unlock {member.name}", deadline, attempt) - stopped
            except TimeoutError:
                pass

        threads = [threading.Thread(target=unlock, args=(m,), daemon=True) for m in members]
        for thread in threads:
            thread.start()
        order = list(members)

        def read() -> bool:
            order.append(order.pop(0))
            return bool(self._read(order[0], key, "linearizable") == value)

        try:
            served = _poll("the first linearizable read after a restart of every manager", deadline, read)
        finally:
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()) + 5)
        return {"stop_s": round(stopped - began, 3), "seconds": round(served - stopped, 3),
                "unlocked_s": {name: round(t, 3) for name, t in sorted(unlocked.items())}}

    def join(self, key: str, value: bytes, seconds: float) -> dict[str, Any]:
        """A new daemon joins as a manager; seconds from ``raftstore join`` to its first local read of ``key``."""
        self._joins += 1
        leader = self.peer.leader()
        node = self.peer.add_member(f"j{self._joins}")
        token = leader.run("join-token", "-q", "manager").stdout.strip()
        began = time.monotonic()
        deadline = began + seconds
        try:
            node.run("join", "--token", token, "--listen-addr", node.addr, leader.addr,
                     timeout=max(1.0, deadline - began))
            joined = time.monotonic()
            served = _poll(f"a local read on the joined manager {node.name}", deadline,
                           lambda: self._read(node, key, "local") == value)
            return {"seconds": round(served - began, 3), "join_command_s": round(joined - began, 3)}
        finally:
            self._remove(node, leader)

    def _remove(self, node: Any, leader: Any) -> None:
        """Demote the joined manager, stop it and remove it, so that the next fill is of 3 managers again."""
        node_id = node.info()["node_id"] if node.process and node.process.poll() is None else None
        if node_id:
            leader.run("node", "demote", node_id, check=False, timeout=120)
            wait_until(lambda: len(self.peer.members) == leader.info()["managers"], timeout=120,
                       what="the joined manager demoted")
        node.kill(signal.SIGKILL)
        if node_id:
            leader.run("node", "rm", "--force", node_id, timeout=60)
        shutil.rmtree(node.data_dir, ignore_errors=True)


class EtcdScale(_Scaled):
    name = "etcd"
    metric_names = {"leader_changes": "etcd_server_leader_changes_seen_total", "term": "raft_term",
                    "snapshot": "etcd_debugging_snap_save_total_duration_seconds"}

    def __init__(self, root: Path) -> None:
        self.peer = EtcdPeer(root, extra_args=["--quota-backend-bytes", str(ETCD_QUOTA_BYTES)])
        self._joins = 0

    def pids(self) -> dict[str, int]:
        return {m["name"]: m["process"].pid for m in self.peer.members}

    def writer_factory(self) -> Callable[[], Writer]:
        leader = wait_until(self.peer.leader, timeout=30, what="an etcd leader")
        return self.peer.writer_factory(leader)

    def scrape(self, timeout: float = 10.0) -> dict[str, Samples | None]:
        """Each member's /metrics, parsed, with its Raft term (from the status call) as ``raft_term``."""
        out: dict[str, Samples | None] = {}
        for member in self.peer.members:
            try:
                samples = parse_prometheus(_http_get(member["client"], "/metrics", timeout))
                status = self.peer.call(member, "/v3/maintenance/status", {}, timeout)
                samples["raft_term"] = [({}, float(status["raftTerm"]))]
                out[member["name"]] = samples
            except Exception:
                out[member["name"]] = None
        return out

    def put_probe(self, key: str, value: bytes, deadline: float) -> None:
        def put() -> bool:
            writer = self.writer_factory()()
            try:
                writer.put(key.encode(), value)
            finally:
                writer.close()
            return True

        _poll(f"write {key}", deadline, put, interval=0.5)

    def _read(self, member: dict[str, Any], key: str, serializable: bool) -> bytes | None:
        body = {"key": base64.b64encode(key.encode()).decode(), "serializable": serializable}
        kvs = self.peer.call(member, "/v3/kv/range", body).get("kvs") or []
        return base64.b64decode(kvs[0]["value"]) if kvs else None

    def restart(self, key: str, value: bytes, seconds: float) -> dict[str, Any]:
        """Stop all members (SIGTERM), start them; seconds from the start to the first linearizable read."""
        members = self.peer.members
        began = time.monotonic()
        for member in members:
            member["process"].send_signal(signal.SIGTERM)
        for member in members:
            member["process"].wait(60)
        stopped = time.monotonic()
        for member in members:
            self.peer.start_member(member)
        order = list(members)

        def read() -> bool:
            order.append(order.pop(0))
            return self._read(order[0], key, serializable=False) == value

        served = _poll("the first linearizable read after a restart of every member", stopped + seconds, read)
        return {"stop_s": round(stopped - began, 3), "seconds": round(served - stopped, 3)}

    def join(self, key: str, value: bytes, seconds: float) -> dict[str, Any]:
        """Member add and start; seconds from the add (once etcd accepts one) to its first serializable read."""
        self._joins += 1
        name = f"j{self._joins}"
        added: list[dict[str, Any]] = []
        starts: list[float] = []

        def add() -> bool:  # refused ("unhealthy cluster") until every member has been connected for a while
            starts.append(time.monotonic())
            added.append(self.peer.add_member(name))
            return True

        _poll("etcd accepting a member add", time.monotonic() + seconds, add, interval=0.5)
        member, began = added[0], starts[-1]
        try:
            served = _poll(f"a local read on the added member {member['name']}", began + seconds,
                           lambda: self._read(member, key, serializable=True) == value)
            return {"seconds": round(served - began, 3)}
        finally:
            self.peer.remove_member(member)
