"""``raftstore check perf``: is this cluster fast enough, now? (as ``etcdctl check perf``)."""

from __future__ import annotations

import sys
from typing import Any

import click

from raftstore import Client, Thresholds, parse_host, run_check

from ._common import Connection, _tls_context, connection_options, emit_json, format_option, handle_errors, resolve_host

__all__ = ["register"]

_DEFAULTS = Thresholds()


@click.group("check")
def check() -> None:
    """Check a live cluster."""


@check.command("perf")
@click.option("--duration", type=click.FloatRange(1, 600), default=10.0, show_default=True,
              help="Seconds of load.")
@click.option("--clients", type=click.IntRange(1, 256), default=16, show_default=True,
              help="Concurrent writers, each with its own connection.")
@click.option("--size", type=click.IntRange(1, 1024 * 1024), default=256, show_default=True,
              help="Bytes per value.")
@click.option("--min-throughput", type=click.FloatRange(0), default=_DEFAULTS.min_throughput, show_default=True,
              help="FAIL below this many committed writes per second.")
@click.option("--max-commit-p99", type=click.FloatRange(0), default=_DEFAULTS.max_commit_p99 * 1000,
              show_default=True, help="FAIL when the daemon's p99 commit latency is above this (ms).")
@click.option("--max-fsync-p99", type=click.FloatRange(0), default=_DEFAULTS.max_fsync_p99 * 1000,
              show_default=True, help="FAIL when the daemon's p99 fsync latency is above this (ms).")
@click.option("--max-leader-changes", type=click.IntRange(0), default=_DEFAULTS.max_leader_changes,
              show_default=True, help="FAIL when the leader changed more often than this during the run.")
@click.option("--max-lag", type=click.FloatRange(0), default=_DEFAULTS.max_lag, show_default=True,
              help="FAIL when a manager does not hold the last write this many seconds after the load "
                   "(checked when -H names the leader).")
@format_option
@connection_options
@handle_errors
def perf_cmd(duration: float, clients: int, size: int, min_throughput: float, max_commit_p99: float,
             max_fsync_p99: float, max_leader_changes: int, max_lag: float, output_format: str) -> None:
    """Write for --duration seconds and judge the cluster: PASS, or FAIL and why (exit 1).

    The load writes under the reserved prefix __raftstore_check_perf/ and removes
    its keys afterwards. The verdict reads the daemon's commit and fsync
    histograms, counts leader changes and, on the leader, checks that every
    manager keeps up. A progress line goes to standard error.

    \b
    Examples:
      raftstore check perf
      raftstore -H tcp://10.0.0.5:2376 --tlsverify check perf --duration 60 --clients 50
      raftstore check perf --format json --max-fsync-p99 10
    """
    conn = click.get_current_context().ensure_object(Connection)
    host = resolve_host(conn)
    tls = _tls_context(conn) if host.startswith("tcp://") else None
    parse_host(host)
    limits = Thresholds(min_throughput=min_throughput, max_commit_p99=max_commit_p99 / 1000,
                        max_fsync_p99=max_fsync_p99 / 1000, max_leader_changes=max_leader_changes,
                        max_lag=max_lag)
    report = run_check(lambda: _connect(host, tls), target=host, seconds=duration,
                       clients=clients, size=size, limits=limits)
    if output_format == "json":
        emit_json(report.to_dict())
    else:
        click.echo(f"{report.writes} writes of {size} bytes by {clients} clients in {report.duration:g}s: "
                   f"{report.throughput:g} writes/s, client p99 {report.client_p99_ms:g} ms")
        click.echo(f"daemon: p99 commit {_ms(report.commit_p99_ms)}, p99 fsync {_ms(report.fsync_p99_ms)} "
                   f"over {report.fsyncs} fsyncs, {report.leader_changes} leader change(s)")
        for note in report.notes:
            click.echo(f"note: {note}")
        click.echo("PASS" if report.passed else "FAIL: " + "; ".join(report.reasons))
    if not report.passed:
        sys.exit(1)


def _connect(host: str, tls: Any) -> Client:
    """One connection of the check (each load client has its own); no retries: they would hide what is measured."""
    return Client(host, tls=tls, timeout=30, retry_for=0)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g} ms"


def register(group: click.Group) -> None:
    group.add_command(check)
