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
the CA key and the unlock key in memory.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import resource
import signal
import socket
import sys
import ssl
import threading
import time
from pathlib import Path
from typing import Any, Callable

from ..api._authz import RAFT_CHANNEL, Caller, StoreView, authorize
from ..storage._benchmark_switches import BenchmarkSwitches
from ._bootstrap import clear_partial
from ..storage._fsutil import atomic_write
from ._clock import SystemClock
from ..net._cluster_listener import ClusterListener
from ..net._control import ControlServer
from ._delivery import Delivery, SecretsDir
from ..storage._keystore import KeyStore
from ..telemetry._logging import set_log_context
from ..manager._manager import Manager
from ..api._http import MetricsServer
from ..storage._node_state import WORKER, NodeState, StatePaths
from ..storage._paths import default_data_dir
from ..raft._pysyncobj_adapter import RaftConfig
from ..net._tls import server_context
from ._worker import WorkerAgent
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

__all__ = ["Daemon", "SystemClock", "default_data_dir"]

log = logging.getLogger("raftstore.daemon")

INACTIVE, LOCKED, MANAGER_MODE, WORKER_MODE, FAILED = "inactive", "locked", "manager", "worker", "failed"

#: A well-formed key that does not open this manager. It says nothing about either key, only where to look:
#: a manager that was down during "unlock-key --rotate" still needs the key that was current then.
WRONG_UNLOCK_KEY = ("invalid unlock key: this manager opens only with the unlock key it last knew; if the key was "
                    "rotated while it was down, unlock it with the key that was current when it went down (it "
                    "learns the new one once unlocked)")
NO_UNLOCK_KEY = "no unlock key was given: pass it on standard input, or run \"raftstore unlock\" in a terminal"

_PR_SET_DUMPABLE = 4  # <linux/prctl.h>
#: How long a manager may hear nothing from a leader before it asks whether Raft forgot it.
CUT_OFF_GRACE = 2.0


def _disable_core_dumps(warn: Callable[[str], None]) -> None:
    """No core file may carry this process's keys: RLIMIT_CORE 0 (soft and hard) and, on Linux, not dumpable.

    Not dumpable also makes /proc/PID's files owned by root and keeps other
    processes of the same user from ptrace-attaching; the process itself still
    reads its own /proc/self. Where a sandbox forbids either call (systemd's
    SystemCallFilter), the unit's LimitCORE=0 does the same; a warning says so.
    """
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (OSError, ValueError) as error:
        if resource.getrlimit(resource.RLIMIT_CORE)[0] != 0:
            warn(f"cannot turn core dumps off (RLIMIT_CORE): {error}")
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            warn(f"cannot mark the process not dumpable: {os.strerror(ctypes.get_errno())}")


