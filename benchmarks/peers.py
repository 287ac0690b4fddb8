"""The systems under test, each a real 3-member cluster on 127.0.0.1 in a temporary directory.

``RaftstorePeer`` (and its controls without sealing or without fsync), the
plain ``PysyncobjPeer`` (as shipped, or tuned for latency) and ``EtcdPeer``
(through its native gRPC API, or its gRPC-JSON gateway) share one shape:
``start()``, ``writer_factory(member)``, ``leader()``, ``kill(member)``,
``restart(member)`` and ``stop()``. Writers reach each through its ordinary
client interface.
"""

from __future__ import annotations

import base64
import http.client
import importlib.metadata
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from raftstore.storage._benchmark_switches import MARKER_FILE, NO_FSYNC_ENV, NO_SEALING_ENV
from raftstore.net._control import ControlClient
from raftstore.tools._loadgen import ControlWriter, Writer
from raftstore.tools._local_cluster import Cluster, free_port, wait_until

__all__ = ["RaftstorePeer", "PysyncobjPeer", "EtcdPeer", "EtcdGrpcPeer", "etcd_available", "etcd_grpc_client",
           "ETCD_GRPC_CLIENT"]

MEMBERS = 3


class RaftstorePeer:
    def __init__(self, root: Path, variant: str = "default", autolock: bool = False, metrics: bool = False,
                 code: Path | None = None) -> None:
        """``code``: run the managers from another checkout (its package first on PYTHONPATH), for a before/after."""
        self.name = "raftstore" if variant == "default" else f"raftstore ({variant})"
        if code is not None:
            self.name += f" @{code.name}"
        self.root = root
        self.variant = variant
        self.autolock = autolock
        #: With ``metrics``, each member serves /metrics on a port of its own (``metrics_ports[member.name]``).
        self.metrics = metrics
        self.metrics_ports: dict[str, int] = {}
        env = {}
        if variant == "no-sealing":
            env[NO_SEALING_ENV] = "1"
        elif variant == "no-fsync":
            env[NO_FSYNC_ENV] = "1"
        if code is not None:
            env["PYTHONPATH"] = str(code.resolve())
            env["PYTHONSAFEPATH"] = "1"  # python -m must not put the current checkout first
        self._env = env
        self.cluster = Cluster(root)
        self.members: list[Any] = []
        self.unlock_key: str | None = None

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / MARKER_FILE).write_text("benchmark scratch directory\n")
        self.members = [self.add_member(f"m{i + 1}") for i in range(MEMBERS)]
        self.cluster.init(self.members[0], *(["--autolock"] if self.autolock else []))
        if self.autolock:
            self.unlock_key = self.members[0].run("unlock-key", "-q").stdout.strip()
        for member in self.members[1:]:
            self.cluster.join(member, self.members[0], "manager")
        wait_until(lambda: self.members[0].info()["managers"] == MEMBERS, what="3 managers")

    def add_member(self, name: str) -> Any:
        """Start one more daemon (not yet in the cluster), with its metrics port when asked for."""
        if self.metrics:
            self.metrics_ports[name] = free_port()
        return self.cluster.add(name, env=self._env, extra=self.daemon_flags(name))

    def daemon_flags(self, name: str) -> list[str]:
        port = self.metrics_ports.get(name)
        return ["--metrics-addr", f"127.0.0.1:{port}"] if port else []

    def writer_factory(self, member: Any) -> Callable[[], Writer]:
        host = member.host
        return lambda: ControlWriter(host)

    def pids(self) -> list[int]:
        return [m.process.pid for m in self.members if m.process is not None and m.process.poll() is None]

    def leader(self) -> Any:
        return self.cluster.leader(self.members)

    def kill(self, member: Any) -> None:
        member.kill(signal.SIGKILL)

    def restart(self, member: Any) -> None:
        member.start(self.daemon_flags(member.name))
        if self.autolock and self.unlock_key:
            member.run("unlock", input=self.unlock_key + "\n")
        wait_until(lambda: member.info()["state"] == "manager", what="restarted manager running")

    def stop(self) -> None:
        self.cluster.close()


class _FrameWriter:
    def __init__(self, path: str) -> None:
        self._client = ControlClient(f"unix://{path}", timeout=30)

    def put(self, key: bytes, value: bytes) -> None:
        self._client.call("kv.put", {"key": key.decode(), "value": value})

    def close(self) -> None:
        self._client.close()


