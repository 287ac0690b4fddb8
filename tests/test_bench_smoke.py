"""The benchmark harness keeps working: a few seconds of it on every `make test`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.integration
def test_benchmark_harness_smoke(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--out", str(tmp_path), "--no-write-results"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "latest.json").read_text())
    rows = report["rows"]
    assert {r["clients"] for r in rows} == {1, 16}
    assert all(r["system"] == "raftstore" and r["throughput"] > 0 and r["errors"] == 0 for r in rows)
    assert report["unlock"]["seconds"] > 0
    assert "target: sequential 100 B: at least 1,000 writes/s" in result.stdout


@pytest.mark.slow
@pytest.mark.integration
def test_scale_harness_smoke(tmp_path: Path) -> None:
    """make bench-scale's fill, restart and join, at 5 MB (make bench runs 0.1 GB, make bench-scale 0.5 to 2 GB).

    In make test-slow: the fill's parsing and targets have fast tests (test_bench_scale.py)."""
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale", "--sizes", "0.005", "--systems", "raftstore", "--out",
         str(tmp_path), "--no-write-results"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (path,) = [p for p in tmp_path.glob("scale-*.json") if "partial" not in p.name]
    scale = json.loads(path.read_text())["systems"]["raftstore"]
    assert scale["error"] is None, scale["error"]
    (row,) = scale["sizes"]
    assert row["live_bytes"] >= 5 * 10**6 and row["fill"]["errors"] == 0 and row["leader_changes"] == 0
    assert row["restart"]["seconds"] > 0 and row["join"]["seconds"] > 0 and row["tick"]["longest_s"] > 0
    assert "target at 0.005 GB: RSS at most 1.5x the live data" in result.stdout


def test_raftstore_bench_help() -> None:
    from click.testing import CliRunner

    from raftstore.cli import cli

    assert CliRunner().invoke(cli, ["bench", "--help"]).exit_code == 0
