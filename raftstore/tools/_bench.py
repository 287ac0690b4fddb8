"""``raftstore bench``: a quick measurement of this installation, raftstore alone.

Three managers on 127.0.0.1 in a temporary directory, sealing and fsync on;
sequential and concurrent 100-byte writes through the leader's control
socket. ``make bench`` (the ``benchmarks`` package) runs the full comparison
with plain pysyncobj and etcd.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from ._loadgen import ControlWriter, LoadResult, run_load
from ._local_cluster import Cluster

__all__ = ["run_quick_bench"]


def run_quick_bench(seconds: float = 2.0, clients: tuple[int, ...] = (1, 16, 64), payload: int = 100,
                    out: TextIO = sys.stdout) -> list[LoadResult]:
    root = Path(tempfile.mkdtemp(prefix="raftstore-bench-"))
    cluster = Cluster(root)
    results = []
    try:
        print(f"starting 3 managers on 127.0.0.1 in {root}", file=out, flush=True)
        members = [cluster.add(f"m{i}") for i in (1, 2, 3)]
        cluster.init(members[0])
        for member in members[1:]:
            cluster.join(member, members[0], "manager")
        host = cluster.leader().host
        run_load(lambda: ControlWriter(host), clients=4, payload=payload, seconds=min(1.0, seconds))
        print(f"{'clients':>8} {'writes/s':>10} {'p50 ms':>8} {'p99 ms':>8}", file=out)
        for count in clients:
            result = run_load(lambda: ControlWriter(host), clients=count, payload=payload, seconds=seconds)
            results.append(result)
            print(f"{count:>8} {result.throughput:>10.0f} {result.p50_ms:>8.2f} {result.p99_ms:>8.2f}", file=out, flush=True)
    finally:
        cluster.close()
        shutil.rmtree(root, ignore_errors=True)
    return results
