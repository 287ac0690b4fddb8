"""The raftstore daemon: one long-running process per node.

It is the only place below the CLI that reads the wall clock, installs signal
handlers and wires the pieces together. Its mode follows the data directory:

``inactive``  no ``state.json``: serves ``info``, ``init`` and ``join``
``locked``    a manager whose keys need the unlock key: serves ``info``,
              ``unlock`` and ``leave --force``; does not start Raft, holds no key
``manager``   Raft running; serves everything
``worker``    a member without Raft: heartbeats to managers, reads secrets
``failed``    a manager that met damage it will not guess around; ``info``
              says why

SIGTERM and SIGINT shut it down cleanly (Raft stopped, log synced).

Before it touches anything in the data directory the daemon takes an
exclusive lock on it (``raftstore.lock``, held until the process ends), so a
second daemon on the same directory stops instead of taking over the control
socket; and it turns core dumps off, because it will hold the DEK, the KEK,
the CA key and the unlock key in memory (see _process).

The daemon imports nothing of the API layer: ``api/_serve`` builds it with an
``ApiWiring`` (the control methods and their authorization, the Raft
channel's admission, the cluster service, the metrics endpoint). Role changes
are _transitions'; the daemon decides when, under its lock.
"""

from __future__ import annotations

import logging
import os
import signal
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from ..keyring import (
    CertificateIdentity,
    InvalidArgument,
    InvalidUnlockKey,
    LockedError,
    NotInitialized,
    NotManager,
    RaftstoreError,
    Unavailable,
    UnlockKey,
    certificate_identity,
)
from ..manager import Manager
from ..net import ClusterListener, ControlServer, server_context
from ..raft import RaftConfig
from ..storage import BenchmarkSwitches, KeyStore, NodeState, Role, StatePaths, atomic_write, default_data_dir
from ..telemetry import set_log_context
from ._bootstrap import clear_partial
from ._clock import Clock, SystemClock
from ._delivery import Delivery, SecretsDir, assignment_source
from ._host import ClusterServiceHooks, MetricsEndpoint
from ._modes import Mode
from ._process import disable_core_dumps, lock_data_dir
from ._renewal import CertificateRenewer, RenewalHooks, renew_certificate
from ._transitions import (
    ask_for_readmission,
    become_manager,
    become_worker,
    open_manager,
    start_manager,
    start_worker,
    stop_roles,
)
from ._worker import WorkerAgent

__all__ = ["Daemon", "ApiWiring", "ControlMethod", "WRONG_UNLOCK_KEY", "NO_UNLOCK_KEY", "SystemClock", "default_data_dir"]

log = logging.getLogger("raftstore.daemon")

#: A well-formed key that does not open this manager. It says nothing about either key, only where to look:
#: a manager that was down during "unlock-key --rotate" still needs the key that was current then.
WRONG_UNLOCK_KEY = ("invalid unlock key: this manager opens only with the unlock key it last knew; if the key was "
                    "rotated while it was down, unlock it with the key that was current when it went down (it "
                    "learns the new one once unlocked)")
NO_UNLOCK_KEY = "no unlock key was given: pass it on standard input, or run \"raftstore unlock\" in a terminal"

#: How long a manager may hear nothing from a leader before it asks whether Raft forgot it.
CUT_OFF_GRACE = 2.0

#: One control API method: called with the daemon and the request's parameters.
ControlMethod = Callable[["Daemon", dict[str, Any]], Any]


@dataclass(frozen=True)
class ApiWiring:
    """What the API layer hands the daemon (``api/_serve`` builds it), so that the daemon imports nothing of it.

    The authorization views are the API layer's (its ``StoreView``); the
    daemon only says what its store is, through ``store_view``.
    """

    #: The control API's methods by name: the live registry, so a method registered later is found.
    methods: Mapping[str, ControlMethod]
    #: Raises unless the caller (the control server's ``info``) may call the method, given the view.
    authorize_control: Callable[[str, dict[str, Any], Any], None]
    #: Raises unless the peer may use the Raft channel, given the view.
    authorize_raft_peer: Callable[[CertificateIdentity, Any], None]
    #: The view authorization reads: (cluster id, state(fresh), locked).
    store_view: Callable[[str | None, Callable[[bool], Any], bool], Any]
    #: The node-to-manager API on the cluster port, built once per daemon.
    cluster_service: Callable[["Daemon"], ClusterServiceHooks]
    #: The ``--metrics-addr`` endpoint, built when the daemon starts with one.
    metrics_server: Callable[["Daemon"], MetricsEndpoint]
    #: The HTTPS API of the remote control port, given the daemon's control handler (authorization
    #: included) and its log; None serves msgpack alone.
    http_app: Callable[[Callable[[str, dict[str, Any], dict[str, Any]], Any], Callable[[str], None]], Any] | None = None


