"""The wall clock, read only by the daemon and the CLI (everything below takes ``now``).

Tests that need time to pass faster than it does (certificate renewal at 50-80%
of a lifetime of at least an hour) start daemons with
``RAFTSTORE_TEST_CLOCK_OFFSET_FILE`` naming a file that holds an offset in
seconds; the clock adds it. Nothing sets it in normal operation, and TLS
certificate checks still use the real time (OpenSSL's own clock).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from typing import Protocol

__all__ = ["Clock", "SystemClock", "OFFSET_FILE_ENV"]

OFFSET_FILE_ENV = "RAFTSTORE_TEST_CLOCK_OFFSET_FILE"


class Clock(Protocol):
    """What reads the time in the node: ``now`` for decisions, ``stamp`` for records."""

    def now(self) -> datetime:
        """The current time, UTC."""

    def stamp(self) -> str:
        """The current time as the store records it (ISO 8601, microseconds, Z)."""


class SystemClock:
    def __init__(self) -> None:
        self._offset_file = os.environ.get(OFFSET_FILE_ENV)
        self._offset = timedelta(0)
        self._offset_mtime = 0.0

    def _current_offset(self) -> timedelta:
        if not self._offset_file:
            return self._offset
        try:
            mtime = os.stat(self._offset_file).st_mtime
            if mtime != self._offset_mtime:
                with open(self._offset_file) as f:
                    self._offset = timedelta(seconds=float(f.read().strip() or 0))
                self._offset_mtime = mtime
        except (OSError, ValueError):
            self._offset = timedelta(0)
        return self._offset

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + self._current_offset()

    def stamp(self) -> str:
        return self.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
