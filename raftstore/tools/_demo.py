"""``raftstore demo``: a real cluster on loopback, shown step by step, then removed.

Each step runs the ``raftstore`` command against separate daemon processes,
exactly as an operator would, and checks what it shows. The unlock key is
kept in this process's memory only and printed masked.
"""

from __future__ import annotations

import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, TextIO

from ..net import ControlClient
from ._local_cluster import Cluster, Node, wait_until

__all__ = ["run_demo"]


class DemoFailed(Exception):
    pass


def _mask(key: str) -> str:
    return key[:12] + "…" + key[-4:]


class _Demo:
    def __init__(self, root: Path, out: TextIO) -> None:
        self.cluster = Cluster(root)
        self.out = out
        self.step_number = 0
        self.steps = 6

    def say(self, text: str) -> None:
        print(f"      {text}", file=self.out, flush=True)

    def step(self, title: str) -> None:
        self.step_number += 1
        print(f"\n[{self.step_number}/{self.steps}] {title}", file=self.out, flush=True)

    def check(self, condition: bool, what: str) -> None:
        if not condition:
            raise DemoFailed(what)
        self.say(f"ok: {what}")

    def run(self) -> dict[str, float]:
        c = self.cluster
        self.step("Start three managers and one worker on 127.0.0.1, autolock on")
        m1, m2, m3, w1 = (c.add(name) for name in ("m1", "m2", "m3", "w1"))
        out = c.init(m1, "--autolock").stdout
        key = m1.run("unlock-key", "-q").stdout.strip()
        self.say(f"m1 created the cluster; its unlock key is {_mask(key)} (kept in memory only)")
        for node in (m2, m3):
            c.join(node, m1, "manager")
        c.join(w1, m1, "worker")
        rows = m1.run("node", "ls", "--format", "json").json
        self.check(len(rows) == 4 and sum(r["role"] == "manager" for r in rows) == 3, "4 nodes, 3 of them managers")
        for line in m1.run("node", "ls").stdout.splitlines():
            self.say(line)
        del out

        self.step("Write secrets and key/value records through different managers")
        for i in range(10):
            (m1, m2, m3)[i % 3].run("kv", "put", f"demo/item-{i}", f"value {i}")
        self.check(m3.run("kv", "get", "demo/item-9").stdout == "value 9\n", "every manager reads what the others wrote")
        w1_id = w1.info()["node_id"]
        m2.run("secret", "create", "db-password", "-", "--grant", w1_id, input="hunter2")
        self.check(w1.run("secret", "read", "db-password").stdout == "hunter2",
                   "the worker reads the secret granted to it, over its own mTLS identity")
        self.check("hunter2" not in m1.run("secret", "inspect", "db-password", "--format", "json").stdout,
                   "inspect never shows a secret's data")
        self.check(m1.run("secret", "read", "db-password", check=False).stderr.strip() == "Error: permission denied",
                   "a node without a grant is refused")

        self.step("Kill a manager (SIGKILL): the other two still commit")
        leader = c.leader()
        victim = next(n for n in (m1, m2, m3) if n is not leader)
        victim.kill(signal.SIGKILL)
        self.say(f"killed {victim.name}")
        survivor = next(n for n in (m1, m2, m3) if n is not victim)
        survivor.run("kv", "put", "demo/while-down", "committed by two of three")
        self.check(
            survivor.run("kv", "get", "demo/while-down").stdout == "committed by two of three\n",
            "a write commits with a majority",
        )

        self.step("Restart it: locked until unlocked, then caught up")
        victim.start()
        info = victim.info()
        self.check(info["locked"] is True, f"{victim.name} came back locked")
        refused = victim.run("kv", "get", "demo/item-0", check=False).stderr.strip()
        self.say(refused)
        wrong = victim.run("unlock", input="SWMKEY-1-" + "A" * 43 + "\n", check=False)
        self.check(wrong.stderr.startswith("Error: invalid unlock key"), "a wrong key is refused: invalid unlock key")
        victim.run("unlock", input=key + "\n")
        wait_until(
            lambda: victim.run("kv", "get", "demo/while-down", "--consistency", "local", check=False).returncode == 0,
            timeout=30,
            what="catch-up",
        )
        self.check(True, f"{victim.name} unlocked and has the write it missed")

        self.step("Rotate the root CA and the unlock key")
        old_root = m1.run("ca").stdout
        m1.run("ca", "--rotate", "-q", timeout=120)
        self.check(m1.run("ca").stdout != old_root, "every node renewed under a new root; the old root is forgotten")
        self.check(w1.run("secret", "read", "db-password").stdout == "hunter2", "the worker still reads over mTLS")
        m1.run("unlock-key", "--rotate")
        new_key = m1.run("unlock-key", "-q").stdout.strip()
        self.check(new_key != key, f"new unlock key {_mask(new_key)}; every manager re-wrapped its keys")
        wait_until(
            lambda: len({n.info()["kek_version"] for n in (m1, m2, m3)}) == 1, timeout=20, what="all managers re-wrapped"
        )

        self.step("A short benchmark: sequential 100-byte writes on the control socket of the leader")
        leader = c.leader()
        latencies = []
        started_all = time.perf_counter()
        with ControlClient(leader.host) as client:
            for i in range(2000):
                if time.perf_counter() - started_all > 3.0:
                    break
                started = time.perf_counter()
                client.call("kv.put", {"key": f"bench/{i}", "value": b"x" * 100})
                latencies.append(time.perf_counter() - started)
        elapsed = time.perf_counter() - started_all
        latencies.sort()
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
        self.say(
            f"{len(latencies)} writes in {elapsed:.1f} s: {len(latencies) / elapsed:.0f} writes/s, "
            f"p50 {p50:.2f} ms, p99 {p99:.2f} ms (sealed, fsynced on a majority, 3 managers)"
        )
        self.say("`make bench` runs the full benchmark against plain pysyncobj and etcd")
        return {"p50_ms": p50}


def run_demo(keep: bool = False, out: TextIO = sys.stdout, workdir: Path | None = None) -> bool:
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="raftstore-demo-"))
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    print(f"raftstore demo: a real cluster on 127.0.0.1 in {root}", file=out, flush=True)
    demo = _Demo(root, out)
    ok = False
    try:
        demo.run()
        ok = True
        print("\nAll steps passed.", file=out, flush=True)
    except (DemoFailed, AssertionError) as error:
        print(f"\nFAILED at step {demo.step_number}: {error}", file=out, flush=True)
        print(demo.cluster.logs()[-4000:], file=out)
    finally:
        demo.cluster.close()
        if keep:
            print(f"data directories kept in {root}", file=out)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return ok

