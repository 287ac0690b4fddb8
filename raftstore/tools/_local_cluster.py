"""A cluster of real daemons on 127.0.0.1, driven through the ``raftstore`` command.

Used by ``raftstore demo``, the benchmarks and the integration tests, so that
all three exercise the product exactly as an operator does: separate daemon
processes, the command line, the control sockets. Every wait is on a condition
with a deadline (``wait_until``), never a bare sleep.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

__all__ = ["Cluster", "Node", "Result", "RAFTSTORE", "free_port", "wait_until"]

RAFTSTORE = [sys.executable, "-m", "raftstore"]


#: Ports handed out for daemons: below Linux's ephemeral range (32768-60999 by default), where every
#: outgoing connection takes its local port, so that a port picked here is not taken by some client's
#: connection before the daemon binds it. ``RAFTSTORE_PORT_RANGE=LOW-HIGH`` gives each process of a
#: parallel run a block of its own (tests/conftest.py does so per pytest-xdist worker).
_DEFAULT_PORT_RANGE = (20000, 32000)
_port_cursor: int | None = None


def _port_range() -> tuple[int, int]:
    text = os.environ.get("RAFTSTORE_PORT_RANGE", "")
    low, _, high = text.partition("-")
    if low.isdigit() and high.isdigit() and 1024 <= int(low) < int(high) <= 65535:
        return int(low), int(high)
    return _DEFAULT_PORT_RANGE


def free_port() -> int:
    """A 127.0.0.1 TCP port that is free now, taken in turn from this process's range (never twice in a row)."""
    global _port_cursor
    low, high = _port_range()
    span = high - low
    if _port_cursor is None or not low <= _port_cursor < high:
        _port_cursor = low + (os.getpid() * 7919) % span  # processes sharing a range start apart
    for _ in range(span):
        port = _port_cursor
        _port_cursor = low + (_port_cursor + 1 - low) % span
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port on 127.0.0.1 between {low} and {high}")


def wait_until(condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll ``condition`` until it returns something truthy, or fail with what it last said."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except Exception as error:  # conditions may raise while the cluster settles
            last = error
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}: last result {last!r}")


def _delivery_flags(extra: list[str]) -> list[str]:
    """Test and demo daemons deliver secrets to files only where asked: never into the host's /run."""
    return extra if "--secrets-dir" in extra else extra + ["--no-secrets-dir"]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Node:
    name: str
    data_dir: Path
    port: int
    log_path: Path
    process: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"unix://{self.data_dir / 'raftstore.sock'}"

    def start(self, extra: list[str] | None = None, wait: bool = True) -> None:
        """Start the daemon; with ``wait``, return once it answers ``raftstore info`` (20 s at most)."""
        assert self.process is None or self.process.poll() is not None
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            RAFTSTORE + ["daemon", "--data-dir", str(self.data_dir), "--listen-addr", self.addr]
            + _delivery_flags(extra or []),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
        )
        log.close()
        if wait:
            wait_until(lambda: self.run("info", check=False).returncode == 0, timeout=20, what=f"{self.name} daemon up")

    def run(self, *args: str, input: bytes | str | None = None, check: bool = True, timeout: float = 60) -> Result:
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run(
            RAFTSTORE + ["-H", self.host] + list(args),
            input=data,
            capture_output=True,
            timeout=timeout,
            env={**os.environ, **self.env},
        )
        result = Result(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))
        if check and result.returncode != 0:
            raise AssertionError(f"{self.name}: raftstore {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    def info(self) -> dict[str, Any]:
        return self.run("info", "--format", "json").json

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                self.process.wait(timeout=30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class Cluster:
    """A set of nodes in one temporary directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.nodes: list[Node] = []

    def add(self, name: str | None = None, env: dict[str, str] | None = None, extra: list[str] | None = None) -> Node:
        name = name or f"node{len(self.nodes) + 1}"
        node = Node(name, self.root / name, free_port(), self.root / f"{name}.log", env=dict(env or {}))
        self.nodes.append(node)
        node.start(extra)
        return node

    def init(self, node: Node, *flags: str) -> Result:
        return node.run("init", "--listen-addr", node.addr, *flags)

    def join(self, node: Node, via: Node, role: str) -> Result:
        token = via.run("join-token", "-q", role).stdout.strip()
        return node.run("join", "--token", token, "--listen-addr", node.addr, via.addr)

    def leader(self, among: list[Node] | None = None) -> Node:
        nodes = among or self.nodes

        def find() -> Node | None:
            for node in nodes:
                if node.process is None or node.process.poll() is not None:
                    continue
                info = node.run("info", "--format", "json", check=False)
                if info.returncode == 0 and info.json.get("is_leader"):
                    return node
            return None

        return wait_until(find, timeout=30, what="a leader")

    def close(self) -> None:
        for node in self.nodes:
            node.kill(signal.SIGKILL)

    def logs(self) -> str:
        return "\n".join(f"===== {n.name}\n{n.log()[-6000:]}" for n in self.nodes)
