"""``make bench-scale`` / ``python -m benchmarks.scale``: 3 managers filled to gigabytes, and what gets slower.

For each system (raftstore, then etcd when it is installed) one cluster is
filled through concurrent clients with 10 KiB values under unique keys to
each size in turn (0.5, 1 and 2 GB of live data by default; ``--sizes``).
At each size it records the fill's throughput, its failed writes and leader
changes, each manager's resident memory, snapshot times and the longest
Raft tick (raftstore), the time from a restart of every manager to the first
linearizable read (with raftstore's unlock), and the time a 4th manager
takes to join and serve a local read. The results go to benchmarks/scale.json,
benchmarks/scale.png and the "Scale" section of benchmarks/RESULTS.md, with
issue 15's targets marked reached or not. ``make bench`` runs the same at a
small size (``--scale-sizes`` of benchmarks/run.py).

Every phase has a deadline; a cluster that stops committing ends its fill
with a message saying so (see ``scale_fill``), and the run goes on to the
next system.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import click

from .peers import etcd_available
from .scale_fill import fill, memory_kb
from .scale_report import (GB, MB, Samples, phase_figures, render_plot, render_rows, render_section, replace_section,
                           targets)
from .scale_systems import EtcdScale, RaftstoreScale

__all__ = ["main", "measure", "parse_sizes", "publish_section"]

HERE = Path(__file__).parent
SYSTEMS = {"raftstore": RaftstoreScale, "etcd": EtcdScale}


def parse_sizes(text: str) -> list[float]:
    """"0.5,1,2" -> [0.5, 1.0, 2.0]: store sizes in GB (10^9 bytes), positive, in increasing order."""
    try:
        sizes = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"sizes must be numbers of GB separated by commas, not {text!r}") from None
    if any(not 0 < size <= 64 for size in sizes):
        raise ValueError("each size must be more than 0 and at most 64 GB")
    return sorted(set(sizes))


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _scrape(system: Any, seconds: float) -> dict[str, Samples | None]:
    """Every manager's metrics; a manager that does not answer is asked again until ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    scraped = system.scrape()
    while any(v is None for v in scraped.values()) and time.monotonic() < deadline:
        time.sleep(1.0)
        scraped.update({k: v for k, v in system.scrape().items() if scraped.get(k) is None})
    return scraped


