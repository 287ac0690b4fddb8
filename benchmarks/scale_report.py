"""The scale benchmark's figures read, judged and written down (no cluster here: pure functions, unit-tested).

- ``parse_prometheus`` and the histogram helpers read what a manager serves on ``/metrics``;
- ``longest_tick`` tells the longest Raft tick of one phase from a running maximum and a histogram;
- ``targets`` judges one store size against issue 15's targets;
- ``render_section`` writes the "Scale" section of benchmarks/RESULTS.md, which ``replace_section`` puts
  between its markers (``make bench`` rewrites the rest of that file and keeps this section);
- ``render_plot`` draws each figure against the store size.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

__all__ = ["GB", "MB", "SECTION_BEGIN", "SECTION_END", "parse_prometheus", "scalar", "histogram",
           "histogram_delta", "max_bound", "longest_tick", "phase_figures", "targets", "render_rows", "render_section",
           "replace_section", "extract_section", "render_plot"]

GB = 10**9
MB = 10**6
SECTION_BEGIN = "<!-- scale: begin (written by `make bench-scale`; `make bench` keeps this section) -->"
SECTION_END = "<!-- scale: end -->"

Samples = dict[str, list[tuple[dict[str, str], float]]]


def parse_prometheus(text: str) -> Samples:
    """Prometheus text exposition as {sample name: [(labels, value), ...]} (counters keep their ``_total``)."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return samples


def scalar(samples: Samples, name: str) -> float | None:
    """The value of a series, summed over its labels (a counter by reason counts every reason); None if absent."""
    found = samples.get(name)
    return None if not found else sum(value for _, value in found)


def histogram(samples: Samples, name: str) -> dict[str, Any] | None:
    """An unlabelled histogram: its count, sum and cumulative buckets [(upper bound, count)], sorted by bound."""
    if f"{name}_count" not in samples:
        return None
    buckets = sorted((math.inf if labels["le"] == "+Inf" else float(labels["le"]), value)
                     for labels, value in samples.get(f"{name}_bucket", []))
    return {"count": scalar(samples, f"{name}_count") or 0.0, "sum": scalar(samples, f"{name}_sum") or 0.0,
            "buckets": buckets}


