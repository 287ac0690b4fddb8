"""docs/client.md, run: every ```python block, in order, in one process, against three real managers.

The page's examples are what a program using only ``raftstore.Client`` does,
so running them here proves what issue 16 asks of the client: it connects to
a 3-manager cluster, survives the leader's SIGKILL without losing or
duplicating a write (the block after the ``<!-- test: the leader is killed
... -->`` marker writes while this test kills the leader, and checks every
write is there once), runs a transaction, and watches a prefix from a
version. The blocks read their endpoints from the environment: the three
control sockets, and a fourth way in, the third manager's remote control API
over mutual TLS with a client certificate from ``ca issue-client``. Beside
the program, a watch of the test's own, opened on the leader, follows the
failover block's writes across the kill: each once, in order.

A failing block fails the test with the program's output, which names the
block and the docs/client.md line, and the daemons' logs (the ``cluster``
fixture prints them).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from raftstore import Client
from markdown_blocks import fenced_blocks
from raftstore.tools._local_cluster import Cluster, Node, free_port, wait_until

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "client.md"
KILL_MARKER = "<!-- test: the leader is killed (SIGKILL) while this block runs -->"
TIMEOUT = 300.0
#: Writes of the failover block on the store before the leader is killed: well inside the block.
KILL_AFTER_WRITES = 40

RUNNER = r"""
import json, sys
namespace = {"__name__": "__client_doc__"}
for number, line, code in json.loads(sys.stdin.read()):
    print(f"##### block {number} (docs/client.md line {line})", flush=True)
    exec(compile("\n" * line + code, "docs/client.md", "exec"), namespace)
print("##### done", flush=True)
"""


@dataclass(frozen=True)
class Block:
    number: int
    line: int  # of the opening fence, 1-based
    code: str
    kill_leader: bool


def python_blocks(text: str) -> list[Block]:
    """The ```python blocks in order, each marked when the kill marker comes right before it."""
    return [Block(b.number, b.line, b.code, b.before == KILL_MARKER) for b in fenced_blocks(text, "python", "docs/client.md")]


def test_the_doc_has_the_blocks_this_test_relies_on() -> None:
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) >= 6
    assert sum(b.kill_leader for b in blocks) == 1, "one block runs while the leader is killed"
    code = "\n".join(b.code for b in blocks)
    for needed in ("raftstore.Client(", ".txn(", ".watch(", "since=", ".cas(", "tls_context("):
        assert needed in code, needed


class LeaderKiller:
    """Once the failover block has written enough, SIGKILL the leader (found then), from a thread."""

    def __init__(self, cluster: Cluster, managers: list[Node]) -> None:
        self.cluster, self.managers = cluster, managers
        self.killed: Node | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            with Client([m.host for m in self.managers], retry_for=5) as observer:
                wait_until(lambda: len(observer.list("log/", consistency="local")) >= KILL_AFTER_WRITES,
                           timeout=120, interval=0.02, what=f"{KILL_AFTER_WRITES} writes of the failover block")
            leader = self.cluster.leader(self.managers)
            leader.kill(signal.SIGKILL)
            self.killed = leader
        except BaseException as error:  # reported by the test
            self.error = error
        finally:
            self.done.set()


def test_the_client_doc_runs_and_survives_the_leader(cluster: Cluster, tmp_path: Path) -> None:
    m1, m2, m3 = (cluster.add(name) for name in ("m1", "m2", "m3"))
    cluster.init(m1)
    cluster.join(m2, m1, "manager")
    cluster.join(m3, m1, "manager")
    certs, server = tmp_path / "client-certs", tmp_path / "server-certs"
    m1.run("ca", "issue-client", "--out", str(certs))
    m1.run("ca", "issue-server", "--san", "127.0.0.1", "--out", str(server))
    tls_port = free_port()
    m3.stop()
    m3.start(["-H", f"tcp://127.0.0.1:{tls_port}", "--tlsverify", "--tlscacert", str(server / "ca.pem"),
              "--tlscert", str(server / "cert.pem"), "--tlskey", str(server / "key.pem")])
    managers = [m1, m2, m3]
    leader = cluster.leader(managers)  # the watch below starts there: on the manager to be killed
    watcher = Client([leader.host] + [m.host for m in managers if m is not leader])
    watch = watcher.watch("log/", since=watcher.info().applied_index)
    watched: list[tuple[int, str, str]] = []

    def consume() -> None:
        for event in watch:
            watched.append((event.version, event.action, event.name))
            if len(watched) == 300:
                return

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()

    blocks = python_blocks(DOC.read_text())
    env = {**os.environ, "RAFTSTORE_ENDPOINTS": ",".join(m.host for m in managers),
           "RAFTSTORE_TLS_ENDPOINT": f"tcp://127.0.0.1:{tls_port}", "RAFTSTORE_CERT_PATH": str(certs),
           "RAFTSTORE_HOST": ""}
    program = subprocess.Popen([sys.executable, "-c", RUNNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    killer = LeaderKiller(cluster, managers)
    kill_block = next(b for b in blocks if b.kill_leader)
    output: list[str] = []
    block_ended_before_kill = False
    timer = threading.Timer(TIMEOUT, program.kill)
    timer.start()
    try:
        assert program.stdin is not None and program.stdout is not None
        program.stdin.write(json.dumps([[b.number, b.line, b.code] for b in blocks]))
        program.stdin.close()
        in_kill_block = False
        for line in program.stdout:
            output.append(line)
            if line.startswith("#####"):
                if in_kill_block and not killer.done.is_set():
                    block_ended_before_kill = True
                in_kill_block = line.startswith(f"##### block {kill_block.number} ")
                if in_kill_block:
                    killer.start()
        returncode = program.wait(timeout=30)
    finally:
        timer.cancel()
        if program.poll() is None:
            program.kill()
    text = "".join(output)
    assert returncode == 0, f"docs/client.md failed (exit {returncode}):\n{text}"
    assert text.rstrip().endswith("##### done"), text
    assert killer.done.wait(30) and killer.error is None, f"killing the leader failed: {killer.error!r}\n{text}"
    assert not block_ended_before_kill, "the failover block ended before the leader was killed: make it longer"
    assert killer.killed is not None and killer.killed.process is not None
    assert killer.killed.process.returncode == -signal.SIGKILL
    assert f"answered last by {killer.killed.host}" not in text
    # A watch of this test's own, opened on the leader before the program ran, followed it across the kill.
    consumer.join(60)
    watch.close()
    watcher.close()
    assert [(action, name) for _, action, name in watched] == [("create", f"log/{n:04}") for n in range(300)]
    assert [version for version, _, _ in watched] == sorted({version for version, _, _ in watched})
