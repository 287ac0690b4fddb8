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
- the metrics and health HTTP endpoints (``MetricsServer``, ``health``);
- the HTTPS/JSON API of the remote control port (``RestApi``, ``ROUTES``):
  each route runs one control method through the same authorization;
- the serve function, the one place that builds a daemon wired to all of
  the above (``_serve``).

Everything here but the serve function is typed against ``Host`` (``_host``),
the short list of what the API uses of the daemon, and never imports
``Daemon``.

Names load on first use, as in the other packages.
"""

from __future__ import annotations

from ..keyring import surface


# The public names of each module, listed here so that __all__ needs no import. METHODS and ALLOWED
# come from _methods, which imports every method module: only then are they filled.
_PUBLIC = {
    "_methods": ["METHODS", "ALLOWED", "method"],
    "_authz": ["RAFT_CHANNEL", "Caller", "StoreView", "authorize"],
    "_cluster_service": ["ClusterService", "NODE_API"],
    "_doctor": ["Finding", "audit"],
    "_host": ["Host"],
    "_http": ["MetricsServer", "health"],
    "_rest": ["RestApi", "ROUTES", "ALTERNATES", "Route"],
    "_views": ["node_info", "ca_config", "node_row"],
    "_serve": ["serve", "build_daemon", "api_wiring"],
}
_LAZY = {name: f".{module}" for module, names in _PUBLIC.items() for name in names}

__all__ = [*_LAZY]


__getattr__, __dir__ = surface(__name__, _LAZY)
