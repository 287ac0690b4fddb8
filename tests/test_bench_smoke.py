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


def test_raftstore_bench_help() -> None:
    from click.testing import CliRunner

    from raftstore.cli import cli

    assert CliRunner().invoke(cli, ["bench", "--help"]).exit_code == 0
