"""raftstore.telemetry: what the process tells an operator about itself, its metric series and its logs.

It owns the Prometheus series that the proposer and the Raft layer count
into (``EVENTS`` and the histograms and counters in it; nothing here serves
them: ``/metrics`` is the api package's) and the log set-up (text or JSON
lines, each carrying the node id and the Raft term). It imports nothing of
raftstore's, so that every layer may use it.

Names load on first use, as in the other packages: the command line reads the
log options on every start and should not pay for importing prometheus_client.
"""

from __future__ import annotations

from ..keyring import surface


# The public names of each module, listed here so that __all__ needs no import.
_PUBLIC = {
    "_metrics": ["EVENTS", "FSYNC_SECONDS", "LEADER_CHANGES", "PROPOSALS_COMMITTED", "PROPOSALS_FAILED",
                 "PROPOSAL_SECONDS", "SEAL_SECONDS", "SNAPSHOT_BYTES", "SNAPSHOT_SECONDS", "TICK_LONGEST",
                 "TICK_SECONDS", "counter_value", "histogram_snapshot", "observe_tick", "timed"],
    "_logging": ["LOG_FORMATS", "LOG_LEVELS", "configure_logging", "set_log_context"],
}
_LAZY = {name: f".{module}" for module, names in _PUBLIC.items() for name in names}

__all__ = [*_LAZY]


__getattr__, __dir__ = surface(__name__, _LAZY)