def _lock_data_dir(paths: StatePaths) -> int:
    """Take the data directory's exclusive lock for this process's life; the descriptor is never closed.

    Raises:
        Unavailable: another process (a second daemon) holds it.
    """
    fd = os.open(paths.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip()
        os.close(fd)
        raise Unavailable(
            f"the data directory {paths.root} is in use by another raftstore daemon"
            + (f" (pid {holder})" if holder.isdigit() else "")
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


class Daemon:
    def __init__(
        self,
        data_dir: Path,
        *,
        listen_addr: str | None = None,
        clock: SystemClock | None = None,
        raft_config: RaftConfig = RaftConfig(),
        remote_api: tuple[str, ssl.SSLContext | None] | None = None,
        metrics_addr: tuple[str, int] | None = None,
        secrets_dir: SecretsDir | None = None,
        secrets_dir_required: bool = False,
    ) -> None:
        self.paths = StatePaths(Path(data_dir).absolute())
        self.default_listen_addr = listen_addr
        self.clock = clock or SystemClock()
        self.raft_config = raft_config
        self.remote_api = remote_api
        self.metrics_addr = metrics_addr
        self.metrics: MetricsServer | None = None
        self.secrets_dir = secrets_dir
        self._secrets_dir_required = secrets_dir_required
        self.delivery: Delivery | None = None
        self.secrets_dir_problem: str | None = None  # why the default directory is not used (doctor says it)
        self.lock = threading.RLock()
        self.mode = INACTIVE
        self.node: NodeState | None = None
        self.manager: Manager | None = None
        self.worker: WorkerAgent | None = None
        self.listener: ClusterListener | None = None
        self.failure: str | None = None
        self._server_context: ssl.SSLContext | None = None
        self._lock_fd: int | None = None
        self._stopping = threading.Event()
        self.control = ControlServer(self._handle, self.log)
        # Managers remember when workers last reported (node ls STATUS).
        self.heartbeats: dict[str, float] = {}
        self._last_role_check = 0.0
        self._cut_off_since: float | None = None
        self.benchmark = BenchmarkSwitches()
        from ._renewal import CertificateRenewer

        self.renewer = CertificateRenewer(self)
        from ..api._methods import ALLOWED, METHODS  # late import: methods use the daemon's API

        self._methods = METHODS
        self._allowed = ALLOWED
        from ..api._cluster_service import ClusterService

        self.cluster_service = ClusterService(self)

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
        _disable_core_dumps(self.warn)
        self.paths.create()
        os.chmod(self.paths.root, 0o700)
        self._lock_fd = _lock_data_dir(self.paths)
        set_log_context(self.log_context)
        self._open_secrets_dir()
        if self.metrics_addr is not None:  # first: a port in use stops the daemon before it serves anything
            self.metrics = MetricsServer(self)
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
        self.delivery = Delivery(self, directory)
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
            self._stop_roles()
        self.log("stopped")

    def load(self) -> None:
        """Decide the mode from the data directory and start what it needs."""
        with self.lock:
            node = NodeState.load(self.paths.state_file)
            if node is None:
                clear_partial(self.paths)
                self.mode = INACTIVE
                return
            self.node = node
            if node.role == WORKER:
                self._start_worker(node)
                return
            keystore = KeyStore(self.paths, node.cluster_id)
            if keystore.needs_unlock_key():
                self.mode = LOCKED
                self.log("manager is locked: run \"raftstore unlock\" with the cluster's unlock key")
                return
            keyring, kek = keystore.open_plain()
            self._open_manager(node, keystore, keyring, kek)

    def _open_manager(self, node: NodeState, keystore: KeyStore, keyring: Any, kek: Any) -> None:
        """Start the manager whose keys are open; first finish a restore from a backup if one is pending."""
        from ..manager._backup import PENDING_RESTORE, complete_restore, restored_node_record

        if not (self.paths.root / PENDING_RESTORE).exists():
            self._start_manager(node, keyring, kek, keystore.read_node_key(kek if keystore.needs_unlock_key() else None))
            return
        from ..manager._membership import demote_absent_managers

        node_key = complete_restore(self, node, keyring, kek)
        with self.cluster_service.membership.hold():  # the backup's other managers are another history now
            manager = self._start_manager(node, keyring, kek, node_key)
            if self.wait_for_leader(15.0):
                if manager.read_barrier().find("nodes", node.node_id) is None:
                    manager.propose([restored_node_record(node)])
                demote_absent_managers(manager)

    def _stop_roles(self) -> None:
        if self.listener is not None:
            self.listener.stop()
            self.listener = None
        if self.manager is not None:
            self.manager.stop()
            self.manager = None
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def _start_manager(self, node: NodeState, keyring: Any, kek: Any, node_key_pem: bytes, *, joining: bool = False) -> Manager:
        keystore = KeyStore(self.paths, node.cluster_id)
        manager = Manager(
            paths=self.paths,
            node=node,
            keystore=keystore,
            keyring=keyring,
            kek=kek,
            node_key_pem=node_key_pem,
            clock=self.clock.stamp,
            on_fatal=self._manager_failed,
            raft_config=self.raft_config,
            event_log=self.log,
            hold_elections=joining,
            fetch_keyring=lambda: self._fetch_keyring_from_peers(node),
            on_root_change=self._root_changed,
            benchmark=self.benchmark,
        )
        self.manager = manager
        self.node = node
        self._server_context = None
        listener = ClusterListener(
            node.listen_addr,
            server_context=self.server_context,
            check_raft=self._check_raft_peer,
            adopt_raft=lambda sock, ident: manager.raft.adopt_connection(ident.node_id, sock),
            on_api=self.cluster_service.handle,
            log=self.log,
        )
        try:
            listener.start()
        except RaftstoreError:
            manager.stop()
            self.manager = None
            raise
        self.listener = listener
        manager.start()
        self.mode = MANAGER_MODE
        self.log(f"manager {node.node_id} started (cluster {node.cluster_id}, listening on {node.listen_addr})")
        return manager

    def _start_worker(self, node: NodeState) -> None:
        keystore = KeyStore(self.paths, node.cluster_id)
        self.worker = WorkerAgent(self, node, keystore.read_node_key(None))
        self.worker.start()
        self.node = node
        self.mode = WORKER_MODE
        self.log(f"worker {node.node_id} started (cluster {node.cluster_id})")

    def _fetch_keyring_from_peers(self, node: NodeState) -> Any:
        from ._bootstrap import fetch_keys

        manager = self.manager
        assert manager is not None
        members = [tuple(m) for m in manager.status().get("members", [])] or [tuple(m) for m in node.bootstrap_members]
        last: RaftstoreError = Unavailable("no other manager is known")
        for node_id, address in members:
            if node_id == node.node_id:
                continue
            try:
                return fetch_keys(address, manager.tls_identity(), node.cluster_id, timeout=3.0)[0]
            except RaftstoreError as error:
                last = error
        raise last

    def _manager_failed(self, message: str) -> None:
        self.failure = message
        self.mode = FAILED

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

    def _root_changed(self) -> None:
        """The cluster's root (or a rotation) changed in the store: trust it, renew if asked (tick thread)."""
        manager = self.manager
        if manager is None:
            return
        cluster = manager.state.cluster()
        if cluster is None:
            return
        from ..manager._roots import signing_key_fingerprint, trust_bundle

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

    def _check_raft_peer(self, identity: CertificateIdentity) -> str | None:
        """Raft channel admission: the declaration in _authz (a manager on record), then a current member."""
        manager = self.manager
        if manager is None or self.node is None:
            return "this node is not an active manager"
        try:
            authorize(RAFT_CHANNEL, Caller("raft", True, identity), self.store_view(barrier=False))
        except RaftstoreError as error:
            return str(error)
        if not manager.raft.is_member(identity.node_id):
            return f"node {identity.node_id} is not in the Raft configuration"
        return None

    def store_view(self, *, barrier: bool = True) -> StoreView:
        """What authorization checks read: this node's store, if it is a running manager (see _authz)."""

        def state(fresh: bool) -> Any:
            manager = self.manager
            if manager is None or self.mode != MANAGER_MODE:
                return None
            return manager.read_barrier() if fresh and barrier else manager.state

        node = self.node
        return StoreView(node.cluster_id if node is not None else None, state, locked=self.mode == LOCKED)

    def _maintain(self) -> None:
        manager = self.manager
        try:
            if self.mode in (MANAGER_MODE, WORKER_MODE):
                self.renewer.tick()
            if manager is not None and self.mode == MANAGER_MODE:
                manager.maintain()
                self.cluster_service.maintain()
                self._reconcile_manager_role(manager)
            elif self.worker is not None and self.mode == WORKER_MODE and self.worker.desired_role == "manager":
                from ._roles import become_manager

                become_manager(self)
        except RaftstoreError as error:
            self.log(f"maintenance: {error}")
        except Exception:
            log.exception("maintenance failed")

    def _reconcile_manager_role(self, manager: Manager) -> None:
        """A manager converges to its record (see _roles).

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
        if (desired != "worker" and self._cut_off_since is not None and now - self._cut_off_since >= CUT_OFF_GRACE
                and now - self._last_role_check >= CUT_OFF_GRACE):
            self._last_role_check = now
            from ._roles import ask_for_readmission

            desired = ask_for_readmission(self, manager) or desired
        if desired == "worker" and not manager.status().get("is_leader"):
            from ._roles import become_worker

            become_worker(self)

    # ----------------------------------------------------------------- control API

    def _handle(self, method: str, params: dict[str, Any], info: dict[str, Any]) -> Any:
        entry = self._methods.get(method)
        if entry is None:
            raise InvalidArgument(f"unknown method {method!r}")
        authorize(self._allowed.get(method, frozenset()), Caller.from_control(info), self.store_view())
        return entry(self, params)

    def require_manager(self) -> Manager:
        """The running manager, or the error a store request gets in this mode."""
        mode = self.mode
        if mode == LOCKED:
            raise LockedError()
        if mode == INACTIVE:
            raise NotInitialized()
        if mode == WORKER_MODE:
            raise NotManager()
        if mode == FAILED:
            raise Unavailable(f"this manager stopped: {self.failure}")
        assert self.manager is not None
        return self.manager

    # ----------------------------------------------------------------- transitions

    def unlock(self, key_text: str) -> None:
        with self.lock:
            if self.mode != LOCKED:
                if self.mode == INACTIVE:
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
            self._open_manager(self.node, keystore, keyring, kek)
            self.log("manager unlocked")

    def become_inactive(self) -> None:
        with self.lock:
            self._stop_roles()
            if self.delivery is not None:
                self.delivery.reset()
            try:
                self.paths.state_file.unlink()
            except FileNotFoundError:
                pass
            clear_partial(self.paths)
            self.node = None
            self.mode = INACTIVE
            self.failure = None
            self.log("left the cluster; this node is inactive")

    def certificate_identity(self) -> CertificateIdentity | None:
        try:
            return certificate_identity(self.paths.node_cert.read_bytes())
        except (OSError, RaftstoreError):
            return None

    def hostname(self) -> str:
        return socket.gethostname()

    def wait_for_leader(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            manager = self.manager
            if manager is not None and manager.status().get("leader"):
                return True
            time.sleep(0.05)
        return False


__all__ += ["INACTIVE", "LOCKED", "MANAGER_MODE", "WORKER_MODE", "FAILED", "Callable"]
