"""``make bench`` / ``python -m benchmarks``: raftstore against its peers, in one run.

Every figure is the median of several runs, and every raftstore figure is
reported as a ratio to each peer measured in the same run (the machines are
shared and noisy: absolute numbers move, same-run ratios much less). Each peer
runs in more than one configuration (etcd through its native gRPC API and its
JSON gateway; pysyncobj tuned for latency and as shipped), and the ratios and
targets take the best of them, cell by cell (benchmarks/report.py).
"""

from __future__ import annotations

import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from raftstore.tools._loadgen import run_load

from .peers import (
    ETCD_GRPC_CLIENT,
    EtcdGrpcPeer,
    EtcdPeer,
    PysyncobjPeer,
    RaftstorePeer,
    cpu_seconds,
    etcd_available,
    etcd_grpc_client,
    etcd_version,
)
from .report import render_markdown, render_plot, render_table
from .scale import measure as measure_scale
from .scale import parse_sizes, render_text
from .scale_report import extract_section, render_section, replace_section
from .scenarios import failover_seconds, fill, unlock_and_catch_up_seconds
from .sealing import sealing_cost_us_per_write

HERE = Path(__file__).parent
CLIENTS = (1, 16, 64)
PAYLOADS = (100, 1024, 64 * 1024)
SYSTEMS = "raftstore,no-sealing,no-fsync,pysyncobj-tuned,pysyncobj,etcd-grpc,etcd-gateway"
# Shorthands accepted by --systems: every configuration of a peer.
ALIASES = {"etcd": ("etcd-grpc", "etcd-gateway"), "pysyncobj-all": ("pysyncobj-tuned", "pysyncobj")}
# Failover is timed for these (the etcd gRPC client last: its channel is the only gRPC one the harness opens itself).
FAILOVER = ("raftstore", "pysyncobj (tuned)", "pysyncobj (default)", "etcd (gateway)", "etcd (gRPC)")
INSTALL_ETCD = "apt-get install -y etcd-server"
#: ``make bench``'s scale run: ``make bench-scale``'s fill at a small size (see benchmarks/scale.py).
SCALE_SIZES = "0.1"
SCALE_SETTINGS = {"clients": 16, "value_bytes": 10 * 1024, "fill_seconds_per_gb": 900, "stuck_seconds": 120}


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    import pysyncobj.version

    memory = "unknown"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kb / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pysyncobj": pysyncobj.version.VERSION,
        "etcd": etcd_version(),
        "etcd_grpc_client": etcd_grpc_client(),
    }


def measure_interleaved(peers: list[Any], payloads: tuple[int, ...], clients: tuple[int, ...], runs: int,
                        seconds: float, log: Any) -> list[dict[str, Any]]:
    """Every cell (payload, clients) measures every system, runs interleaved in a rotating order.

    Measuring system A for ten minutes and then system B would turn the
    machine's drift into a difference between A and B; interleaving keeps the
    same-run ratios honest.
    """
    factories = {peer.name: peer.writer_factory(peer.leader()) for peer in peers}
    for peer in peers:
        run_load(factories[peer.name], clients=4, payload=100, seconds=min(1.0, seconds))  # warm up
    rows = []
    for payload in payloads:
        for count in clients:
            results: dict[str, list[Any]] = {peer.name: [] for peer in peers}
            cpu: dict[str, list[float]] = {peer.name: [] for peer in peers}
            for run in range(runs):
                order = peers[run % len(peers):] + peers[: run % len(peers)]
                for peer in order:
                    pids = peer.pids()
                    before = cpu_seconds(pids)
                    result = run_load(factories[peer.name], clients=count, payload=payload, seconds=seconds)
                    cpu[peer.name].append((cpu_seconds(pids) - before) / max(result.ops, 1) * 1000)
                    results[peer.name].append(result)
            for peer in peers:
                measured = results[peer.name]
                row = {
                    "system": peer.name,
                    "clients": count,
                    "payload": payload,
                    "throughput": statistics.median(r.throughput for r in measured),
                    "p50_ms": statistics.median(r.p50_ms for r in measured),
                    "p99_ms": statistics.median(r.p99_ms for r in measured),
                    "errors": sum(r.errors for r in measured),
                    "server_cpu_ms_per_write": statistics.median(cpu[peer.name]),
                    "runs": [r.to_dict() for r in measured],
                }
                rows.append(row)
                log(f"  {peer.name:24} {count:3} clients {payload:6} B: {row['throughput']:8.0f} writes/s  "
                    f"p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  "
                    f"server CPU {row['server_cpu_ms_per_write']:.3f} ms/write"
                    + (f"  errors {row['errors']}" if row["errors"] else ""))
    return rows


