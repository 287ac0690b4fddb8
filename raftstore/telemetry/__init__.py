"""raftstore.telemetry: what the process tells an operator about itself, its metric series and its logs.

It owns the Prometheus series that the proposer and the Raft adapter count
into (``EVENTS`` and the histograms and counters in it; nothing here serves
them: ``/metrics`` is the api package's) and the log set-up (text or JSON
lines, each carrying the node id and the Raft term). It imports nothing of
raftstore's above ``keyring``, so that every layer may use it.

Names load on first use, as in ``raftstore``: the command line reads the log
options on every start and should not pay for importing prometheus_client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._logging import LOG_FORMATS, LOG_LEVELS, configure_logging, set_log_context  # noqa: F401
    from ._metrics import (  # noqa: F401
        EVENTS,
        FSYNC_SECONDS,
        LEADER_CHANGES,
        PROPOSAL_SECONDS,
        PROPOSALS_COMMITTED,
        PROPOSALS_FAILED,
        SEAL_SECONDS,
        SNAPSHOT_BYTES,
        SNAPSHOT_SECONDS,
        counter_value,
        histogram_snapshot,
        timed,
    )

_LAZY = {
    **dict.fromkeys(["LOG_FORMATS", "LOG_LEVELS", "configure_logging", "set_log_context"], "._logging"),
    **dict.fromkeys(
        [
            "EVENTS",
            "FSYNC_SECONDS",
            "LEADER_CHANGES",
            "PROPOSALS_COMMITTED",
            "PROPOSALS_FAILED",
            "PROPOSAL_SECONDS",
            "SEAL_SECONDS",
            "SNAPSHOT_BYTES",
            "SNAPSHOT_SECONDS",
            "counter_value",
            "histogram_snapshot",
            "timed",
        ],
        "._metrics",
    ),
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
