"""benchmarks/report.py judges raftstore against each peer's best configuration in the same cell."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.report import best, normalised, render_markdown, render_table, targets  # noqa: E402


def _row(system: str, clients: int, payload: int, throughput: float, p50: float, cpu: float = 0.5) -> dict[str, Any]:
    return {"system": system, "clients": clients, "payload": payload, "throughput": throughput, "p50_ms": p50,
            "p99_ms": p50 * 3, "errors": 0, "server_cpu_ms_per_write": cpu, "runs": []}


def _report(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"date": "2026-12-01 00:00 UTC", "command": "python -m benchmarks", "elapsed_seconds": 1.0,
            "machine": {"cpus": 2, "cpu": "test", "memory": "1 GiB", "kernel": "6", "python": "3.11",
                        "pysyncobj": "0.3.17", "etcd": "3.4.23", "etcd_grpc_client": "python3-etcd3 0.13.0"},
            "settings": {"runs": 1, "seconds": 1.0}, "rows": rows, "failover": [], "unlock": None, "skipped": []}


def _targets(report: dict[str, Any]) -> dict[str, tuple[bool | None, str]]:
    return {what: (reached, figure) for what, reached, figure in targets(report)}


PEER_ROWS = [
    # sequential: gRPC has the lower p50, the gateway the higher throughput (the two bests differ)
    _row("etcd (gRPC)", 1, 100, 400, 2.0),
    _row("etcd (gateway)", 1, 100, 450, 2.4),
    _row("pysyncobj (tuned)", 1, 100, 800, 1.0),
    _row("pysyncobj (default)", 1, 100, 10, 100.0),
    _row("etcd (gRPC)", 64, 100, 2000, 30.0, cpu=0.4),
    _row("etcd (gateway)", 64, 100, 1500, 40.0, cpu=0.6),
    _row("pysyncobj (tuned)", 64, 100, 1500, 40.0),
    _row("pysyncobj (default)", 64, 100, 550, 110.0),
]


def test_best_is_chosen_per_cell_and_per_metric() -> None:
    report = _report(PEER_ROWS)
    assert best(report, "etcd", 1, 100)["system"] == "etcd (gateway)"
    assert best(report, "etcd", 1, 100, "p50_ms")["system"] == "etcd (gRPC)"
    assert best(report, "etcd", 64, 100)["system"] == "etcd (gRPC)"
    assert best(report, "pysyncobj", 64, 100)["system"] == "pysyncobj (tuned)"
    assert best(report, "etcd", 16, 100) is None


def test_targets_are_judged_against_the_best_configuration() -> None:
    rows = PEER_ROWS + [_row("raftstore", 1, 100, 1100, 0.9), _row("raftstore", 64, 100, 4100, 15.0, cpu=0.13)]
    judged = _targets(_report(rows))
    assert judged["sequential 100 B: at least 1,000 writes/s"][0] is True
    reached, figure = judged["sequential 100 B: p50 at most half of etcd's at its best"]
    assert reached is True and "gRPC, 2.00 ms" in figure and "gateway 2.40 ms" in figure
    reached, figure = judged["64 clients, 100 B: at least 2x etcd's throughput at its best"]
    assert reached is True and "gRPC, 2000 writes/s (2.05x)" in figure
    assert judged["64 clients, 100 B: server CPU per write at most 0.136 ms (half of 0.272)"][0] is True
    reached, figure = judged["64 clients, 100 B: at least 2x pysyncobj at its best"]
    assert reached is True and figure.startswith("2.73x (tuned")

    slower = PEER_ROWS + [_row("raftstore", 1, 100, 900, 1.1), _row("raftstore", 64, 100, 3900, 16.0, cpu=0.2)]
    judged = _targets(_report(slower))
    assert judged["sequential 100 B: at least 1,000 writes/s"][0] is False
    assert judged["sequential 100 B: p50 at most half of etcd's at its best"][0] is False
    assert judged["64 clients, 100 B: at least 2x etcd's throughput at its best"][0] is False
    assert judged["64 clients, 100 B: server CPU per write at most 0.136 ms (half of 0.272)"][0] is False


def test_etcd_targets_are_not_judged_without_the_native_grpc_api() -> None:
    rows = [r for r in PEER_ROWS if r["system"] != "etcd (gRPC)"]
    rows += [_row("raftstore", 1, 100, 1100, 0.9), _row("raftstore", 64, 100, 4100, 15.0)]
    judged = _targets(_report(rows))
    reached, figure = judged["64 clients, 100 B: at least 2x etcd's throughput at its best"]
    assert reached is None and "native gRPC API not measured" in figure
    no_etcd = [r for r in rows if not r["system"].startswith("etcd")]
    assert _targets(_report(no_etcd))["sequential 100 B: p50 at most half of etcd's at its best"][0] is None


def test_no_regression_pools_the_ratios_to_the_gateway() -> None:
    before = {(1, 1024): 0.76, (16, 1024): 1.33, (64, 1024): 1.41,
              (1, 65536): 1.04, (16, 65536): 1.67, (64, 65536): 1.54}
    what = "no regression at 1 KiB and 64 KiB: throughput ratio to etcd (gateway) at least 90% of before issue 15, pooled"

    def judged(scale: float) -> tuple[bool | None, str]:
        rows = []
        for (clients, payload), ratio in before.items():
            rows += [_row("etcd (gateway)", clients, payload, 100, 5.0),
                     _row("raftstore", clients, payload, 100 * ratio * scale, 5.0)]
        return _targets(_report(rows))[what]

    assert judged(1.0)[0] is True
    assert judged(0.95)[0] is True  # within run-to-run noise
    reached, figure = judged(0.8)
    assert reached is False and "6 cells" in figure
    assert _targets(_report(PEER_ROWS + [_row("raftstore", 1, 100, 500, 2.0)]))[what][0] is None


def test_reports_from_before_issue_15_keep_rendering() -> None:
    old = _report([_row("etcd", 1, 100, 450, 2.0), _row("pysyncobj", 1, 100, 10, 100.0),
                   _row("raftstore", 1, 100, 500, 1.9)])
    old["failover"] = [{"system": "etcd", "seconds": 7.0, "runs": [7.0]}]
    assert {r["system"] for r in normalised(old)["rows"]} == {"etcd (gateway)", "pysyncobj (default)", "raftstore"}
    text = render_table(old)
    assert "1.11x (gateway)" in text and "failover (etcd (gateway))" in text
    assert "native gRPC API not measured" in text


def test_markdown_names_every_configuration_and_how_to_install_etcd() -> None:
    rows = PEER_ROWS + [_row("raftstore", 1, 100, 1100, 0.9), _row("raftstore", 64, 100, 4100, 15.0)]
    text = render_markdown(_report(rows), None)
    assert "apt-get install -y etcd-server" in text
    assert "## Each configuration of each peer" in text
    assert "2000* writes/s, p50 30.00 ms (raftstore 2.05x)" in text
    assert "| 2.05x (gRPC) | 2.73x (tuned) |" in text


def test_a_missing_etcd_or_grpc_client_is_skipped_and_said(monkeypatch: Any, tmp_path: Path) -> None:
    from benchmarks import run

    wanted = run._wanted("raftstore,etcd,pysyncobj-all")
    assert wanted == ["raftstore", "etcd-grpc", "etcd-gateway", "pysyncobj-tuned", "pysyncobj"]
    monkeypatch.setattr(run, "etcd_available", lambda: False)
    skipped: list[str] = []
    peers = run._peers(wanted, tmp_path, skipped, lambda line: None)
    assert [p.name for p in peers] == ["raftstore", "pysyncobj (tuned)", "pysyncobj (default)"]
    assert len(skipped) == 1 and "apt-get install -y etcd-server" in skipped[0]

    monkeypatch.setattr(run, "etcd_available", lambda: True)
    monkeypatch.setattr(run, "etcd_grpc_client", lambda: None)
    skipped = []
    peers = run._peers(["etcd-grpc", "etcd-gateway"], tmp_path, skipped, lambda line: None)
    assert [p.name for p in peers] == ["etcd (gateway)"]
    assert "python3-etcd3 is not installed" in skipped[0]