def histogram_delta(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a histogram observed between two scrapes of the same process (``before`` None: since it started)."""
    if after is None:
        return None
    if before is None:
        return after
    earlier = dict(before["buckets"])
    return {"count": after["count"] - before["count"], "sum": after["sum"] - before["sum"],
            "buckets": [(bound, count - earlier.get(bound, 0.0)) for bound, count in after["buckets"]]}


def max_bound(delta: dict[str, Any] | None) -> float | None:
    """The smallest bucket bound that holds every observation of ``delta`` (the largest is at most this)."""
    if not delta or delta["count"] <= 0:
        return None
    for bound, count in delta["buckets"]:
        if count >= delta["count"]:
            return float(bound)
    return math.inf


def longest_tick(gauge_before: float | None, gauge_after: float | None,
                 delta: dict[str, Any] | None) -> tuple[float | None, bool]:
    """The longest tick of a phase, and whether it is exact (else it is an upper bound).

    The gauge is the longest tick since the process started. When it grew
    during the phase, its new value happened in the phase: exact. Otherwise
    the phase's longest is at most the old maximum, and at most the smallest
    bucket bound holding all of the phase's ticks.
    """
    if gauge_after is None:
        return None, False
    if gauge_before is None or gauge_after > gauge_before:
        return gauge_after, True
    bound = max_bound(delta)
    return (gauge_before if bound is None else min(gauge_before, bound)), False


def _delta(before: Samples | None, after: Samples, name: str) -> float | None:
    now = scalar(after, name)
    if now is None:
        return None
    return now - ((scalar(before, name) or 0.0) if before is not None else 0.0)


def phase_figures(before: Mapping[str, Samples | None], after: Mapping[str, Samples | None],
                  names: dict[str, str]) -> dict[str, Any]:
    """What the managers counted during one phase, from a scrape of each before and after it.

    ``names`` maps ``leader_changes``, ``term``, ``snapshot`` (a histogram) and, where the system has
    them, ``tick`` (a histogram) and ``tick_longest`` (a running maximum) to its series. A manager
    missing from either scrape is left out (and counted in ``unscraped``).
    """
    changes: list[float] = []
    terms_before: list[float] = []
    terms_after: list[float] = []
    snapshots: dict[str, Any] = {"count": 0.0, "sum_s": 0.0, "max_s": None, "members": {}}
    ticks: list[tuple[float, bool]] = []
    tick_members: dict[str, float] = {}
    over = 0.0
    unscraped = []
    for member, now in after.items():
        then = before.get(member)
        if now is None or then is None:
            unscraped.append(member)
            continue
        if (change := _delta(then, now, names["leader_changes"])) is not None:
            changes.append(change)
        for samples, terms in ((then, terms_before), (now, terms_after)):
            if (term := scalar(samples, names["term"])) is not None:
                terms.append(term)
        snap = histogram_delta(histogram(then, names["snapshot"]), histogram(now, names["snapshot"]))
        if snap is not None:
            snapshots["count"] += snap["count"]
            snapshots["sum_s"] += snap["sum"]
            snapshots["members"][member] = snap["count"]
            bound = max_bound(snap)
            if bound is not None:
                snapshots["max_s"] = max(bound, snapshots["max_s"] or 0.0)
        if "tick" in names:
            tick = histogram_delta(histogram(then, names["tick"]), histogram(now, names["tick"]))
            longest, exact = longest_tick(scalar(then, names["tick_longest"]), scalar(now, names["tick_longest"]), tick)
            if longest is not None:
                ticks.append((longest, exact))
                tick_members[member] = longest
            if tick is not None:
                within = next((count for bound, count in tick["buckets"] if bound >= 0.1), tick["count"])
                over += tick["count"] - within
    tick_figure = None
    if ticks:
        longest, exact = max(ticks)
        tick_figure = {"longest_s": longest, "exact": exact, "over_100ms": over, "members": tick_members}
    return {
        "leader_changes": int(max(changes)) if changes else None,
        "term_increase": int(max(terms_after) - max(terms_before)) if terms_before and terms_after else None,
        "snapshots": snapshots,
        "tick": tick_figure,
        "unscraped": unscraped,
    }


def _figure(value: float | None, unit: str, digits: int = 2) -> str:
    return "not measured" if value is None else f"{value:.{digits}f} {unit}"


def targets(row: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    """Issue 15's scale targets for one size of raftstore: (target, reached or None if not measured, figure)."""
    gb = row["size_gb"]
    fill = row["fill"]
    out: list[tuple[str, bool | None, str]] = []
    changes, term = row.get("leader_changes"), row.get("term_increase")
    out.append(("0 leader changes during the fill", None if changes is None else (changes == 0 and not term),
                "not measured" if changes is None else f"{changes} leader changes, term +{term}"))
    aborted = fill.get("aborted")
    out.append(("0 failed writes during the fill", fill["errors"] == 0 and not aborted,
                f"{fill['errors']} failed writes" + (f"; the fill stopped: {aborted}" if aborted else "")))
    tick = row.get("tick") or {}
    longest = tick.get("longest_s")
    out.append(("no tick-thread stall over 100 ms", None if longest is None else longest <= 0.1,
                "not measured" if longest is None else
                f"longest tick {'' if tick.get('exact') else 'at most '}{longest * 1000:.0f} ms "
                f"({tick.get('over_100ms', 0):.0f} ticks over 100 ms; a tick includes up to 50 ms of waiting)"))
    ratio = (row.get("rss") or {}).get("ratio")
    out.append(("RSS at most 1.5x the live data", None if ratio is None else ratio <= 1.5,
                "not measured" if ratio is None else
                f"{ratio:.2f}x (peak {max(row['rss']['peak_mb']):.0f} MB per manager, "
                f"{row['live_bytes'] / MB:.0f} MB live)"))
    restart = (row.get("restart") or {}).get("seconds")
    out.append((f"restart, unlock and first read within 10 s per GB ({10 * gb:g} s)",
                None if restart is None else restart <= 10 * gb,
                _figure(restart, "s") if restart is not None else (row.get("restart") or {}).get("error") or "not measured"))
    join = (row.get("join") or {}).get("seconds")
    out.append((f"a new manager joins and serves within 30 s per GB ({30 * gb:g} s)",
                None if join is None else join <= 30 * gb,
                _figure(join, "s") if join is not None else (row.get("join") or {}).get("error") or "not measured"))
    return out


def _cell(value: Any, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def render_rows(systems: dict[str, Any]) -> list[list[str]]:
    """The figures of every system at every size, as table rows (the first is the header)."""
    rows = [["system", "live data", "writes/s", "MB/s", "failed writes", "longest write pause (s)",
             "leader changes (term +)",
             "RSS per manager, end / peak (MB)", "peak RSS / live", "snapshots: n, total s, max s",
             "longest tick (ms)", "restart + unlock + read (s)", "join + serve (s)"]]
    for name, result in systems.items():
        for row in result.get("sizes", []):
            fill, rss, snaps, tick = row["fill"], row.get("rss") or {}, row.get("snapshots"), row.get("tick") or {}
            changes = "-" if row.get("leader_changes") is None else (
                f"{row['leader_changes']}" + ("" if row.get("term_increase") is None else f" (+{row['term_increase']})"))
            snapshot = "-" if not snaps else (
                f"{snaps['count']:.0f}, {snaps['sum_s']:.2f}, " + ("-" if snaps["max_s"] is None else f"≤ {snaps['max_s']:g}"))
            longest = tick.get("longest_s")
            rows.append([
                name, f"{row['live_bytes'] / MB:.0f} MB", f"{fill['writes_per_s']:.0f}", f"{fill['mb_per_s']:.1f}",
                f"{fill['errors']}" + (" (stopped)" if fill.get("aborted") else ""),
                _cell(fill.get("longest_pause_s"), "{:.0f}"), changes,
                "-" if not rss.get("end_mb") else " / ".join(
                    f"{e:.0f}/{p:.0f}" for e, p in zip(rss["end_mb"], rss["peak_mb"])),
                _cell(rss.get("ratio"), "{:.2f}x"),
                snapshot,
                "-" if longest is None else ("" if tick.get("exact") else "≤ ") + f"{longest * 1000:.0f}",
                _cell((row.get("restart") or {}).get("seconds")), _cell((row.get("join") or {}).get("seconds")),
            ])
    return rows


def render_section(report: dict[str, Any], plot_name: str | None, heading: str = "## Scale") -> str:
    """The Markdown of one scale run: how it was measured, the targets at the largest size, every figure."""
    m, s = report["machine"], report["settings"]
    lines = [heading, "",
             f"Measured {report['date']} with `{report['command']}`, {report['elapsed_seconds']} s in all. "
             f"Machine: {m['cpus']} CPUs ({m['cpu']}), {m['memory']} memory, Linux {m['kernel']}, "
             f"Python {m['python']}, etcd {m.get('etcd') or 'not installed'}"
             + (f"; 1-minute load average {report['load_average']['start']} at the start and "
                f"{report['load_average'].get('end')} at the end (the machine is shared)"
                if report.get("load_average") else "") + ".", "",
             f"Each system is 3 managers on 127.0.0.1, filled through {s['clients']} concurrent clients with "
             f"{s['value_bytes'] // 1024} KiB values under unique keys to each size in turn (live data: the values "
             "written; the cluster keeps its data from one size to the next). raftstore runs with sealing, fsync "
             "and autolock on; etcd with `--quota-backend-bytes` raised to fit. After each fill: all three managers "
             "are stopped (SIGTERM) and started again, and timed from their start to the first linearizable read "
             "(raftstore: unlocked first); then a 4th manager joins (etcd: member add) and is timed to its first "
             "local read of the latest write, and is removed again. Leader changes are the most any manager "
             "counted during the fill (raftstore: `raftstore_raft_leader_changes`, with the term's increase; etcd: "
             "`etcd_server_leader_changes_seen_total`); RSS is VmRSS at the end of the fill and VmHWM (the peak; etcd's counts the pages of its "
             "memory-mapped database file it has touched); "
             "snapshot times are `raftstore_snapshot_save_duration_seconds` over the fill (the maximum to a "
             "bucket's bound); the longest tick is `raftstore_raft_tick_longest_seconds`, one turn of the Raft "
             "tick thread, which includes up to 50 ms of waiting for network events (`≤`: that running maximum did not "
             "grow during the fill, so the fill's longest is known to a histogram bucket's bound). The longest write "
             "pause is the longest time the clients saw no write commit, sampled each second (so within a second; "
             "a pause shorter than the clients' 30 s timeout fails no write).", ""]
    raft = report["systems"].get("raftstore", {}).get("sizes", [])
    if raft:
        row = raft[-1]
        note = "" if row["size_gb"] >= 2 else f" (the issue's targets are for 2 GB; this run went to {row['size_gb']:g} GB)"
        lines += [f"### Targets, raftstore at {row['size_gb']:g} GB{note}", "", "| target | reached | figure |",
                  "| --- | --- | --- |"]
        for what, reached, figure in targets(row):
            state = "yes" if reached else ("**no**" if reached is False else "not measured")
            lines.append(f"| {what} | {state} | {figure} |")
        lines.append("")
    table = render_rows(report["systems"])
    lines += ["### By store size", "", "| " + " | ".join(table[0]) + " |", "|" + " --- |" * len(table[0])]
    lines += ["| " + " | ".join(r) + " |" for r in table[1:]]
    notes = list(report.get("notes", []))
    for name, result in report["systems"].items():
        if result.get("skipped"):
            notes.append(f"{name}: {result['skipped']}")
        if result.get("error"):
            notes.append(f"{name} stopped: {result['error']}")
        for row in result.get("sizes", []):
            fill = row["fill"]
            if fill.get("aborted"):
                notes.append(f"{name} at {row['size_gb']:g} GB: the fill stopped early: {fill['aborted']}")
            stalled = {m: t for m, t in ((row.get("tick") or {}).get("members") or {}).items() if t > 1.0}
            if len(stalled) > 1:
                notes.append(f"{name} at {row['size_gb']:g} GB: ticks of over a second on {len(stalled)} managers ("
                             + ", ".join(f"{m} {t:.1f} s" for m, t in sorted(stalled.items()))
                             + "): managers that stall together hold no election, so a stall need not show as "
                             "a leader change")
            if row.get("unscraped"):
                notes.append(f"{name} at {row['size_gb']:g} GB: {', '.join(row['unscraped'])} did not serve its "
                             "metrics before or after the fill; the counts above leave it out")
            if fill.get("error_samples"):
                notes.append(f"{name} at {row['size_gb']:g} GB: failed writes said: "
                             + "; ".join(f"`{e}`" for e in fill["error_samples"][:4]))
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    if plot_name:
        lines += ["", f"![each figure against store size]({plot_name})"]
    return "\n".join(lines) + "\n"


def extract_section(text: str) -> str | None:
    """The scale section of a RESULTS.md, markers included; None when it has none."""
    start, end = text.find(SECTION_BEGIN), text.find(SECTION_END)
    if start < 0 or end < start:
        return None
    return text[start:end + len(SECTION_END)]


def replace_section(text: str, section: str) -> str:
    """``text`` with its scale section replaced by ``section`` (markers added if missing), or it appended."""
    if not section.startswith(SECTION_BEGIN):
        section = f"{SECTION_BEGIN}\n{section.rstrip()}\n{SECTION_END}"
    old = extract_section(text)
    if old is not None:
        return text.replace(old, section)
    return text.rstrip("\n") + "\n\n" + section + "\n"


def render_plot(report: dict[str, Any], path: Path) -> Path | None:
    """Each figure against the store size, one panel each; None without matplotlib (the `bench` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    panels = [
        ("writes/s during the fill", lambda r: r["fill"]["writes_per_s"], None),
        ("leader changes + failed writes", lambda r: (r.get("leader_changes") or 0) + r["fill"]["errors"], None),
        ("longest write pause during the fill (s)", lambda r: r["fill"].get("longest_pause_s"), None),
        ("peak RSS per manager / live data", lambda r: (r.get("rss") or {}).get("ratio"), lambda gb: 1.5),
        ("longest Raft tick (s)", lambda r: (r.get("tick") or {}).get("longest_s"), lambda gb: 0.1),
        ("snapshot saves during the fill, total (s)", lambda r: (r.get("snapshots") or {}).get("sum_s"), None),
        ("restart + unlock + first read (s)", lambda r: (r.get("restart") or {}).get("seconds"), lambda gb: 10 * gb),
        ("join + serve a local read (s)", lambda r: (r.get("join") or {}).get("seconds"), lambda gb: 30 * gb),
    ]
    fig, axes = plt.subplots(2, 4, figsize=(18, 7.5))
    sizes = sorted({r["size_gb"] for result in report["systems"].values() for r in result.get("sizes", [])})
    for axis, (title, get, target) in zip(axes.flat, panels):
        for name, result in report["systems"].items():
            points = [(r["live_bytes"] / GB, get(r)) for r in result.get("sizes", []) if get(r) is not None]
            if points:
                axis.plot(*zip(*points), marker="o", label=name)
        if target is not None and sizes:
            axis.plot(sizes, [target(gb) for gb in sizes], linestyle="--", color="grey", label="target")
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("live data (GB)")
        axis.grid(True, alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7)
    fig.suptitle(f"3 managers on 127.0.0.1, {report['settings']['value_bytes'] // 1024} KiB values, "
                 f"{report['settings']['clients']} clients ({report['date']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
