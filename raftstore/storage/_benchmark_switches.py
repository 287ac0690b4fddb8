"""Benchmark-only switches: the store with sealing or fsync turned off, as controls.

They exist so that the benchmarks can report what sealing and fsync cost, and
are not user options: there is no flag for them, and the daemon refuses them
unless its data directory sits inside a directory the benchmark harness made
(one holding a ``.raftstore-benchmark`` file). A daemon running with either
logs so loudly on every start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..keyring import StorageError

__all__ = ["BenchmarkSwitches", "MARKER_FILE", "NO_SEALING_ENV", "NO_FSYNC_ENV"]

MARKER_FILE = ".raftstore-benchmark"
NO_SEALING_ENV = "RAFTSTORE_BENCHMARK_NO_SEALING"
NO_FSYNC_ENV = "RAFTSTORE_BENCHMARK_NO_FSYNC"


@dataclass(frozen=True)
class BenchmarkSwitches:
    no_sealing: bool = False
    no_fsync: bool = False

    @classmethod
    def from_environment(cls, data_dir: Path) -> "BenchmarkSwitches":
        switches = cls(no_sealing=os.environ.get(NO_SEALING_ENV) == "1", no_fsync=os.environ.get(NO_FSYNC_ENV) == "1")
        if (switches.no_sealing or switches.no_fsync) and not (Path(data_dir).absolute().parent / MARKER_FILE).exists():
            raise StorageError(
                f"{NO_SEALING_ENV}/{NO_FSYNC_ENV} are benchmark controls and are refused outside a benchmark's own directory"
            )
        return switches

    @property
    def any(self) -> bool:
        return self.no_sealing or self.no_fsync
