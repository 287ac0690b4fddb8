"""What the role transitions need of the process that runs them, as Protocols (a leaf: nothing here runs).

The daemon is the one implementation of ``NodeHost``; the transitions
(_transitions) and the certificate renewal (_renewal) are written against this
Protocol instead of importing the daemon, so that the daemon can import them
and no import goes round in a circle. What the API layer hands the daemon (the
cluster service, the metrics endpoint) is described here too, so that the
daemon imports nothing of ``api/`` or of the metrics server.
"""

from __future__ import annotations

import ssl
import threading
from typing import TYPE_CHECKING, Any, ContextManager, Protocol

from ..keyring import CertificateIdentity

if TYPE_CHECKING:
    from ..manager import Manager
    from ..net import ClusterListener
    from ..raft import RaftConfig
    from ..storage import BenchmarkSwitches
    from ..storage import NodeState, StatePaths
    from ._clock import Clock
    from ._modes import Mode
    from ._worker import WorkerAgent

__all__ = ["NodeHost", "ClusterServiceHooks", "MetricsEndpoint", "RebuildHold", "RenewalRequests"]


class RebuildHold(Protocol):
    """The membership reconciler, as far as a one-manager rebuild is concerned."""

    def hold(self) -> ContextManager[None]:
        """A context in which Raft membership is not repaired (a rebuild is under way)."""


class ClusterServiceHooks(Protocol):
    """The node-to-manager API on the cluster port (api's ClusterService), as the daemon uses it."""

    @property
    def membership(self) -> RebuildHold:
        """The reconciler that keeps Raft membership equal to the node records."""

    def handle(self, identity: CertificateIdentity | None, method: str, params: dict[str, Any],
               address: str | None = None) -> Any:
        """Answer one request that arrived on the cluster port's API channel."""

    def maintain(self) -> None:
        """Housekeeping on a running manager, about once a second."""

    def issue_for(self, node_id: str, csr: bytes, previous: CertificateIdentity | None) -> dict[str, Any]:
        """A certificate for this node's new key, issued by its own manager."""


class MetricsEndpoint(Protocol):
    """The HTTP endpoint for ``/metrics`` and ``/healthz``."""

    def start(self, host: str, port: int) -> str:
        """Serve on HOST:PORT; returns the address actually bound."""

    def stop(self) -> None:
        """Stop serving."""


class RenewalRequests(Protocol):
    """The certificate renewer, as a worker's heartbeat or a CA rotation asks it to renew early."""

    def request(self) -> None:
        """Renew at the next opportunity."""


class NodeHost(Protocol):
    """The node's process: its data directory, its current role and the hooks a role change calls.

    The transitions read and set ``mode``, ``node``, ``manager``, ``worker``
    and ``listener`` under ``lock``; nothing else sets them.
    """

    mode: "Mode"
    node: "NodeState | None"
    manager: "Manager | None"
    worker: "WorkerAgent | None"
    listener: "ClusterListener | None"

    @property
    def paths(self) -> "StatePaths": ...

    @property
    def clock(self) -> "Clock": ...

    @property
    def raft_config(self) -> "RaftConfig": ...

    @property
    def benchmark(self) -> "BenchmarkSwitches": ...

    @property
    def lock(self) -> threading.RLock: ...

    @property
    def cluster_service(self) -> ClusterServiceHooks: ...

    @property
    def renewer(self) -> RenewalRequests: ...

    def log(self, message: str) -> None: ...

    def server_context(self) -> ssl.SSLContext:
        """The running manager's TLS server context (cached until ``reset_tls``)."""

    def reset_tls(self) -> None:
        """Forget cached TLS contexts after a certificate or root change."""

    def admit_raft_peer(self, identity: CertificateIdentity) -> str | None:
        """Why a peer may not use the Raft channel, or None to admit it."""

    def on_manager_fatal(self, message: str) -> None:
        """The running manager stopped for good (damage it will not guess around)."""

    def on_root_change(self) -> None:
        """The cluster's root CA (or a rotation) changed in the store."""

    def install_trust_bundle(self, bundle: bytes) -> None:
        """A worker learned the cluster's roots from a manager."""

    def wait_for_leader(self, timeout: float) -> bool:
        """Whether the running manager heard of a leader within ``timeout`` seconds."""

    def become_inactive(self) -> None:
        """Stop every role and forget the cluster (``leave``)."""

    def certificate_identity(self) -> CertificateIdentity | None:
        """The identity in this node's certificate on disk, if it can be read."""

    def require_manager(self) -> "Manager":
        """The running manager, or the error a store request gets in this mode."""
