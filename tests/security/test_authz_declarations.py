"""Authorization declared once: every method on every listener names who may call it.

The listeners: the control socket and remote control API (``_methods``), the
HTTPS API on the remote control port (``_rest.ROUTES``: each route names a
control method and runs through the same check), the cluster port's node API (``_cluster_service.NODE_API``) and its Raft channel
(``_authz.RAFT_CHANNEL``). A method without a declaration fails here, and is
refused at run time by the one check, ``_authz.authorize``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from raftstore.api._authz import (
    ADMIN,
    ADMIN_WHILE_LOCKED,
    ANYONE,
    KINDS,
    LOCAL_ADMIN,
    MANAGER,
    RAFT_CHANNEL,
    REMOTE_ADMIN,
    Caller,
    StoreView,
    authorize,
)
from raftstore.api._cluster_service import NODE_API, ClusterService
from raftstore.api._methods import ALLOWED, METHODS, method
from raftstore.keyring import CLIENT_ROLE, MANAGER_ROLE, CertificateIdentity, PermissionDenied

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_every_control_method_is_declared() -> None:
    assert sorted(set(METHODS) - set(ALLOWED)) == []
    for name, kinds in ALLOWED.items():
        assert kinds and kinds <= set(KINDS), name
    # Node kinds are for the cluster port: on the control API no certificate of a node is an admin.
    assert all(kinds <= ADMIN_WHILE_LOCKED | {ANYONE} for kinds in ALLOWED.values())
    # A locked manager cannot check revocation: only what needs the unlock key or shows nothing secret.
    assert sorted(name for name, kinds in ALLOWED.items() if kinds == ADMIN_WHILE_LOCKED) == ["info", "ping", "unlock"]


def test_every_node_api_method_is_declared() -> None:
    for name, (attribute, kinds) in NODE_API.items():
        assert callable(getattr(ClusterService, attribute, None)), name
        assert kinds and kinds <= set(KINDS), name
    handlers = {a for a, _ in NODE_API.values()}
    # Public methods of the service that look like handlers (caller, params) are all in the table.
    undeclared = [n for n, f in vars(ClusterService).items()
                  if callable(f) and not n.startswith("_") and f.__code__.co_varnames[1:3] == ("caller", "params")
                  and n not in handlers]
    assert undeclared == []
    assert NODE_API["raft.remove"][1] == {MANAGER} and NODE_API["raft.step_down"][1] == {MANAGER}


def test_the_raft_channel_is_declared() -> None:
    assert RAFT_CHANNEL == {MANAGER}


def test_an_undeclared_control_method_is_refused_on_every_transport(tmp_path: Path) -> None:
    from raftstore.api._serve import build_daemon

    daemon = build_daemon(tmp_path / "d")

    @method("test.undeclared")
    def undeclared(daemon, params):  # pragma: no cover - must never run
        raise AssertionError("an undeclared method ran")

    try:
        for info in ({"transport": "unix"}, {"transport": "tcp", "tls": False}):
            with pytest.raises(PermissionDenied):
                daemon._handle("test.undeclared", {}, info)
    finally:
        del METHODS["test.undeclared"]


def _identity(role: str, cluster: str = "c1", serial: str = "ab") -> CertificateIdentity:
    return CertificateIdentity("n1", cluster, role, NOW, NOW, serial)


def test_the_one_check() -> None:
    no_store = StoreView("c1", lambda fresh: None)
    assert authorize(ADMIN, Caller("unix", False, None), no_store) is None
    assert authorize(ADMIN, Caller("tcp", False, None), no_store) is None  # --insecure on loopback only
    for caller in (Caller("tcp", True, None), Caller("tcp", True, _identity(MANAGER_ROLE)),
                   Caller("tcp", True, _identity(CLIENT_ROLE))):  # no store: no revocation list to check
        with pytest.raises(PermissionDenied) as refused:
            authorize(ADMIN, caller, no_store)
        assert str(refused.value).startswith("permission denied: ")
    with pytest.raises(PermissionDenied):
        authorize(frozenset(), Caller("unix", False, None), no_store)
    assert authorize(frozenset({ANYONE}), Caller("cluster", True, None), no_store) is None
    with pytest.raises(PermissionDenied):
        authorize(frozenset({LOCAL_ADMIN}), Caller("cluster", True, None), no_store)
    with pytest.raises(PermissionDenied):
        authorize(frozenset({REMOTE_ADMIN}), Caller("unix", False, None), no_store)


def test_a_locked_manager_admits_a_client_certificate_only_to_unlock_and_info() -> None:
    locked = StoreView("c1", lambda fresh: None, locked=True)
    client = Caller("tcp", True, _identity(CLIENT_ROLE))
    assert authorize(ADMIN_WHILE_LOCKED, client, locked) is not None
    with pytest.raises(PermissionDenied):
        authorize(ADMIN, client, locked)  # everything else needs the revocation list
    for caller in (Caller("tcp", True, _identity(MANAGER_ROLE)), Caller("tcp", True, _identity(CLIENT_ROLE, "c2")),
                   Caller("tcp", True, None)):
        with pytest.raises(PermissionDenied):
            authorize(ADMIN_WHILE_LOCKED, caller, locked)
    with pytest.raises(PermissionDenied):  # an inactive or worker node has no such exception
        authorize(ADMIN_WHILE_LOCKED, client, StoreView("c1", lambda fresh: None))


def test_every_https_route_names_a_declared_control_method() -> None:
    from raftstore.api._rest import ALTERNATES, ROUTES

    assert ROUTES
    for route in ROUTES:
        assert route.method in ALLOWED, (route.verb, route.pattern, route.method)
    for name, alternate in ALTERNATES.items():
        assert ALLOWED[alternate] == ALLOWED[name], (name, alternate)
    # Only what a locked manager may serve anyway is reachable there over HTTP without the store.
    assert sorted({r.method for r in ROUTES if ALLOWED[r.method] == ADMIN_WHILE_LOCKED}) == ["info", "unlock"]


def test_every_https_route_is_refused_to_a_node_certificate_and_an_undeclared_route_to_all(tmp_path: Path) -> None:
    """Each route runs the daemon's own control handler, so the declaration is checked before the method."""
    from raftstore.api import _rest
    from raftstore.api._serve import build_daemon
    from raftstore.net import HttpRequest

    daemon = build_daemon(tmp_path / "d")
    api = _rest.RestApi(daemon._handle)
    node = {"transport": "tcp", "tls": True, "peer": _identity(MANAGER_ROLE), "address": "127.0.0.1"}
    for route in _rest.ROUTES:
        path = route.pattern.replace("(.+)", "k").replace("/([^/]+)", "/x").replace("/?", "")
        response = api(HttpRequest(route.verb, path, {}, {}, b""), node)
        assert response.status == 403, (route.verb, path, response.body)

    @method("test.undeclared_route")
    def undeclared(daemon, params):  # pragma: no cover - must never run
        raise AssertionError("an undeclared method ran")

    routes = _rest._COMPILED
    try:
        route = _rest.Route("GET", "/v1/undeclared", "test.undeclared_route", lambda request, name: {})
        _rest._COMPILED = [*routes, (route, __import__("re").compile(route.pattern))]
        for info in ({"transport": "unix"}, {"transport": "tcp", "tls": False}, node):
            response = api(HttpRequest("GET", "/v1/undeclared", {}, {}, b""), info)
            assert response.status == 403, response.body
    finally:
        _rest._COMPILED = routes
        del METHODS["test.undeclared_route"]