class PysyncobjPeer:
    """Plain pysyncobj with its FileJournal, in one of benchmarks/pysyncobj_node.py's configurations:
    ``default`` as shipped (append-entries batched by a 100 ms timer), ``tuned`` without that timer."""

    def __init__(self, root: Path, configuration: str = "default") -> None:
        self.name = f"pysyncobj ({configuration})"
        self.root = root
        self.configuration = configuration
        self.members: list[dict[str, Any]] = []

    def start(self) -> None:
        ports = [free_port() for _ in range(MEMBERS)]
        addrs = [f"127.0.0.1:{p}" for p in ports]
        for i, addr in enumerate(addrs):
            member = {"name": f"p{i + 1}", "addr": addr, "dir": self.root / f"p{i + 1}",
                      "partners": ",".join(a for a in addrs if a != addr)}
            self.members.append(member)
            self._spawn(member)
        wait_until(lambda: self.leader() is not None, timeout=30, what="a pysyncobj leader")

    def _spawn(self, member: dict[str, Any]) -> None:
        member["dir"].mkdir(parents=True, exist_ok=True)
        log = open(member["dir"] / "node.log", "ab")
        member["process"] = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.pysyncobj_node", member["addr"], member["partners"], str(member["dir"]),
             self.configuration],
            stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).parent.parent,
        )
        log.close()
        wait_until(lambda: (member["dir"] / "node.sock").exists(), what="pysyncobj node socket")

    def _status(self, member: dict[str, Any]) -> dict[str, Any] | None:
        try:
            with ControlClient(f"unix://{member['dir'] / 'node.sock'}", timeout=2) as client:
                return client.call("status")
        except Exception:
            return None

    def leader(self) -> dict[str, Any] | None:
        for member in self.members:
            if member["process"].poll() is not None:
                continue
            status = self._status(member)
            if status and status["leader"] == status["self"]:
                return member
        return None

    def writer_factory(self, member: dict[str, Any]) -> Callable[[], Writer]:
        path = str(member["dir"] / "node.sock")
        return lambda: _FrameWriter(path)

    def pids(self) -> list[int]:
        return [m["process"].pid for m in self.members if m["process"].poll() is None]

    def kill(self, member: dict[str, Any]) -> None:
        member["process"].send_signal(signal.SIGKILL)
        member["process"].wait(10)

    def restart(self, member: dict[str, Any]) -> None:
        (member["dir"] / "node.sock").unlink(missing_ok=True)
        self._spawn(member)

    def stop(self) -> None:
        for member in self.members:
            if member.get("process") and member["process"].poll() is None:
                member["process"].kill()
                member["process"].wait(10)


def etcd_available() -> bool:
    return shutil.which("etcd") is not None


# The Python gRPC client for etcd's native API (the `bench` extra): a maintained fork of python-etcd3
# with stubs that import under current protobuf releases. It installs the module `etcd3`.
ETCD_GRPC_CLIENT = "python3-etcd3"


def etcd_grpc_client() -> str | None:
    """``"python3-etcd3 0.13.0, grpcio 1.x"`` when the gRPC client is installed, else None (nothing imported)."""
    if importlib.util.find_spec("etcd3") is None:
        return None
    try:
        return (f"{ETCD_GRPC_CLIENT} {importlib.metadata.version(ETCD_GRPC_CLIENT)}, "
                f"grpcio {importlib.metadata.version('grpcio')}")
    except importlib.metadata.PackageNotFoundError:
        return "etcd3 (unknown distribution)"


class _EtcdGrpcWriter:
    """One client of etcd's native gRPC API (KV.Put): its own channel, one call at a time.

    gRPC's default lets the channels of one process share a connection to the same target, each call
    a stream of its own, as etcd's own Go client multiplexes its calls. Against one connection per
    client (``grpc.use_local_subchannel_pool``), this cost the client process less CPU per write here
    (about 0.3 against 0.4 ms at 16 clients) on a machine whose two cores also run the servers.
    Built inside the load generator's forked processes: the harness itself starts no gRPC threads
    before it forks.
    """

    def __init__(self, port: int) -> None:
        import etcd3

        self._client = etcd3.client(host="127.0.0.1", port=port, timeout=30)

    def put(self, key: bytes, value: bytes) -> None:
        self._client.put(key, value)

    def close(self) -> None:
        self._client.close()


class _EtcdWriter:
    def __init__(self, port: int) -> None:
        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def put(self, key: bytes, value: bytes) -> None:
        body = json.dumps({"key": base64.b64encode(key).decode(), "value": base64.b64encode(value).decode()})
        self._conn.request("POST", "/v3/kv/put", body, {"Content-Type": "application/json"})
        response = self._conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"etcd put failed: {response.status} {data[:200]!r}")

    def close(self) -> None:
        self._conn.close()