def measure_system(system: Any, sizes: list[float], settings: dict[str, Any], log: Callable[[str], None],
                   checkpoint: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Fill ``system`` to each size in turn, timing a restart and a join after each fill."""
    result: dict[str, Any] = {"sizes": [], "error": None}
    value_bytes = settings["value_bytes"]
    log(f"{system.name}: starting 3 managers on 127.0.0.1")
    try:
        system.start()
        written = 0
        for index, size_gb in enumerate(sizes):
            size_bytes = round(size_gb * GB)
            increment_gb = max(0, size_bytes - written * value_bytes) / GB
            log(f"{system.name}: filling to {size_gb:g} GB ({settings['clients']} clients, {value_bytes} B values)")
            before = _scrape(system, 30)
            filled = fill(system, size_bytes=size_bytes, already_writes=written, prefix=f"scale{index}/",
                          clients=settings["clients"], value_bytes=value_bytes,
                          seconds=120 + settings["fill_seconds_per_gb"] * increment_gb,
                          stuck_seconds=settings["stuck_seconds"], log=log)
            written += filled["writes"]
            after = _scrape(system, 60)
            memory = {name: memory_kb(pid) for name, pid in sorted(system.pids().items())}
            live = written * value_bytes
            peak = [max(m.get("VmHWM", 0) * 1024 / MB, filled["sampled_peak_mb"].get(name, 0.0))
                    for name, m in memory.items()]
            row: dict[str, Any] = {
                "size_gb": size_gb, "live_bytes": live, "writes": written, "fill": filled,
                "rss": {"members": list(memory), "end_mb": [m.get("VmRSS", 0) * 1024 / MB for m in memory.values()],
                        "peak_mb": peak, "ratio": max(peak) * MB / live if peak and live else None},
                **phase_figures(before, after, system.metric_names),
            }
            result["sizes"].append(row)
            log(f"{system.name} at {live / MB:,.0f} MB: {filled['writes_per_s']:,.0f} writes/s "
                f"({filled['mb_per_s']:.1f} MB/s), {filled['errors']} failed, leader changes {row['leader_changes']} "
                f"(term +{row['term_increase']}), peak RSS {max(peak, default=0):,.0f} MB per manager at most, "
                f"{row['snapshots']['count']:.0f} snapshots ({row['snapshots']['sum_s']:.2f} s in all), longest tick "
                + ("-" if not row["tick"] else f"{row['tick']['longest_s'] * 1000:.0f} ms"))
            if hasattr(system, "slow_ticks"):  # where the slowest recent tick of each manager went, from its log
                row["slow_ticks"] = system.slow_ticks()
                for member, line in row["slow_ticks"].items():
                    log(f"  {member}: slow raft tick: {line}")
            if filled["aborted"]:
                result["error"] = f"the fill to {size_gb:g} GB stopped: {filled['aborted']}"
                log(f"{system.name}: {result['error']}; no larger size is measured")
                break
            key, value = "scale/last", f"{size_gb:g} GB at {time.time():.3f}".encode()
            system.put_probe(key, value, time.monotonic() + 120)
            for phase, seconds in (("restart", 60 + 60 * size_gb), ("join", 120 + 120 * size_gb)):
                log(f"{system.name}: timing the {phase} at {live / MB:,.0f} MB (deadline {seconds:.0f} s)")
                try:
                    row[phase] = getattr(system, phase)(key, value, seconds)
                except Exception as error:  # reported, and this system stops here: its cluster is in doubt
                    row[phase] = {"seconds": None, "error": f"{type(error).__name__}: {error}"}
                    result["error"] = f"the {phase} at {size_gb:g} GB failed: {row[phase]['error']}"
                    break
                log(f"  {phase}: {row[phase]}")
            checkpoint()
            if result["error"]:
                log(f"{system.name}: {result['error']}; no larger size is measured")
                break
    except Exception as error:  # a benchmark reports what went wrong and goes on with the next system
        result["error"] = f"{type(error).__name__}: {error}"
        log(f"{system.name}: stopped: {result['error']}")
    finally:
        system.stop()
    return result


def measure(sizes: list[float], systems: list[str], settings: dict[str, Any], command: str,
            log: Callable[[str], None] = _log,
            checkpoint: Callable[[dict[str, Any]], None] = lambda report: None) -> dict[str, Any]:
    """Every system filled to every size, one system at a time (each in its own temporary directory)."""
    from .run import machine

    report: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "machine": machine(),
        "settings": dict(settings, sizes=sizes),
        "systems": {},
        "notes": [],
        "load_average": {"start": round(os.getloadavg()[0], 2)},
    }
    started = time.monotonic()
    for name in systems:
        if name not in SYSTEMS:
            raise click.BadParameter(f"unknown system {name!r} (raftstore, etcd)", param_hint="--systems")
        if name == "etcd" and not etcd_available():
            report["systems"][name] = {"sizes": [], "skipped": "etcd is not on PATH (Debian: apt-get install "
                                       "etcd-server), so raftstore is measured alone"}
            log("etcd: not on PATH, skipped (apt-get install etcd-server to include it)")
            continue
        root = Path(tempfile.mkdtemp(prefix=f"raftstore-scale-{name}-"))
        try:
            report["systems"][name] = {"sizes": []}
            report["systems"][name] = measure_system(
                SYSTEMS[name](root), sizes, settings, log,
                checkpoint=lambda: checkpoint(report))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        checkpoint(report)
    report["elapsed_seconds"] = round(time.monotonic() - started, 1)
    report["load_average"]["end"] = round(os.getloadavg()[0], 2)
    return report


def render_text(report: dict[str, Any]) -> str:
    rows = render_rows(report["systems"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    raft = report["systems"].get("raftstore", {}).get("sizes", [])
    if raft:
        for what, reached, figure in targets(raft[-1]):
            state = "reached" if reached else ("NOT reached" if reached is False else "not measured")
            lines.append(f"target at {raft[-1]['size_gb']:g} GB: {what}: {state} ({figure})")
    for name, result in report["systems"].items():
        for note in (result.get("skipped"), result.get("error")):
            if note:
                lines.append(f"{name}: {note}")
    return "\n".join(lines)


def publish_section(report: dict[str, Any], plot: Path | None) -> None:
    """Put this run's section between the Scale markers of benchmarks/RESULTS.md (the rest is make bench's)."""
    results = HERE / "RESULTS.md"
    text = results.read_text() if results.exists() else "# Benchmark results\n"
    results.write_text(replace_section(text, render_section(report, plot.name if plot else None)))


@click.command()
@click.option("--sizes", default="0.5,1,2", show_default=True, help="Store sizes to fill to, in GB of live data.")
@click.option("--systems", default="raftstore,etcd", show_default=True, help="Which systems, in this order.")
@click.option("--clients", type=int, default=16, show_default=True, help="Concurrent clients during the fill.")
@click.option("--value-bytes", type=int, default=10 * 1024, show_default=True, help="Size of each value.")
@click.option("--fill-seconds-per-gb", type=float, default=900, show_default=True,
              help="Deadline of each fill: 120 s plus this much per GB it adds.")
@click.option("--stuck-seconds", type=float, default=120, show_default=True,
              help="Stop a fill after this long without a committed write.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=HERE / "out", show_default=True)
@click.option("--write-results/--no-write-results", default=True,
              help="Write benchmarks/scale.json, scale.png and the Scale section of RESULTS.md.")
@click.option("--from-json", "from_json", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Render from an earlier run's JSON instead of measuring.")
def main(sizes: str, systems: str, clients: int, value_bytes: int, fill_seconds_per_gb: float, stuck_seconds: float,
         out: Path, write_results: bool, from_json: Path | None) -> None:
    """Fill 3 managers to each size; throughput, failures, leader changes, memory, stalls, restart and join."""
    out.mkdir(parents=True, exist_ok=True)
    if from_json is not None:
        report = json.loads(from_json.read_text())
    else:
        try:
            parsed = parse_sizes(sizes)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--sizes") from None
        settings = {"clients": clients, "value_bytes": value_bytes, "fill_seconds_per_gb": fill_seconds_per_gb,
                    "stuck_seconds": stuck_seconds}
        partial = out / "scale-partial.json"

        def checkpoint(so_far: dict[str, Any]) -> None:  # what was measured survives a run cut short
            partial.write_text(json.dumps(so_far, indent=2) + "\n")

        report = measure(parsed, [s.strip() for s in systems.split(",") if s.strip()], settings,
                         " ".join(["python -m benchmarks.scale", *sys.argv[1:]]), checkpoint=checkpoint)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        (out / f"scale-{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(render_text(report), flush=True)
    if write_results:
        (HERE / "scale.json").write_text(json.dumps(report, indent=2) + "\n")
        plot = render_plot(report, HERE / "scale.png")
        publish_section(report, plot)
        print(f"wrote {HERE / 'scale.json'}, {plot or 'no plot (matplotlib missing)'} and the Scale section of "
              f"{HERE / 'RESULTS.md'}", flush=True)


if __name__ == "__main__":
    main()