def _median_failover(peer: Any, runs: int, log: Any) -> dict[str, Any]:
    times = []
    for _ in range(runs):
        try:
            times.append(failover_seconds(peer))
        except Exception as error:  # reported, not hidden
            log(f"  {peer.name}: failover run failed: {error}")
    result = {"system": peer.name, "seconds": statistics.median(times) if times else None, "runs": times}
    log(f"  {peer.name:24} failover: {result['seconds'] if result['seconds'] is None else round(result['seconds'], 2)} s")
    return result


@click.command()
@click.option("--quick", is_flag=True, help="One run, 100-byte values, short measurements (a few minutes).")
@click.option("--smoke", is_flag=True, help="raftstore only, a few seconds in all (what `make test` runs).")
@click.option("--runs", type=int, default=3, show_default=True, help="Runs per figure (the median is reported).")
@click.option("--seconds", type=float, default=3.0, show_default=True, help="Length of one measurement.")
@click.option("--entries", type=int, default=100_000, show_default=True, help="Store size for unlock + catch-up.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=HERE / "out", show_default=True)
@click.option("--systems", default=SYSTEMS, show_default=True,
              help="Which systems to measure, in this order (`etcd`: both etcd configurations); raftstore@DIR "
                   "runs the managers from another checkout (e.g. the previous commit's, for a same-run before/after).")
@click.option("--scenarios/--no-scenarios", default=True, help="Also measure failover and unlock + catch-up.")
@click.option("--from-json", "from_json", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Render the table, plot and RESULTS.md from an earlier run's JSON instead of measuring.")
@click.option("--scale-sizes", default=None, metavar="GB,...",
              help=f"Also fill raftstore (and etcd) to these sizes as make bench-scale does (default: {SCALE_SIZES} "
                   "on full runs, none with --quick or --smoke; \"\" for none).")
@click.option("--write-results/--no-write-results", default=None,
              help="Rewrite benchmarks/RESULTS.md and its plot (default: on full runs only).")
def main(quick: bool, smoke: bool, runs: int, seconds: float, entries: int, out: Path, systems: str,
         scenarios: bool, from_json: Path | None, scale_sizes: str | None, write_results: bool | None) -> None:
    """Measure raftstore's log throughput and latency against plain pysyncobj and etcd."""
    if from_json is not None:
        _publish(json.loads(from_json.read_text()), out, write_results is not False)
        return
    if smoke:
        runs, seconds, entries = 1, 0.5, 300
        payloads, clients = (100,), (1, 16)
    elif quick:
        runs, seconds, entries = 1, 2.0, 20_000
        payloads, clients = (100,), CLIENTS
    else:
        payloads, clients = PAYLOADS, CLIENTS
    if write_results is None:
        write_results = not (quick or smoke)
    if scale_sizes is None:
        scale_sizes = "" if quick or smoke else SCALE_SIZES
    try:
        scale = parse_sizes(scale_sizes)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--scale-sizes") from None
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    report: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m benchmarks " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "settings": {"runs": runs, "seconds": seconds, "payloads": payloads, "clients": clients, "entries": entries},
        "rows": [],
        "failover": [],
        "unlock": None,
        "scale": None,
        "skipped": [],
    }
    log = lambda line: print(line, flush=True)  # noqa: E731
    log(f"raftstore benchmarks: {report['machine']['cpus']} CPUs, {report['machine']['cpu']}")
    root = Path(tempfile.mkdtemp(prefix="raftstore-bench-"))
    try:
        wanted = ["raftstore"] if smoke else _wanted(systems)
        variants = _peers(wanted, root, report["skipped"], log)
        try:
            for peer in variants:
                log(f"{peer.name}: starting a 3-member cluster on 127.0.0.1")
                peer.start()
            report["rows"] += measure_interleaved(variants, payloads, clients, runs, seconds, log)
            if not smoke and scenarios:
                for name in FAILOVER:
                    for peer in variants:
                        if peer.name == name:
                            report["failover"].append(_median_failover(peer, runs, log))
        finally:
            for peer in variants:
                peer.stop()
        if scenarios:
            log("raftstore (autolock): unlock and catch-up")
            locked = RaftstorePeer(root / "autolock", autolock=True)
            locked.start()
            try:
                fill(locked, entries)
                times = [unlock_and_catch_up_seconds(locked) for _ in range(runs)]
                report["unlock"] = {"entries": entries, "seconds": statistics.median(times), "runs": times}
                log(f"  unlock + catch-up with {entries} entries: {report['unlock']['seconds']:.2f} s")
            finally:
                locked.stop()
        if scale:
            log(f"scale: filling 3 managers with 10 KiB values to {scale_sizes} GB")
            report["scale"] = measure_scale(scale, ["raftstore"] + (["etcd"] if any(w.startswith("etcd") for w in wanted) else []), SCALE_SETTINGS,
                                            report["command"], log=log)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report["sealing"] = [
        {"batch": n, "payload": p, "us_per_write": round(sealing_cost_us_per_write(n, p), 3)}
        for p in payloads for n in (1, 16, 64)
    ]
    for item in report["sealing"]:
        log(f"  sealing, batch of {item['batch']:2} x {item['payload']} B: {item['us_per_write']:.2f} us of CPU per write")
    report["elapsed_seconds"] = round(time.monotonic() - started, 1)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    (out / f"results-{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    _publish(report, out, write_results)
    log(f"results in {out} ({report['elapsed_seconds']} s)")


def _wanted(systems: str) -> list[str]:
    names: list[str] = []
    for name in (n.strip() for n in systems.split(",")):
        for one in ALIASES.get(name, (name,) if name else ()):
            if one not in names:
                names.append(one)
    return names


def _peers(wanted: list[str], root: Path, skipped: list[str], log: Any) -> list[Any]:
    """The systems to measure; a peer that is not installed is left out, and the report says so."""
    makers = {
        "raftstore": lambda: RaftstorePeer(root / "raftstore"),
        "no-sealing": lambda: RaftstorePeer(root / "no-sealing", "no-sealing"),
        "no-fsync": lambda: RaftstorePeer(root / "no-fsync", "no-fsync"),
        "pysyncobj": lambda: PysyncobjPeer(root / "pysyncobj", "default"),
        "pysyncobj-tuned": lambda: PysyncobjPeer(root / "pysyncobj-tuned", "tuned"),
        "etcd-gateway": lambda: EtcdPeer(root / "etcd-gateway"),
        "etcd-grpc": lambda: EtcdGrpcPeer(root / "etcd-grpc"),
    }
    peers: list[Any] = []
    etcd_noted = False
    for name in wanted:
        if name.startswith("raftstore@"):  # another checkout's managers, for a same-run before/after
            code = Path(name.split("@", 1)[1])
            if not (code / "raftstore" / "__init__.py").exists():
                raise click.BadParameter(f"{code} is not a raftstore checkout", param_hint="--systems")
            makers[name] = lambda code=code: RaftstorePeer(root / f"raftstore-{code.name}", code=code)  # type: ignore[misc]
        if name not in makers:
            raise click.BadParameter(f"unknown system {name!r} (known: {', '.join(makers)}, etcd)",
                                     param_hint="--systems")
        if name.startswith("etcd") and not etcd_available():
            if not etcd_noted:
                skipped.append(f"etcd: not on PATH (Debian/Ubuntu: `{INSTALL_ETCD}`); its rows and columns are "
                               "empty, and the targets against etcd are not measured")
                log(f"  etcd: not on PATH, skipped ({INSTALL_ETCD} to include it)")
                etcd_noted = True
            continue
        if name == "etcd-grpc" and etcd_grpc_client() is None:
            skipped.append(f"etcd (gRPC): the gRPC client {ETCD_GRPC_CLIENT} is not installed (the `bench` extra: "
                           "`make venv`); etcd was measured through its gateway only")
            log(f"  etcd (gRPC): {ETCD_GRPC_CLIENT} not installed, skipped")
            continue
        peers.append(makers[name]())
    return peers


def _publish(report: dict[str, Any], out: Path, write_results: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    print()
    print(render_table(report))
    if report.get("scale"):
        print(render_text(report["scale"]))
    plot = render_plot(report, out / "throughput.png")
    if write_results:
        if plot is not None:
            shutil.copy(plot, HERE / "results.png")
        text = render_markdown(report, "results.png" if plot else None)
        if report.get("scale"):
            text += "\n" + render_section(report["scale"], None, heading="## Scale, small (`make bench`)")
        results = HERE / "RESULTS.md"
        kept = extract_section(results.read_text()) if results.exists() else None
        if kept is not None:  # make bench-scale's section stays as that run wrote it
            text = replace_section(text, kept)
        results.write_text(text)
        print(f"wrote {HERE / 'RESULTS.md'}", flush=True)


__all__ = ["main", "subprocess"]
