"""Prometheus metrics: what an operator scrapes to watch Raft, proposals, the disk and the keys.

Events (proposals, fsyncs, seals, snapshots, leader changes) are counted where
they happen, in process-wide series, as etcd does. State (term, indices, lock,
certificate expiry) is read from the daemon when Prometheus scrapes, through the
same code as ``raftstore info``, so nothing runs on a timer and a scrape never
shows a stale value.

Labels carry only words from a fixed set (an error code). No key, token,
secret, record name or value ever becomes a label or a sample.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .keyring import RaftstoreError

_log = logging.getLogger("raftstore.metrics")

if TYPE_CHECKING:
    from ._daemon import Daemon

__all__ = [
    "EVENTS",
    "FSYNC_SECONDS",
    "LEADER_CHANGES",
    "PROPOSALS_COMMITTED",
    "PROPOSALS_FAILED",
    "PROPOSAL_SECONDS",
    "SEAL_SECONDS",
    "SNAPSHOT_BYTES",
    "SNAPSHOT_SECONDS",
    "MetricsServer",
    "timed",
]

# A "_created" timestamp beside every counter doubles the series and says nothing an operator needs.
disable_created_metrics()

#: Every event series of this process. Each daemon serves it beside its own state.
EVENTS = CollectorRegistry()

# A write is 1-3 ms on a quiet disk; a stalled disk or an election takes seconds.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048,
                    4.096, 8.192)
# Sealing a record costs microseconds; a megabyte transaction costs about a millisecond.
_SEAL_BUCKETS = (0.000005, 0.00001, 0.00002, 0.00004, 0.00008, 0.00016, 0.00032, 0.00064, 0.00128, 0.00256, 0.00512)

PROPOSALS_COMMITTED = Counter(
    "raftstore_proposals_committed", "Proposals committed through Raft and applied without error.", registry=EVENTS)
PROPOSALS_FAILED = Counter(
    "raftstore_proposals_failed",
    "Proposals that failed, by reason: an error code such as UpdateOutOfSequence, NoQuorum or Timeout.",
    ["reason"], registry=EVENTS)
PROPOSAL_SECONDS = Histogram(
    "raftstore_proposal_commit_duration_seconds",
    "From a proposal's arrival at the proposer to its outcome (queueing, sealing, replication, fsync, apply).",
    buckets=_LATENCY_BUCKETS, registry=EVENTS)
FSYNC_SECONDS = Histogram(
    "raftstore_disk_fsync_duration_seconds", "One group-commit fsync of the Raft log (and its directory when needed).",
    buckets=_LATENCY_BUCKETS, registry=EVENTS)
SEAL_SECONDS = Histogram(
    "raftstore_seal_duration_seconds", "Sealing one Raft entry under the active data-encryption key.",
    buckets=_SEAL_BUCKETS, registry=EVENTS)
SNAPSHOT_SECONDS = Histogram(
    "raftstore_snapshot_save_duration_seconds", "Writing one sealed snapshot of the store (Raft log compaction).",
    buckets=_LATENCY_BUCKETS, registry=EVENTS)
SNAPSHOT_BYTES = Gauge(
    "raftstore_snapshot_size_bytes", "Size of the last sealed snapshot this process wrote.", registry=EVENTS)
LEADER_CHANGES = Counter(
    "raftstore_raft_leader_changes", "Times this manager saw the leader change (including to no leader).",
    registry=EVENTS)


@contextmanager
def timed(histogram: Histogram) -> Iterator[None]:
    """Observe how long the block took, in seconds, whether or not it raised."""
    started = time.perf_counter()
    try:
        yield
    finally:
        histogram.observe(time.perf_counter() - started)


def _flag(value: Any) -> float:
    return 1.0 if value else 0.0


class _DaemonState(Collector):
    """The daemon's state at scrape time, from the ``info`` method the CLI uses."""

    def __init__(self, info: Callable[[], dict[str, Any]]) -> None:
        self._info = info

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            info = self._info()
        except Exception:  # a daemon between modes (stopping Raft, unlocking): serve the event series alone
            _log.debug("daemon state not available for this scrape", exc_info=True)
            return
        yield GaugeMetricFamily("raftstore_locked", "1 while this manager waits for its unlock key.",
                                value=_flag(info.get("locked")))
        if info.get("autolock") is not None:
            yield GaugeMetricFamily("raftstore_autolock", "1 when the cluster has autolock on.",
                                    value=_flag(info.get("autolock")))
        if info.get("ca_rotation_in_progress") is not None:
            yield GaugeMetricFamily("raftstore_ca_rotation_in_progress", "1 while a root CA rotation is under way.",
                                    value=_flag(info.get("ca_rotation_in_progress")))
        if info.get("cert_expiry_seconds") is not None:
            yield GaugeMetricFamily("raftstore_certificate_expiry_seconds",
                                    "Seconds until this node's certificate expires (negative once expired).",
                                    value=float(info["cert_expiry_seconds"]))
        raft = info.get("raft")
        if not raft:
            return
        yield GaugeMetricFamily("raftstore_raft_term", "Current Raft term.", value=float(raft["term"] or 0))
        yield GaugeMetricFamily("raftstore_raft_commit_index", "Highest Raft index known committed.",
                                value=float(raft["commit_index"] or 0))
        yield GaugeMetricFamily("raftstore_raft_applied_index", "Highest Raft index applied to the store.",
                                value=float(raft["applied_index"] or 0))
        yield GaugeMetricFamily("raftstore_raft_is_leader", "1 on the leader, 0 elsewhere.",
                                value=_flag(info.get("is_leader")))
        yield GaugeMetricFamily("raftstore_raft_members", "Managers in the Raft configuration, this one included.",
                                value=float(len(raft.get("members", []))))
        yield GaugeMetricFamily("raftstore_raft_peers_connected",
                                "Other managers with an established mutual-TLS Raft connection.",
                                value=float(len(raft.get("connected", []))))


class MetricsServer:
    """``/metrics`` over HTTP for one daemon: the process's events plus the daemon's state."""

    def __init__(self, daemon: "Daemon") -> None:
        from ._methods import info

        self.registry = CollectorRegistry()
        self.registry.register(EVENTS)
        ProcessCollector(registry=self.registry)  # CPU, memory, open files: what etcd and Vault export too
        self.registry.register(_DaemonState(lambda: info(daemon, {})))
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.address: str | None = None

    def start(self, host: str, port: int) -> str:
        """Serve on HOST:PORT (port 0 picks one); returns the address actually bound."""
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as error:
            raise RaftstoreError(f"cannot serve metrics on {host}:{port}: {error.strerror or error}") from None
        bound_host, bound_port = self._server.server_address[:2]
        self.address = f"{bound_host}:{bound_port}"
        return self.address

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
