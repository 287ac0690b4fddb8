"""Durable file writes: what survives a crash is either the old file or the new one.

``atomic_write`` writes a temporary file created with its final mode, fsyncs
it, renames it over the target and fsyncs the directory, so a reader after a
crash sees one whole version. A full or read-only disk becomes one
``StorageError`` line that names the path.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from .keyring import StorageError

__all__ = ["atomic_write", "fsync_directory", "fsync_file", "storage_error"]

_DISK_ERRORS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
}


def storage_error(error: OSError, path: os.PathLike[str] | str, doing: str = "writing") -> StorageError:
    reason = _DISK_ERRORS.get(error.errno or 0, error.strerror or str(error))
    return StorageError(f"{reason} {doing} {path}")


def fsync_directory(path: os.PathLike[str] | str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: os.PathLike[str] | str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: os.PathLike[str] | str, data: bytes, mode: int = 0o600) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_directory(path.parent)
    except OSError as error:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise storage_error(error, path) from None
