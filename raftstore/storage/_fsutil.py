"""Durable file writes: what survives a crash is either the old file or the new one.

``atomic_write`` writes a temporary file in the target's directory (created
with its final mode, never wider), fsyncs it, renames it over the target and
fsyncs the directory, so a reader after a crash sees one whole version. A
crash before the rename leaves the old file untouched and, at worst, a
``.<name>.tmp-<random>`` file beside it that no reader ever opens.

Every ``OSError`` from these helpers becomes one ``StorageError`` line that
names the path, e.g. ``no space left on device writing /data/keys/keyring``
(ENOSPC, EDQUOT and EROFS get fixed wording; anything else uses the system's
text). ``write_all``, ``open_append``, ``cut_file`` and
``make_private_dirs`` are building blocks for callers that name the failure
themselves (the raft log): they let ``OSError`` through.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

from ..keyring import StorageError

__all__ = [
    "atomic_write",
    "cut_file",
    "discard_temporary",
    "fsync_directory",
    "fsync_file",
    "make_private_dirs",
    "open_append",
    "storage_error",
    "write_all",
]

_DISK_ERRORS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
}


def storage_error(error: OSError, path: os.PathLike[str] | str, doing: str = "writing") -> StorageError:
    """One operator-facing line for a failed file operation: ``<reason> <doing> <path>``."""
    reason = _DISK_ERRORS.get(error.errno or 0) or error.strerror or str(error) or type(error).__name__
    return StorageError(f"{reason} {doing} {os.fspath(path)}")


def _fsync_path(path: os.PathLike[str] | str, flags: int, doing: str) -> None:
    try:
        fd = os.open(path, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as error:
        raise storage_error(error, path, doing) from None


def fsync_directory(path: os.PathLike[str] | str) -> None:
    """Make the directory's entries (files created, renamed or removed in it) durable.

    Raises:
        StorageError: the directory cannot be opened or synced.
    """
    _fsync_path(path, os.O_RDONLY | os.O_DIRECTORY, "syncing directory")


def fsync_file(path: os.PathLike[str] | str) -> None:
    """Make a file's content durable.

    Raises:
        StorageError: the file cannot be opened or synced.
    """
    _fsync_path(path, os.O_RDONLY, "syncing")


def atomic_write(path: os.PathLike[str] | str, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file, whole.

    The file has exactly ``mode`` (the umask does not apply), from the moment
    it exists.

    Raises:
        StorageError: the disk refused (full, quota, read-only, missing directory, ...);
            the old file is unchanged and no temporary file is left behind.
    """
    path = Path(path)
    tmp = None
    try:
        while True:
            candidate = path.with_name(f".{path.name}.tmp-{secrets.token_hex(6)}")
            try:
                fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
            except FileExistsError:
                continue
            tmp = candidate
            break
        try:
            os.fchmod(fd, mode)  # the umask may have narrowed it; never widened
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        tmp = None
        fsync_directory(path.parent)
    except OSError as error:
        raise storage_error(error, path) from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def discard_temporary(fd: int | None, path: os.PathLike[str] | str) -> None:
    """Close ``fd`` (when open) and unlink the temporary file at ``path`` (when there): a write abandoned."""
    if fd is not None:
        os.close(fd)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd`` (``os.write`` may write fewer)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def open_append(path: os.PathLike[str] | str) -> int:
    """Open an existing file for appending; the caller closes the descriptor."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)


def cut_file(path: os.PathLike[str] | str, size: int, tail: bytes = b"") -> None:
    """Cut ``path`` to ``size`` bytes, write ``tail`` after the cut, and make it durable."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        if tail:
            write_all(fd, tail)
        os.fsync(fd)
    finally:
        os.close(fd)


def make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and missing parents with mode 0700, each entry made durable."""
    if directory.is_dir():
        return
    missing = []
    current = directory
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        os.chmod(path, 0o700)
        fsync_directory(path.parent)
