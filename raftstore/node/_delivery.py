"""Secrets and configs delivered to files on an in-memory filesystem (``raftstore daemon --secrets-dir``).

As Swarm mounts a task's secrets on a tmpfs under ``/run/secrets``, every
node keeps, in a directory of its own, exactly the secrets granted to it
(one file per secret, named after it, mode 0400) and, under ``configs/``, the
configs granted to it (mode 0444). The directory must be on tmpfs or ramfs,
so that no value ever reaches a disk, unless the operator explicitly accepts
a disk (``--secrets-dir-not-tmpfs``).

The directory's duties and lifecycle:

- **Opening** (daemon start): created if missing (0711: other users may reach
  ``configs/`` but not list the secrets' names); it must belong to this user,
  must not be writable by others, and must be empty or carry the marker file
  ``.raftstore-secrets``, which the daemon locks for its whole life, so two
  daemons never share one directory and an operator's other files are never
  taken for ours. Whatever an earlier run left (it was killed) is removed.
- **Delivery** within about a second of a change: a manager watches its own
  copy of the store; a worker long-polls a manager (``node.assignments`` on
  the cluster port, over its own mTLS identity, authorized as ``secret.read``
  is) and fetches each new value with ``secret.read``/``config.read``. The
  listing carries ids and names only, never data.
- **Writing**: each file is created under a temporary name in the same
  directory, with its final mode, filled, then renamed over the final name:
  a reader sees the whole value or nothing. Values pass through no other file.
- **Removal**: a revoke or ``rm`` deletes the file at the next round; leaving
  the cluster, a removed node, a locked or failed manager and the daemon's
  stop delete them all. A daemon killed with SIGKILL cannot: the next start
  on the same directory removes what it left.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import logging
import os
import stat
import sys
import threading
import time
from pathlib import Path
from secrets import token_hex
from typing import TYPE_CHECKING, Any, Callable, Protocol

from ..keyring import InvalidArgument, PermissionDenied, RaftstoreError, Unavailable
from ..state import validate_name
from ._modes import Mode

if TYPE_CHECKING:
    from ..manager import Manager
    from ._worker import WorkerAgent

__all__ = ["DEFAULT_SECRETS_DIR", "MAX_POLL_WAIT", "MEMORY_FILESYSTEMS", "SecretsDir", "Delivery", "filesystem_type",
           "wait_for_assignments", "assignment_source", "AssignmentSource", "DeliveringNode"]

log = logging.getLogger("raftstore.delivery")

DEFAULT_SECRETS_DIR = Path("/run/raftstore/secrets")
#: The longest a ``node.assignments`` call waits for a change before it answers anyway.
MAX_POLL_WAIT = 10.0
MARKER = ".raftstore-secrets"
CONFIGS_DIR = "configs"
_TEMP_PREFIX = ".tmp-"
_MODES = {"secrets": 0o400, "configs": 0o444}
#: statfs(2) f_type values of filesystems that live in memory only (<linux/magic.h>).
MEMORY_FILESYSTEMS = {0x01021994: "tmpfs", 0x858458F6: "ramfs"}
_TABLES = ("secrets", "configs")


def filesystem_type(target: Path | int) -> int | None:
    """The ``f_type`` statfs(2) (or fstatfs for a descriptor) gives (Linux), or None where it cannot be read."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    buffer = ctypes.create_string_buffer(512)  # struct statfs (120 bytes on 64-bit Linux) starts with f_type
    failed = libc.fstatfs(target, buffer) if isinstance(target, int) else libc.statfs(os.fsencode(target), buffer)
    if failed != 0:
        return None
    return ctypes.c_ulong.from_buffer(buffer).value & 0xFFFFFFFF


def assignments_tag(listing: dict[str, list[dict[str, Any]]]) -> str:
    """A digest of what is granted (table, id, name): it changes exactly when a file must change."""
    items = sorted((table, o["id"], o["name"]) for table in _TABLES for o in listing.get(table, []))
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


