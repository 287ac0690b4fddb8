"""``raftstore bench``."""

from __future__ import annotations

import click

from raftstore import run_quick_bench

from ._common import handle_errors

__all__ = ["register"]


@click.command("bench")
@click.option("--seconds", type=click.FloatRange(0.5, 60), default=2.0, show_default=True,
              help="Length of each measurement.")
@click.option("--payload", type=click.IntRange(1, 1024 * 1024), default=100, show_default=True,
              help="Bytes per value.")
@handle_errors
def bench_cmd(seconds: float, payload: int) -> None:
    """Measure write throughput and latency of a fresh 3-manager cluster on 127.0.0.1.

    Sealing and fsync are on, as in production. For the comparison with plain
    pysyncobj and etcd, run "make bench" in a source checkout.
    """
    run_quick_bench(seconds=seconds, payload=payload)


def register(group: click.Group) -> None:
    group.add_command(bench_cmd)
