"""raftstore.api: what callers outside the process can ask a daemon, and who may ask it.

It owns:

- the control-API method registry (``METHODS``, with each method's
  authorization in ``ALLOWED``) and the methods, one module per noun
  (``_methods`` lists them);
- authorization: the kinds of caller and the one check every listener runs
  (``_authz``);
- the cluster port's node API (``ClusterService``, ``NODE_API``);
- ``doctor``'s audit, and the read-only views that ``info``, ``node ls`` and
  ``/metrics`` share (``_views``);
- the metrics and health HTTP endpoints (``MetricsServer``, ``health``).

The api sits above ``node`` and never imports ``Daemon``: everything here is
typed against ``Host`` (``_host``), the short list of what it uses of the
daemon.
"""

from ._authz import RAFT_CHANNEL, Caller, StoreView, authorize
from ._cluster_service import NODE_API, ClusterService
from ._doctor import Finding, audit
from ._host import Host
from ._http import MetricsServer, health
from ._methods import ALLOWED, METHODS, method
from ._views import node_info

__all__ = [
    "ALLOWED",
    "METHODS",
    "method",
    "RAFT_CHANNEL",
    "Caller",
    "StoreView",
    "authorize",
    "NODE_API",
    "ClusterService",
    "Finding",
    "audit",
    "Host",
    "MetricsServer",
    "health",
    "node_info",
]
