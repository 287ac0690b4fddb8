"""Programs that drive a cluster of real daemons from outside, as an operator does.

A local cluster of daemon processes on 127.0.0.1 driven through the
``raftstore`` command (the demo, the quick bench, the integration tests), a
load generator that writes through the control client, and ``check perf``,
which judges a running cluster against thresholds. Nothing here runs inside a
daemon: it reaches one only through the command line or net's control client.
The daemon's ``perf.cleanup`` method deletes the keys under ``PERF_PREFIX``,
which is why api may import this package's surface.

Names load on first use, so that a daemon importing ``PERF_PREFIX`` does not
pay for the load generator's multiprocessing.
"""

from __future__ import annotations

from ..keyring import surface


# The public names of each module, listed here so that __all__ needs no import.
_PUBLIC = {
    "_local_cluster": ["Cluster", "Node", "Result", "RAFTSTORE", "free_port", "wait_until"],
    "_loadgen": ["Writer", "LoadResult", "LoadProgress", "ControlWriter", "run_load"],
    "_bench": ["run_quick_bench"],
    "_demo": ["run_demo"],
    "_check_perf": ["PERF_PREFIX", "Thresholds", "PerfReport", "histogram_quantile", "judge", "run_check"],
}
_LAZY = {name: f".{module}" for module, names in _PUBLIC.items() for name in names}

__all__ = list(_LAZY)


__getattr__, __dir__ = surface(__name__, _LAZY)
