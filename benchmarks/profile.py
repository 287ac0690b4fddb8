"""``python -m benchmarks.profile``: where a write's time goes on the leader, per thread.

Starts a 3-manager cluster on 127.0.0.1 (from this checkout, or from another
one with ``--code``), drives it with sequential (or concurrent) 100-byte
writes for a bounded time, and meanwhile records the leader with py-spy
(``--gil``: only the thread holding the interpreter, which is what bounds a
Python process). Prints the CPU per write of the leader and of the followers
(from /proc) and the profile's heaviest frames by thread; the raw collapsed
stacks are kept for flame graphs.

py-spy comes with the ``bench`` extra (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from raftstore.tools._loadgen import run_load

from .peers import RaftstorePeer, cpu_seconds


def _summarise(collapsed: Path, top: int) -> list[str]:
    """Self and inclusive sample counts per frame, from py-spy's collapsed output (``--format raw``)."""
    by_thread: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        by_thread[frames[0]] += count
        for frame in set(frames[1:]):
            inclusive[frame] += count
        own[frames[-1]] += count
    lines = [f"{total} samples holding the GIL"]
    lines += [f"  thread {name}: {100 * n / total:.1f}%" for name, n in by_thread.most_common()]
    lines.append("inclusive:")
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    lines.append("self:")
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    return lines


@click.command()
@click.option("--clients", type=int, default=1, show_default=True)
@click.option("--seconds", type=float, default=8.0, show_default=True, help="Length of the profiled load.")
@click.option("--rate", type=int, default=250, show_default=True, help="py-spy samples per second.")
@click.option("--top", type=int, default=40, show_default=True)
@click.option("--code", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Run the managers from another checkout (e.g. the previous commit's) for a before/after.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("benchmarks/out"),
              show_default=True)
@click.option("--py-spy/--no-py-spy", "use_py_spy", default=True, help="Without: CPU per write only.")
@click.option("--follower", is_flag=True, help="Record a follower instead of the leader.")
def main(clients: int, seconds: float, rate: int, top: int, code: Path | None, out: Path, use_py_spy: bool,
         follower: bool) -> None:
    """Profile the leader (or a follower) under writes and print CPU per write per manager."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if use_py_spy and not Path(spy).exists():
        raise click.ClickException("py-spy is not installed: pip install -e '.[bench]'")
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="raftstore-profile-"))
    peer = RaftstorePeer(root, code=code)
    try:
        peer.start()
        leader = peer.leader()
        factory = peer.writer_factory(leader)
        run_load(factory, clients=4, payload=100, seconds=1.0)  # warm up
        leader_pid = leader.process.pid
        followers = [pid for pid in peer.pids() if pid != leader_pid]
        collapsed = out / f"profile-{'follower' if follower else 'leader'}-{clients}c.txt"
        recorder: Any = None
        if use_py_spy:
            recorder = subprocess.Popen(
                [spy, "record", "--gil", "--threads", "--nonblocking", "--format", "raw", "--rate", str(rate),
                 "--duration", str(int(seconds) + 1), "--pid", str(followers[0] if follower else leader_pid),
                 "--output", str(collapsed)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            time.sleep(0.5)
        before_leader, before_followers = cpu_seconds([leader_pid]), cpu_seconds(followers)
        result = run_load(factory, clients=clients, payload=100, seconds=seconds)
        leader_ms = (cpu_seconds([leader_pid]) - before_leader) / max(result.ops, 1) * 1000
        follower_ms = (cpu_seconds(followers) - before_followers) / max(result.ops, 1) / max(len(followers), 1) * 1000
        print(f"{clients} clients: {result.throughput:.0f} writes/s, p50 {result.p50_ms:.2f} ms, "
              f"p99 {result.p99_ms:.2f} ms, errors {result.errors}")
        print(f"CPU per write: leader {leader_ms:.3f} ms, each follower {follower_ms:.3f} ms")
        if recorder is not None:
            recorder.wait(timeout=seconds + 30)
            if collapsed.exists():
                print("\n".join(_summarise(collapsed, top)))
                print(f"collapsed stacks: {collapsed}")
    finally:
        peer.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
