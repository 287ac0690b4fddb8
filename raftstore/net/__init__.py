"""raftstore.net: the bytes between processes: frames, TLS, listeners, clients and addresses.

It owns the one wire format (length-prefixed msgpack frames; an error travels
as its code), the TLS contexts and how a peer's certificate names it, the
control API (``ControlServer``/``ControlClient``: the command line to its
daemon; its TCP port also speaks HTTP, parsed by h11 in ``_http`` and handed
up as ``HttpRequest`` to an ``HttpApp``), the cluster port (``ClusterListener``, ``ClusterClient``: nodes to
managers, managers to each other), the limits that apply before a peer's
identity is known, and the parsing of ``HOST:PORT`` and ``-H`` addresses. What
a request means is decided above (api); this package moves it and bounds it.
It imports only ``keyring``.
"""

from __future__ import annotations

from ..keyring import surface


# The public names of each module, listed here so that __all__ needs no import: a
# name loads with its module on first use (tests/test_package_surfaces.py checks
# this table against each module's __all__).
_PUBLIC = {
    "_addresses": ["split_host_port", "is_loopback_host", "parse_host"],
    "_frames": ["encode_frame", "read_frame", "write_frame", "FrameBuffer"],
    "_tls": ["TlsIdentity", "server_context", "client_context", "peer_identity"],
    "_control": ["ControlServer", "ControlClient", "Stream"],
    "_http": ["HttpRequest", "HttpResponse", "HttpApp"],
    "_cluster_listener": ["ClusterListener"],
    "_cluster_client": ["ClusterClient", "call_any_manager", "call_any_manager_anonymous", "fetch_root_ca", "try_each_manager"],
    "_rate_limit": ["JoinLimiter"],
}

_LAZY = {name: f".{module}" for module, names in _PUBLIC.items() for name in names}

__all__ = [*_LAZY]


__getattr__, __dir__ = surface(__name__, _LAZY)