class EtcdPeer:
    """A 3-member etcd cluster (etcd from PATH), written through its gRPC-JSON gateway (HTTP/1.1 keep-alive)."""

    name = "etcd (gateway)"

    def __init__(self, root: Path, extra_args: list[str] | None = None) -> None:
        self.root = root
        self.members: list[dict[str, Any]] = []
        #: More flags for every member (the scale benchmark raises ``--quota-backend-bytes``).
        self.extra_args = list(extra_args or [])

    def start(self) -> None:
        for i in range(MEMBERS):
            self.members.append({"name": f"e{i + 1}", "client": free_port(), "peer": free_port(),
                                 "dir": self.root / f"e{i + 1}"})
        self._initial = ",".join(f"{m['name']}=http://127.0.0.1:{m['peer']}" for m in self.members)
        for member in self.members:
            self._spawn(member, "new")
        wait_until(lambda: self.leader() is not None, timeout=30, what="an etcd leader")

    def _spawn(self, member: dict[str, Any], state: str) -> None:
        member["dir"].mkdir(parents=True, exist_ok=True)
        log = open(self.root / f"{member['name']}.log", "ab")
        member["process"] = subprocess.Popen(
            ["etcd", "--name", member["name"], "--data-dir", str(member["dir"]),
             "--listen-client-urls", f"http://127.0.0.1:{member['client']}",
             "--advertise-client-urls", f"http://127.0.0.1:{member['client']}",
             "--listen-peer-urls", f"http://127.0.0.1:{member['peer']}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{member['peer']}",
             "--initial-cluster", self._initial, "--initial-cluster-state", state, "--log-level", "error",
             *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()

    def _status(self, member: dict[str, Any]) -> dict[str, Any] | None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", member["client"], timeout=2)
            conn.request("POST", "/v3/maintenance/status", "{}")
            status = json.loads(conn.getresponse().read())
            conn.close()
            return status
        except Exception:
            return None

    def leader(self) -> dict[str, Any] | None:
        for member in self.members:
            if member["process"].poll() is not None:
                continue
            status = self._status(member)
            if status and "leader" in status and status["leader"] == status["header"]["member_id"]:
                return member
        return None

    def writer_factory(self, member: dict[str, Any]) -> Callable[[], Writer]:
        port = member["client"]
        return lambda: _EtcdWriter(port)

    def call(self, member: dict[str, Any], path: str, body: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        """One JSON-gateway request (``/v3/...``) to ``member``; an error status raises."""
        conn = http.client.HTTPConnection("127.0.0.1", member["client"], timeout=timeout)
        try:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise RuntimeError(f"etcd {path}: {response.status} {data[:200]!r}")
        return dict(json.loads(data))

    def add_member(self, name: str) -> dict[str, Any]:
        """Add a member through the cluster API and start it (``--initial-cluster-state existing``)."""
        member = {"name": name, "client": free_port(), "peer": free_port(), "dir": self.root / name}
        added = self.call(self.members[0], "/v3/cluster/member/add",
                          {"peerURLs": [f"http://127.0.0.1:{member['peer']}"]})
        member["id"] = added["member"]["ID"]
        self.members.append(member)
        self._initial = ",".join(f"{m['name']}=http://127.0.0.1:{m['peer']}" for m in self.members)
        self._spawn(member, "existing")
        return member

    def start_member(self, member: dict[str, Any]) -> None:
        """Start a stopped member again on its data directory, without waiting for it."""
        self._spawn(member, "existing")

    def remove_member(self, member: dict[str, Any]) -> None:
        """Remove a member added by ``add_member`` from the cluster, stop it and delete its data."""
        self.members.remove(member)
        self.call(self.members[0], "/v3/cluster/member/remove", {"ID": member["id"]})
        if member["process"].poll() is None:
            member["process"].kill()
            member["process"].wait(10)
        shutil.rmtree(member["dir"], ignore_errors=True)
        self._initial = ",".join(f"{m['name']}=http://127.0.0.1:{m['peer']}" for m in self.members)

    def pids(self) -> list[int]:
        return [m["process"].pid for m in self.members if m["process"].poll() is None]

    def kill(self, member: dict[str, Any]) -> None:
        member["process"].send_signal(signal.SIGKILL)
        member["process"].wait(10)

    def restart(self, member: dict[str, Any]) -> None:
        self._spawn(member, "existing")
        wait_until(lambda: self._status(member) is not None, timeout=30, what="etcd member back")

    def stop(self) -> None:
        for member in self.members:
            if member.get("process") and member["process"].poll() is None:
                member["process"].kill()
                member["process"].wait(10)


class EtcdGrpcPeer(EtcdPeer):
    """A 3-member etcd cluster of its own, written through etcd's native gRPC API (KV.Put, python3-etcd3).

    Leader and status still go through the gateway, so that the harness process opens no gRPC
    channel before the load generator forks."""

    name = "etcd (gRPC)"

    def writer_factory(self, member: dict[str, Any]) -> Callable[[], Writer]:
        port = member["client"]
        return lambda: _EtcdGrpcWriter(port)


def etcd_version() -> str | None:
    if not etcd_available():
        return None
    out = subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0].split(":", 1)[-1].strip() if out else None


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (from /proc)."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError, ValueError):
            pass
    return total


__all__ += ["etcd_version", "cpu_seconds", "time"]
