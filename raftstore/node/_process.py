"""What the daemon does to its own process before it holds a key: no core dumps, one daemon per directory.

The daemon will hold the DEK, the KEK, the CA key and the unlock key in
memory, so no core file may carry them; and a second daemon on the same data
directory must stop instead of taking over the control socket.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import resource
import sys
from typing import Callable

from ..keyring import Unavailable
from ..storage import StatePaths

__all__ = ["disable_core_dumps", "lock_data_dir"]

_PR_SET_DUMPABLE = 4  # <linux/prctl.h>


def disable_core_dumps(warn: Callable[[str], None]) -> None:
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


def lock_data_dir(paths: StatePaths) -> int:
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