class RunningManager(Protocol):
    """A node that may be running a manager (the daemon is one)."""

    def require_manager(self) -> "Manager":
        """The running manager, or the error a store request gets in this mode."""


class DeliveringNode(RunningManager, Protocol):
    """What picking the source of assignments reads of the node (the daemon is one)."""

    @property
    def mode(self) -> Mode: ...

    @property
    def manager(self) -> "Manager | None": ...

    @property
    def worker(self) -> "WorkerAgent | None": ...


def wait_for_assignments(node: RunningManager, node_id: str, since: str | None, wait: float) -> dict[str, Any]:
    """On a manager: what is granted to ``node_id`` (ids and names), as soon as its tag differs from ``since``,
    or after ``wait`` seconds whatever it is."""
    from ..state import granted_objects

    deadline = time.monotonic() + wait
    while True:
        manager = node.require_manager()
        listing = granted_objects(manager.state, node_id)
        tag = assignments_tag(listing)
        remaining = deadline - time.monotonic()
        if tag != since or remaining <= 0:
            return {"tag": tag, **listing}
        with manager.applied:  # notified on every applied entry; the timeout bounds a missed notification
            manager.applied.wait(min(remaining, 0.5))


class SecretsDir:
    """The directory: checked and locked once, then used only through descriptors opened at the check.

    Every file operation goes through a descriptor of the directory that was
    checked (``openat`` and friends, never a path), so a directory renamed or
    replaced by a symbolic link afterwards cannot redirect a secret elsewhere.
    """

    def __init__(self, path: Path, *, allow_disk: bool = False) -> None:
        self.path = Path(path).absolute()
        self.allow_disk = allow_disk
        self._fds: dict[str, int] = {}  # table -> descriptor of its directory
        self._lock_fd: int | None = None
        self._delivered: dict[tuple[str, str], str] = {}  # (table, file name) -> object id
        self._warned: set[str] = set()

    def open(self) -> None:
        """Check, lock and empty the directory.

        Raises:
            InvalidArgument: it cannot be used (not tmpfs, another owner, writable by others, someone else's files).
            Unavailable: another raftstore daemon delivers into it.
        """
        self._check_filesystem(self._existing_ancestor(self.path))  # before creating anything on a disk
        try:
            self.path.mkdir(mode=0o711, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as error:
            raise InvalidArgument(f"cannot use the secrets directory {self.path}: {error.strerror}") from None
        try:
            self._check(fd)
            self._lock(fd)
            self._fds = {"secrets": fd, "configs": self._configs_dir(fd)}
        except BaseException:
            os.close(fd)
            raise
        self.clear()

    def _check(self, fd: int) -> None:
        path, info = self.path, os.fstat(fd)
        if info.st_uid != os.geteuid():
            raise InvalidArgument(f"the secrets directory {path} belongs to another user (uid {info.st_uid})")
        if info.st_mode & 0o022:
            raise InvalidArgument(f"the secrets directory {path} is writable by other users (mode "
                                  f"{stat.S_IMODE(info.st_mode):04o}): they could replace a secret")
        self._check_filesystem(fd)
        names = set(os.listdir(fd))
        if names and MARKER not in names:
            raise InvalidArgument(f"the secrets directory {path} is not empty and not raftstore's: "
                                  "give the daemon a directory of its own")

    def _lock(self, fd: int) -> None:
        """Hold the marker's lock for the process's life: one daemon per directory."""
        lock_fd = os.open(MARKER, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=fd)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise Unavailable(f"the secrets directory {self.path} is in use by another raftstore daemon") from None
        self._lock_fd = lock_fd

    @staticmethod
    def _configs_dir(fd: int) -> int:
        try:
            info = os.stat(CONFIGS_DIR, dir_fd=fd, follow_symlinks=False)
            if not stat.S_ISDIR(info.st_mode):
                os.unlink(CONFIGS_DIR, dir_fd=fd)
                raise FileNotFoundError
        except FileNotFoundError:
            os.mkdir(CONFIGS_DIR, 0o755, dir_fd=fd)
        return os.open(CONFIGS_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)

    def _check_filesystem(self, target: Path | int) -> None:
        if filesystem_type(target) not in MEMORY_FILESYSTEMS and not self.allow_disk:
            raise InvalidArgument(f"the secrets directory {self.path} is not on tmpfs, so secrets would reach a "
                                  "disk: mount a tmpfs there (or, unsafe, pass --secrets-dir-not-tmpfs)")

    @staticmethod
    def _existing_ancestor(path: Path) -> Path:
        while not path.exists() and path != path.parent:
            path = path.parent
        return path

    def _files(self, table: str) -> set[str]:
        """Names in a table's directory that are ours to manage (everything but the marker and configs/)."""
        fd = self._fds.get(table)
        if fd is None:
            return set()
        names = set(os.listdir(fd))
        return names - {MARKER, CONFIGS_DIR} if table == "secrets" else names

    def is_empty(self) -> bool:
        return not self._files("secrets") and not self._files("configs")

    def clear(self) -> None:
        """Delete every delivered file (and any temporary one)."""
        for table in _TABLES:
            for name in self._files(table):
                self._unlink(table, name)
        self._delivered.clear()

    def _unlink(self, table: str, name: str) -> None:
        try:
            os.unlink(name, dir_fd=self._fds[table])
        except FileNotFoundError:
            pass
        except (IsADirectoryError, PermissionError):  # EISDIR, or EPERM for a directory on Linux
            log.warning("secrets directory: %s is a directory, not ours; left alone", name)
        self._delivered.pop((table, name), None)

    def _present(self, table: str, name: str) -> bool:
        try:
            return stat.S_ISREG(os.stat(name, dir_fd=self._fds[table], follow_symlinks=False).st_mode)
        except FileNotFoundError:
            return False

    def reconcile(self, listing: dict[str, Any], fetch: Callable[[str, str], bytes],
                  warn: Callable[[str], None]) -> None:
        """Make the files exactly what ``listing`` grants; ``fetch(table, id)`` gives a value not yet written."""
        for table in _TABLES:
            wanted: dict[str, str] = {}
            for obj in listing.get(table) or []:
                name, object_id = validate_name(obj.get("name")), str(obj.get("id"))
                if table == "secrets" and name == CONFIGS_DIR:
                    if object_id not in self._warned:
                        self._warned.add(object_id)
                        warn(f"secret {name!r} is not delivered to a file: configs/ holds the configs "
                             "(read it with \"raftstore secret read\")")
                    continue
                wanted[name] = object_id
            for name in self._files(table) - set(wanted):
                self._unlink(table, name)
            for name, object_id in wanted.items():
                if self._delivered.get((table, name)) == object_id and self._present(table, name):
                    continue
                try:
                    data = fetch(table, object_id)
                except PermissionDenied:  # revoked since the listing: the next round removes it
                    continue
                self._write(table, name, data)
                self._delivered[(table, name)] = object_id

    def _write(self, table: str, name: str, data: bytes) -> None:
        """Atomically: a temporary file in the same directory, with its final mode before any byte, then rename."""
        dir_fd, mode = self._fds[table], _MODES[table]
        temporary = f"{_TEMP_PREFIX}{token_hex(8)}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                     dir_fd=dir_fd)
        try:
            try:
                os.fchmod(fd, mode)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            os.rename(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            try:
                os.unlink(temporary, dir_fd=dir_fd)
            except FileNotFoundError:
                pass
            raise


class AssignmentSource(Protocol):
    """Where the listing of what is granted to this node, and each value, come from."""

    def poll(self, since: str | None, wait: float) -> dict[str, Any]:
        """The listing, once its tag differs from ``since`` or after ``wait`` seconds."""

    def fetch(self, table: str, object_id: str) -> bytes:
        """One granted value."""


class _ManagerSource:
    """A manager delivers from its own copy of the store."""

    def __init__(self, node: RunningManager, node_id: str) -> None:
        self.node, self.node_id = node, node_id

    def poll(self, since: str | None, wait: float) -> dict[str, Any]:
        return wait_for_assignments(self.node, self.node_id, since, wait)

    def fetch(self, table: str, object_id: str) -> bytes:
        from ..state import read_granted

        return read_granted(self.node.require_manager().state, table, self.node_id, object_id)


class _WorkerSource:
    """A worker asks a manager, over its own mTLS identity."""

    def __init__(self, node: DeliveringNode) -> None:
        self.node = node

    def _call(self, method: str, params: dict[str, Any], timeout: float) -> Any:
        worker = self.node.worker
        if worker is None:
            raise Unavailable("this node is no longer a worker")
        return worker.call(method, params, timeout=timeout)

    def poll(self, since: str | None, wait: float) -> dict[str, Any]:
        reply = self._call("node.assignments", {"since": since, "wait": wait}, wait + 10.0)
        if not (isinstance(reply, dict) and isinstance(reply.get("tag"), str)
                and all(isinstance(reply.get(t), list) and all(isinstance(o, dict) for o in reply[t]) for t in _TABLES)):
            raise RaftstoreError("a manager answered node.assignments with something else")
        return reply

    def fetch(self, table: str, object_id: str) -> bytes:
        kind = table[:-1]
        data = self._call(f"{kind}.read", {kind: object_id}, 10.0).get("data")
        if not isinstance(data, bytes):
            raise RaftstoreError(f"a manager answered {kind}.read with something else")
        return data


def assignment_source(node: DeliveringNode) -> AssignmentSource | None:
    """Where this node's assignments come from in its current mode; None: nothing may be delivered now."""
    if node.mode == Mode.MANAGER and node.manager is not None:
        return _ManagerSource(node, node.manager.node.node_id)
    worker = node.worker
    if node.mode == Mode.WORKER and worker is not None and not worker.removed:
        return _WorkerSource(node)
    return None


class Delivery:
    """The thread that keeps a ``SecretsDir`` equal to what is granted to this node.

    ``source`` is asked at every round where the assignments come from now
    (``assignment_source``): the node's mode changes under it.
    """

    def __init__(self, directory: SecretsDir, source: Callable[[], AssignmentSource | None],
                 warn: Callable[[str], None]) -> None:
        self._current_source = source
        self._warn = warn
        self.directory = directory
        self._lock = threading.Lock()
        self._generation = 0
        self._tag: str | None = None
        self._stopping = threading.Event()
        self._last_error: str | None = None

    def start(self) -> None:
        threading.Thread(target=self._run, name="secrets-delivery", daemon=True).start()

    def reset(self) -> None:
        """Delete every file now (this node left, or is stopping); a round already under way is discarded."""
        with self._lock:
            self._generation += 1
            self._tag = None
            self.directory.clear()

    def stop(self) -> None:
        self._stopping.set()
        self.reset()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                delivered = self._round()
                self._last_error = None
            except (RaftstoreError, OSError) as error:  # no manager answers; the tmpfs is full
                message = str(error) if isinstance(error, RaftstoreError) else \
                    f"cannot write to {self.directory.path}: {error.strerror}"
                if message != self._last_error:
                    self._warn(f"secrets delivery: {message}")
                self._last_error = message
                delivered = False
            except Exception:
                log.exception("secrets delivery failed")
                delivered = False
            if not delivered:
                self._stopping.wait(1.0)

    def _round(self) -> bool:
        """Wait for a change in what is granted to this node, then make the files match; False: no source now."""
        generation = self._generation
        source = self._current_source()
        if source is None:  # inactive, locked, failed, or a removed worker: nothing may stay
            with self._lock:
                if self._tag is not None or not self.directory.is_empty():
                    self.directory.clear()
                    self._tag = None
            return False
        listing = source.poll(self._tag, MAX_POLL_WAIT)
        with self._lock:
            if generation != self._generation or self._stopping.is_set():
                return True
            self.directory.reconcile(listing, source.fetch, self._warn)
            self._tag = listing["tag"]
        return True
