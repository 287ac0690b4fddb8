"""The serve function: a daemon wired to this API layer, the one place that builds a ``Daemon``.

The node layer below knows nothing of the API: the daemon takes an
``ApiWiring`` and calls it. This module supplies it: the control methods and
the check of each one's declaration, the Raft channel's declaration, the
cluster service on the cluster port, the metrics endpoint, and the HTTPS API of
the remote control port (``_rest``), which runs each route through the same
control handler and so the same authorization.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Callable

from ..keyring import CertificateIdentity
from ..node import ApiWiring, Daemon, SecretsDir
from ..state import StateMachine
from ._authz import RAFT_CHANNEL, Caller, StoreView, authorize
from ._cluster_service import ClusterService
from ._http import MetricsServer
from ._methods import ALLOWED, METHODS
from ._rest import RestApi

__all__ = ["serve", "build_daemon", "api_wiring"]


def _authorize_control(method: str, info: dict[str, Any], view: StoreView) -> None:
    """A control request passes its method's declaration (an undeclared method admits nobody)."""
    authorize(ALLOWED.get(method, frozenset()), Caller.from_control(info), view)


def _authorize_raft_peer(identity: CertificateIdentity, view: StoreView) -> None:
    """A peer on the Raft channel passes its declaration (a manager on record)."""
    authorize(RAFT_CHANNEL, Caller("raft", True, identity), view)


def _store_view(cluster_id: str | None, state: Callable[[bool], StateMachine | None], locked: bool) -> StoreView:
    return StoreView(cluster_id, state, locked=locked)


def api_wiring() -> ApiWiring:
    """What the daemon calls of this layer."""
    return ApiWiring(
        methods=METHODS,
        authorize_control=_authorize_control,
        authorize_raft_peer=_authorize_raft_peer,
        store_view=_store_view,
        cluster_service=ClusterService,
        metrics_server=MetricsServer,
        http_app=RestApi,
    )


def build_daemon(data_dir: Path, **options: Any) -> Daemon:
    """A daemon for ``data_dir``, wired to this API layer, not yet running (see ``Daemon.run``).

    ``options`` are the Daemon's keyword arguments (addresses, clock, Raft timing, secrets directory).
    """
    return Daemon(data_dir, api=api_wiring(), **options)


def serve(
    data_dir: Path,
    *,
    listen_addr: str | None = None,
    remote_api: tuple[str, ssl.SSLContext | None] | None = None,
    metrics_addr: tuple[str, int] | None = None,
    secrets_dir: SecretsDir | None = None,
    secrets_dir_required: bool = False,
) -> None:
    """Run this node's daemon in the foreground until SIGTERM/SIGINT (``raftstore daemon``).

    Raises:
        RaftstoreError: it cannot start (the data directory is in use, a port is taken, the secrets
            directory the operator named cannot be used).
    """
    build_daemon(
        data_dir,
        listen_addr=listen_addr,
        remote_api=remote_api,
        metrics_addr=metrics_addr,
        secrets_dir=secrets_dir,
        secrets_dir_required=secrets_dir_required,
    ).run()
