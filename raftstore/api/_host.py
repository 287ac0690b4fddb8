"""``Host``: what the control API needs of the daemon that serves it, and nothing more.

The api package sits above ``node`` and never imports ``Daemon``: its
methods, the cluster service, doctor and the HTTP endpoints are typed against
this Protocol, which lists exactly the attributes and methods they use.
``node.Daemon`` satisfies it structurally. A new need of the API shows up here
first, so the daemon's surface as the API sees it stays in one short list.

The parts that live in ``node`` (the worker, the renewer, the clock, the
secrets directory) are small Protocols of their own, so that this module needs
no ``node`` import, not even for typing.

The role transitions ``init``, ``join``, ``force-new-cluster`` and a restore
drive live in ``node`` (its ``_transitions`` module) and take the daemon as
``node``'s own ``NodeHost``; ``as_node_host`` names that hand-over, the one
place the API passes the daemon down rather than using it through this list.
"""

from __future__ import annotations

import ssl
import threading
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from ..keyring import CertificateIdentity
    from ..manager import Manager
    from ..storage import NodeState, StatePaths
    from ..node import NodeHost
    from ._authz import StoreView

__all__ = ["as_node_host", "Host", "HostClock", "HostWorker", "HostRenewer", "HostSecretsDir", "HostMetrics"]


class HostClock(Protocol):
    """The daemon's clock (the only wall clock below the CLI)."""

    def now(self) -> datetime: ...

    def stamp(self) -> str: ...


class HostWorker(Protocol):
    """A worker's agent: its node state, whether it was removed, its last error, and calls to a manager."""

    @property
    def node(self) -> "NodeState": ...

    @property
    def removed(self) -> bool: ...

    @property
    def last_error(self) -> str | None: ...

    def call(self, method: str, params: dict[str, Any], timeout: float = 15.0) -> Any: ...


class HostRenewer(Protocol):
    """Certificate renewal, as ``info`` and ``doctor`` report it."""

    @property
    def last_error(self) -> str | None: ...

    @property
    def rejoin_error(self) -> str | None: ...


class HostSecretsDir(Protocol):
    """Where granted secrets and configs are delivered."""

    @property
    def path(self) -> Path: ...

    @property
    def allow_disk(self) -> bool: ...


class HostMetrics(Protocol):
    """The metrics HTTP server, once it serves."""

    @property
    def address(self) -> str | None: ...


class Host(Protocol):
    """The daemon as the control API, the cluster service, doctor and ``/metrics`` use it."""

    # --------------------------------------------------------------- what it is
    @property
    def mode(self) -> str: ...

    @property
    def failure(self) -> str | None: ...

    @property
    def node(self) -> "NodeState | None": ...

    @property
    def manager(self) -> "Manager | None": ...

    @property
    def worker(self) -> HostWorker | None: ...

    @property
    def paths(self) -> "StatePaths": ...

    @property
    def clock(self) -> HostClock: ...

    @property
    def lock(self) -> threading.RLock: ...

    @property
    def renewer(self) -> HostRenewer: ...

    # --------------------------------------------------------------- what it serves
    @property
    def default_listen_addr(self) -> str | None: ...

    @property
    def remote_api(self) -> tuple[str, ssl.SSLContext | None] | None: ...

    @property
    def metrics(self) -> HostMetrics | None: ...

    @property
    def delivery(self) -> object | None: ...

    @property
    def secrets_dir(self) -> HostSecretsDir | None: ...

    @property
    def secrets_dir_problem(self) -> str | None: ...

    @property
    def heartbeats(self) -> dict[str, float]:
        """When each worker last reported (``time.monotonic()``), on a manager."""
        ...

    # --------------------------------------------------------------- what it does
    def log(self, message: str) -> None: ...

    def require_manager(self) -> "Manager":
        """The running manager, or the error a store request gets in this mode."""
        ...

    def certificate_identity(self) -> "CertificateIdentity | None": ...

    def store_view(self, *, barrier: bool = True) -> "StoreView": ...

    def wait_for_leader(self, timeout: float) -> bool: ...

    def unlock(self, key_text: str) -> None: ...

    def load(self) -> None: ...

    def become_inactive(self) -> None: ...


def as_node_host(host: Host) -> "NodeHost":
    """The daemon behind ``host``, typed as ``node``'s role transitions take it.

    Both Protocols describe the same ``Daemon``: this one what the API reads,
    ``NodeHost`` what a transition drives. The API never builds a host; it
    only passes on the one ``serve`` gave it.
    """
    return cast("NodeHost", host)
