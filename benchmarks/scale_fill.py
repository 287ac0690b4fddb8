"""One fill of the scale benchmark: concurrent clients write unique keys until the store holds a size, watched.

While the load runs, a watcher thread samples each manager's resident
memory every second, prints a progress line on standard error every few
seconds (data filled, writes/s, failures, elapsed) and stops the load when
no write has committed for ``stuck_seconds``: a stuck cluster ends the fill
with a message that says so, never a hang. The load itself stops at its
deadline too.
"""

from __future__ import annotations

import math
import queue
import sys
import threading
import time
from typing import Any, Callable

from raftstore.tools._loadgen import LoadProgress, run_load

from .scale_report import MB

__all__ = ["fill", "memory_kb"]


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (the most resident since the process started) of ``pid``, in kB."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


class _Watcher(threading.Thread):
    def __init__(self, label: str, pids: dict[str, int], progress: LoadProgress, start_bytes: int, target_bytes: int,
                 value_bytes: int, stuck_seconds: float, every: float, log: Callable[[str], None]) -> None:
        super().__init__(name="scale-watcher", daemon=True)
        self.label, self.pids, self.progress, self.log = label, pids, progress, log
        self.start_bytes, self.target_bytes, self.value_bytes = start_bytes, target_bytes, value_bytes
        self.stuck_seconds, self.every = stuck_seconds, every
        self.peak_kb = {name: 0 for name in pids}
        #: The longest time seen without a new committed write (sampled each second: 0 while writes flow).
        self.longest_pause = 0.0
        self.aborted: str | None = None
        self._done = threading.Event()

    def run(self) -> None:
        began = last_line = last_write = time.monotonic()
        writes_then = writes_seen = 0
        while not self._done.wait(1.0):
            now = time.monotonic()
            for name, pid in self.pids.items():
                self.peak_kb[name] = max(self.peak_kb[name], memory_kb(pid).get("VmRSS", 0))
            writes = self.progress.writes
            if writes != writes_seen:
                writes_seen, last_write = writes, now
            elif self.progress.stopped:
                pass
            elif now - last_write > self.stuck_seconds:
                self.aborted = (f"no write committed for {self.stuck_seconds:.0f} s "
                                f"({self.progress.errors} failed meanwhile): the cluster is stuck")
                self.log(f"  {self.label}: {self.aborted}; stopping the fill")
                self.progress.stop()
            elif writes_seen:  # from the first write on (the clients take a moment to start)
                self.longest_pause = max(self.longest_pause, now - last_write)
            if now - last_line >= self.every:
                filled = self.start_bytes + writes * self.value_bytes
                rate = (writes - writes_then) / (now - last_line)
                self.log(f"  {self.label}: {filled / MB:,.0f} of {self.target_bytes / MB:,.0f} MB, "
                         f"{rate:,.0f} writes/s ({rate * self.value_bytes / MB:.1f} MB/s), "
                         f"{self.progress.errors} failed, {now - began:.0f} s, "
                         f"peak RSS {max(self.peak_kb.values(), default=0) * 1024 / MB:,.0f} MB")
                writes_then, last_line = writes, now

    def stop(self) -> None:
        self._done.set()
        self.join(10)


def fill(system: Any, *, size_bytes: int, already_writes: int, prefix: str, clients: int, value_bytes: int,
         seconds: float, stuck_seconds: float, every: float = 5.0,
         log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)) -> dict[str, Any]:
    """Write unique keys through ``clients`` clients until ``size_bytes`` of values are live, or a stop.

    Returns the writes, failures, seconds and rates of this fill, the peak
    resident memory seen per manager, and why it stopped early, if it did.
    """
    needed = max(0, math.ceil(size_bytes / value_bytes) - already_writes)
    per_client = max(1, math.ceil(needed / clients))
    progress = LoadProgress()
    watcher = _Watcher(f"{system.name} to {size_bytes / MB:,.0f} MB", system.pids(), progress,
                       already_writes * value_bytes, size_bytes, value_bytes, stuck_seconds, every, log)
    watcher.start()
    result: Any = None
    error: str | None = None
    try:
        result = run_load(system.writer_factory(), clients=clients, payload=value_bytes, seconds=seconds,
                          max_ops_per_client=per_client, keys_per_client=per_client, key_prefix=prefix,
                          progress=progress)
    except queue.Empty:
        error = f"the clients did not report within {seconds + 60:.0f} s of the fill's start"
    finally:
        progress.stop()
        watcher.stop()
    if result is None:
        writes, errors, elapsed, samples = progress.writes, progress.errors, seconds, []
    else:
        writes, errors, elapsed, samples = result.ops, result.errors, result.seconds, result.error_samples
    aborted = watcher.aborted or error
    if aborted is None and writes < needed:
        aborted = f"the fill's deadline ({seconds:.0f} s) came after {writes:,} of {needed:,} writes"
    return {
        "writes": writes,
        "errors": errors,
        "seconds": round(elapsed, 3),
        "writes_per_s": writes / elapsed if elapsed else 0.0,
        "mb_per_s": writes * value_bytes / MB / elapsed if elapsed else 0.0,
        "error_samples": samples,
        "aborted": aborted,
        "longest_pause_s": round(watcher.longest_pause, 1),
        "sampled_peak_mb": {name: kb * 1024 / MB for name, kb in watcher.peak_kb.items()},
    }
