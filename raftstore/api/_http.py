"""``/metrics`` and ``/healthz`` over HTTP: what an operator scrapes to watch Raft, proposals, the disk and the keys.

Events are counted where they happen (``telemetry``'s series). State (term,
indices, lock, certificate expiry) is read from the daemon when Prometheus
scrapes, through the same ``node_info`` as ``raftstore info`` (``_views``), so
nothing runs on a timer and a scrape never shows a stale value.

The same address answers ``/healthz`` for load balancers and orchestrators,
as Vault's ``sys/health`` does: 200 when this node can serve, 503 with the
reason when it cannot (see ``health``). Any other path is 404, so that a
probe of a wrong path never looks healthy.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from ..keyring import RaftstoreError
from ..storage import Role
from ..telemetry import EVENTS
from ._views import node_info

if TYPE_CHECKING:
    from ._host import Host

__all__ = ["MetricsServer", "health"]

_log = logging.getLogger("raftstore.metrics")


def _flag(value: Any) -> float:
    return 1.0 if value else 0.0


class _DaemonState(Collector):
    """The daemon's state at scrape time, from the same ``node_info`` as ``raftstore info``."""

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


def health(info: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body of ``/healthz`` for a daemon's ``info``.

    A manager is healthy when it is unlocked, in the Raft configuration and
    knows a leader that it is connected to (or is the leader): then it can
    serve reads and forward writes. A worker is
    not a Raft member; it is healthy while it holds its identity, has not been
    removed and its last call to a manager succeeded (it receives its grants).
    Anything else is 503 with a reason from a fixed set: ``inactive``,
    ``locked``, ``failed``, ``not_member``, ``no_leader``, ``removed``,
    ``no_manager``. The body never holds more than ``info`` shows an operator.
    """
    role = info.get("role")
    body: dict[str, Any] = {"healthy": False, "reason": None, "state": info.get("state"),
                            "node_id": info.get("node_id"), "role": role}
    if info.get("state") == "inactive":
        return _unhealthy(body, "inactive", "this node is not part of a cluster")
    if info.get("locked"):
        return _unhealthy(body, "locked", "this manager is locked: it waits for its unlock key")
    if info.get("state") == "failed":
        return _unhealthy(body, "failed", f"this node stopped: {info.get('error')}")
    if role == Role.WORKER:
        if info.get("removed"):
            return _unhealthy(body, "removed", "this worker was removed from the cluster")
        if info.get("error"):
            return _unhealthy(body, "no_manager", f"this worker cannot reach a manager: {info['error']}")
        return 200, dict(body, healthy=True)
    raft = info.get("raft") or {}
    body.update(leader=info.get("leader"), is_leader=bool(info.get("is_leader")), term=raft.get("term"),
                applied_index=raft.get("applied_index"))
    if info.get("node_id") not in {m["node_id"] for m in raft.get("members", [])}:
        return _unhealthy(body, "not_member", "this manager is not in the Raft configuration")
    leader = info.get("leader")
    if not leader:
        return _unhealthy(body, "no_leader", "the cluster has no leader that this manager knows of")
    if leader != info.get("node_id") and leader not in raft.get("connected", []):
        # pysyncobj keeps the last leader while it is connected to no one (it holds no election then)
        return _unhealthy(body, "no_leader", f"this manager has lost its connection to the leader {leader}")
    return 200, dict(body, healthy=True)


def _unhealthy(body: dict[str, Any], reason: str, message: str) -> tuple[int, dict[str, Any]]:
    return 503, dict(body, reason=reason, message=message)


class _QuietHandler(WSGIRequestHandler):
    """No access log: a scrape every few seconds is not news."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class MetricsServer:
    """``/metrics`` (the process's events plus the daemon's state) and ``/healthz`` over HTTP for one daemon."""

    def __init__(self, host: "Host") -> None:
        self.registry = CollectorRegistry()
        self.registry.register(EVENTS)
        ProcessCollector(registry=self.registry)  # CPU, memory, open files: what etcd and Vault export too
        self._info = lambda: node_info(host)
        self.registry.register(_DaemonState(self._info))
        self._metrics_app = make_wsgi_app(self.registry)
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.address: str | None = None

    def start(self, host: str, port: int) -> str:
        """Serve on HOST:PORT (port 0 picks one); returns the address actually bound."""
        try:
            self._server = make_server(host, port, self._app, _server_class(host), handler_class=_QuietHandler)
        except OSError as error:
            raise RaftstoreError(f"cannot serve metrics on {host}:{port}: {error.strerror or error}") from None
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()
        bound_host, bound_port = self._server.server_address[:2]
        self.address = f"{bound_host}:{bound_port}"
        return self.address

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == "/metrics":
            return self._metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            try:
                status, body = health(self._info())
            except Exception:  # a daemon between modes: not healthy, and the probe still gets an answer
                _log.debug("daemon state not available for a health check", exc_info=True)
                status, body = 503, {"healthy": False, "reason": "unavailable",
                                     "message": "this node is changing mode; try again"}
            return _respond(start_response, status, json.dumps(body, sort_keys=True) + "\n")
        return _respond(start_response, 404, json.dumps({"error": "not found: try /metrics or /healthz"}) + "\n")

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _server_class(host: str) -> type[ThreadingWSGIServer]:
    """prometheus_client's threading server, for IPv6 when the host is an IPv6 address."""
    if ":" not in host:
        return ThreadingWSGIServer
    return type("ThreadingWSGIServer6", (ThreadingWSGIServer,), {"address_family": socket.AF_INET6})


_REASONS = {200: "200 OK", 404: "404 Not Found", 503: "503 Service Unavailable"}


def _respond(start_response: Callable[..., Any], status: int, text: str) -> list[bytes]:
    data = text.encode()
    start_response(_REASONS[status], [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                                      ("Cache-Control", "no-store")])
    return [data]