class Daemon:
    """One node's process: its data directory, its mode and role, the control socket and the maintenance loop."""

    def __init__(
        self,
        data_dir: Path,
        *,
        api: ApiWiring,
        listen_addr: str | None = None,
        clock: Clock | None = None,
        raft_config: RaftConfig = RaftConfig(),
        remote_api: tuple[str, ssl.SSLContext | None] | None = None,
        metrics_addr: tuple[str, int] | None = None,
        secrets_dir: SecretsDir | None = None,
        secrets_dir_required: bool = False,
    ) -> None:
        self.paths = StatePaths(Path(data_dir).absolute())
        self.default_listen_addr = listen_addr
        self.clock: Clock = clock or SystemClock()
        self.raft_config = raft_config
        self.remote_api = remote_api
        self.metrics_addr = metrics_addr
        self.metrics: MetricsEndpoint | None = None
        self.secrets_dir = secrets_dir
        self._secrets_dir_required = secrets_dir_required
        self.delivery: Delivery | None = None
        self.secrets_dir_problem: str | None = None  # why the default directory is not used (doctor says it)
        self.lock = threading.RLock()
        self.mode = Mode.INACTIVE
        self.node: NodeState | None = None
        self.manager: Manager | None = None
        self.worker: WorkerAgent | None = None
        self.listener: ClusterListener | None = None
        self.failure: str | None = None
        self._server_context: ssl.SSLContext | None = None
        self._lock_fd: int | None = None
        self._stopping = threading.Event()
        self.control = ControlServer(
            self._handle, self.log, http=api.http_app(self._handle, self.log) if api.http_app is not None else None
        )
        # Managers remember when workers last reported (node ls STATUS).
        self.heartbeats: dict[str, float] = {}
        self._last_role_check = 0.0
        self._cut_off_since: float | None = None
        self.benchmark = BenchmarkSwitches()
        self.renewer = CertificateRenewer(RenewalHooks(
            identity=self.certificate_identity,
            now=self.clock.now,
            renew=lambda expired: renew_certificate(self, expired),
            log=self.log,
            warn=self.warn,
        ))
        self._api = api
        self.cluster_service = api.cluster_service(self)

    # ----------------------------------------------------------------- logging

    def log(self, message: str) -> None:
        log.info(message)

    def warn(self, message: str) -> None:
        log.warning(message)

    def log_context(self) -> dict[str, Any]:
        """What every log line carries: this node's id and, on a running manager, the Raft term."""
        node, manager = self.node, self.manager
        return {
            "node_id": node.node_id if node is not None else None,
            "term": manager.raft.term if manager is not None else None,
        }

    # ----------------------------------------------------------------- lifecycle

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT (main thread) or ``stop()``."""
        # Threads hand work to each other on every request (control thread ->
        # proposer -> Raft tick thread -> back); the default 5 ms GIL switch
        # interval lets one busy thread hold up the others that long.
        sys.setswitchinterval(0.001)
        self.benchmark = BenchmarkSwitches.from_environment(self.paths.root)
        if self.benchmark.any:
            self.warn(f"BENCHMARK CONTROL: sealing {'OFF' if self.benchmark.no_sealing else 'on'}, "
                      f"fsync {'OFF' if self.benchmark.no_fsync else 'on'}; never use this directory for real data")
        disable_core_dumps(self.warn)
        self.paths.create()
        os.chmod(self.paths.root, 0o700)
        self._lock_fd = lock_data_dir(self.paths)
        set_log_context(self.log_context)
        self._open_secrets_dir()
        if self.metrics_addr is not None:  # first: a port in use stops the daemon before it serves anything
            self.metrics = self._api.metrics_server(self)
            self.log(f"metrics on http://{self.metrics.start(*self.metrics_addr)}/metrics")
        self.control.listen_unix(self.paths.socket)
        if self.remote_api is not None:
            address, context = self.remote_api
            self.control.listen_tcp(address, context)
            if context is None:
                self.warn(f"control API on tcp://{address} in plain text (--insecure): "
                          "every local user can control this node through it")
            else:
                mode = "mutual TLS" if context.verify_mode == ssl.CERT_REQUIRED else "TLS, client certificate optional"
                self.log(f"control API on tcp://{address} ({mode})")
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self._stopping.set())
            signal.signal(signal.SIGINT, lambda *_: self._stopping.set())
        self.load()
        self.log(f"raftstore daemon serving {self.paths.socket} ({self.mode})")
        while not self._stopping.wait(1.0):
            self._maintain()
        self.shutdown()

    def _open_secrets_dir(self) -> None:
        """Deliver granted secrets and configs to files (see _delivery) if the directory can be used.

        A directory the operator named must work (else the daemon stops); the
        default one is skipped with one warning, so that a host without a
        writable tmpfs at /run/raftstore still runs the daemon.
        """
        directory = self.secrets_dir
        if directory is None:
            return
        try:
            directory.open()
        except RaftstoreError as error:
            if self._secrets_dir_required:
                raise
            self.secrets_dir_problem = str(error)
            self.warn(f"secrets and configs are not delivered to files on this node: {error}")
            return
        self.delivery = Delivery(directory, lambda: assignment_source(self), self.warn)
        self.delivery.start()
        self.log(f"secrets and configs granted to this node are delivered to {directory.path}")

    def stop(self) -> None:
        self._stopping.set()

    def shutdown(self) -> None:
        self.log("shutting down")
        if self.delivery is not None:
            self.delivery.stop()
        self.control.stop()
        if self.metrics is not None:
            self.metrics.stop()
        with self.lock:
            stop_roles(self)
        self.log("stopped")

    def load(self) -> None:
        """Decide the mode from the data directory and start what it needs."""
        with self.lock:
            node = NodeState.load(self.paths.state_file)
            if node is None:
                clear_partial(self.paths)
                self.mode = Mode.INACTIVE
                return
            self.node = node
            if node.role == Role.WORKER:
                start_worker(self, node)
                return
            keystore = KeyStore(self.paths, node.cluster_id)
            if keystore.needs_unlock_key():
                self.mode = Mode.LOCKED
                self.log("manager is locked: run \"raftstore unlock\" with the cluster's unlock key")
                return
            keyring, kek = keystore.open_plain()
            open_manager(self, node, keystore, keyring, kek)

    # ----------------------------------------------------------------- hooks of a running role

    def on_manager_fatal(self, message: str) -> None:
        """The running manager stopped for good: ``info`` says why."""
        self.failure = message
        self.mode = Mode.FAILED

    def server_context(self) -> ssl.SSLContext:
        context = self._server_context
        if context is None:
            assert self.manager is not None
            context = self._server_context = server_context(self.manager.tls_identity())
        return context

    def reset_tls(self) -> None:
        """Forget cached TLS contexts after a certificate or root change."""
        self._server_context = None
        if self.manager is not None:
            self.manager.reload_tls_identity()

    def on_root_change(self) -> None:
        """The cluster's root (or a rotation) changed in the store: trust it, renew if asked (tick thread)."""
        manager = self.manager
        if manager is None:
            return
        cluster = manager.state.cluster()
        if cluster is None:
            return
        from ..manager import signing_key_fingerprint, trust_bundle

        spec = cluster["spec"]
        bundle = trust_bundle(spec)
        try:
            current = self.paths.root_ca.read_bytes()
        except FileNotFoundError:
            current = b""
        if bundle != current:
            atomic_write(self.paths.root_ca, bundle, mode=0o644)
            self.reset_tls()
        record = manager.state.find("nodes", manager.node.node_id)
        if spec.get("root_rotation") and record is not None and record["spec"].get("cert_issuer_key") != signing_key_fingerprint(spec):
            self.renewer.request()

    def install_trust_bundle(self, bundle: bytes) -> None:
        """A worker learned the cluster's roots from a manager."""
        try:
            current = self.paths.root_ca.read_bytes()
        except FileNotFoundError:
            current = b""
        if bundle and bundle != current:
            atomic_write(self.paths.root_ca, bundle, mode=0o644)
            self.reset_tls()
            self.log("trusted root CA bundle updated")

    def admit_raft_peer(self, identity: CertificateIdentity) -> str | None:
        """Raft channel admission: the API layer's declaration (a manager on record), then a current member."""
        manager = self.manager
        if manager is None or self.node is None:
            return "this node is not an active manager"
        try:
            self._api.authorize_raft_peer(identity, self.store_view(barrier=False))
        except RaftstoreError as error:
            return str(error)
        if not manager.raft.is_member(identity.node_id):
            return f"node {identity.node_id} is not in the Raft configuration"
        return None

    def store_view(self, *, barrier: bool = True) -> Any:
        """What authorization checks read: this node's store, if it is a running manager (see api's _authz)."""

        def state(fresh: bool) -> Any:
            manager = self.manager
            if manager is None or self.mode != Mode.MANAGER:
                return None
            return manager.read_barrier() if fresh and barrier else manager.state

        node = self.node
        return self._api.store_view(node.cluster_id if node is not None else None, state, self.mode == Mode.LOCKED)

    def _maintain(self) -> None:
        manager = self.manager
        try:
            if self.mode in (Mode.MANAGER, Mode.WORKER):
                self.renewer.tick()
            if manager is not None and self.mode == Mode.MANAGER:
                manager.maintain()
                self.cluster_service.maintain()
                self._reconcile_manager_role(manager)
            elif self.worker is not None and self.mode == Mode.WORKER and self.worker.desired_role == Role.MANAGER:
                become_manager(self)
        except RaftstoreError as error:
            self.log(f"maintenance: {error}")
        except Exception:
            log.exception("maintenance failed")

    def _reconcile_manager_role(self, manager: Manager) -> None:
        """A manager converges to its record (see _transitions).

        Worker on record: it steps down to a worker. Cut off from the leader
        for ``CUT_OFF_GRACE``: our log may have stopped before the change (a
        demoted manager is taken out of Raft first), so it asks another
        manager what the record says, and a manager on record that Raft has
        forgotten asks to be added back.
        """
        record = manager.state.find("nodes", manager.node.node_id)
        desired = record["spec"].get("role") if record is not None else None
        now = time.monotonic()
        status = manager.status()
        cut_off = not status.get("is_leader") and status.get("leader") not in status.get("connected", [])
        if not cut_off:
            self._cut_off_since = None
        elif self._cut_off_since is None:
            self._cut_off_since = now
        if (desired != Role.WORKER and self._cut_off_since is not None and now - self._cut_off_since >= CUT_OFF_GRACE
                and now - self._last_role_check >= CUT_OFF_GRACE):
            self._last_role_check = now
            desired = ask_for_readmission(self, manager) or desired
        if desired == Role.WORKER and not manager.status().get("is_leader"):
            become_worker(self)

    # ----------------------------------------------------------------- control API

    def _handle(self, method: str, params: dict[str, Any], info: dict[str, Any]) -> Any:
        entry = self._api.methods.get(method)
        if entry is None:
            raise InvalidArgument(f"unknown method {method!r}")
        self._api.authorize_control(method, info, self.store_view())
        return entry(self, params)

    def require_manager(self) -> Manager:
        """The running manager, or the error a store request gets in this mode."""
        mode = self.mode
        if mode == Mode.LOCKED:
            raise LockedError()
        if mode == Mode.INACTIVE:
            raise NotInitialized()
        if mode == Mode.WORKER:
            raise NotManager()
        if mode == Mode.FAILED:
            raise Unavailable(f"this manager stopped: {self.failure}")
        assert self.manager is not None
        return self.manager

    # ----------------------------------------------------------------- transitions

    def unlock(self, key_text: str) -> None:
        with self.lock:
            if self.mode != Mode.LOCKED:
                if self.mode == Mode.INACTIVE:
                    raise NotInitialized()
                raise InvalidArgument("this node is not locked")
            assert self.node is not None
            if not key_text.strip():
                raise InvalidUnlockKey(NO_UNLOCK_KEY)
            key = UnlockKey.parse(key_text)
            keystore = KeyStore(self.paths, self.node.cluster_id)
            try:
                keyring, kek = keystore.open_with_unlock_key(key)
            except InvalidUnlockKey:
                raise InvalidUnlockKey(WRONG_UNLOCK_KEY) from None
            open_manager(self, self.node, keystore, keyring, kek)
            self.log("manager unlocked")

    def become_inactive(self) -> None:
        with self.lock:
            stop_roles(self)
            if self.delivery is not None:
                self.delivery.reset()
            try:
                self.paths.state_file.unlink()
            except FileNotFoundError:
                pass
            clear_partial(self.paths)
            self.node = None
            self.mode = Mode.INACTIVE
            self.failure = None
            self.log("left the cluster; this node is inactive")

    def certificate_identity(self) -> CertificateIdentity | None:
        try:
            return certificate_identity(self.paths.node_cert.read_bytes())
        except (OSError, RaftstoreError):
            return None

    def wait_for_leader(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            manager = self.manager
            if manager is not None and manager.status().get("leader"):
                return True
            time.sleep(0.05)
        return False

