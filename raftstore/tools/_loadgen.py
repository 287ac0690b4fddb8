"""A bounded write load: N clients, each writing one value at a time, measured.

Clients run as threads spread over a few processes (so that the load
generator's own GIL does not cap the figure), each with its own connection.
Every loop stops at a deadline and at a count, whichever comes first. The
system under test is reached through a ``Writer`` factory, so that raftstore,
plain pysyncobj and etcd are driven by the same clients.

The result of one measurement is committed writes per second over the whole
run and the latency percentiles of single writes. A long load (the scale
benchmark's fill) can be watched and stopped while it runs, through a
``LoadProgress`` shared with its client processes.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Protocol

__all__ = ["Writer", "LoadResult", "LoadProgress", "run_load", "ControlWriter"]

MAX_SAMPLES_PER_CLIENT = 20_000
#: The first few failures' messages are kept (per client), so that a report can say what failed.
MAX_ERROR_SAMPLES = 3


class Writer(Protocol):
    def put(self, key: bytes, value: bytes) -> None: ...

    def close(self) -> None: ...


class ControlWriter:
    """Writes through raftstore's control API (the public client API)."""

    def __init__(self, host: str, tls: Any = None) -> None:
        from ..net import ControlClient

        self._client = ControlClient(host, tls=tls, timeout=30)

    def put(self, key: bytes, value: bytes) -> None:
        self._client.call("kv.put", {"key": key.decode(), "value": value})

    def close(self) -> None:
        self._client.close()


@dataclass
class LoadResult:
    clients: int
    payload: int
    ops: int
    errors: int
    seconds: float
    throughput: float
    p50_ms: float
    p99_ms: float
    error_samples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LoadProgress:
    """Writes and failures so far, counted across a run's client processes, and a switch that stops them.

    Create it before ``run_load`` (the client processes are forked and share
    it); read it and ``stop()`` from another thread while the run goes on.
    """

    def __init__(self) -> None:
        context = multiprocessing.get_context("fork")
        self._writes = context.Value("q", 0)
        self._errors = context.Value("q", 0)
        self._stop = context.Event()

    @property
    def writes(self) -> int:
        return int(self._writes.value)

    @property
    def errors(self) -> int:
        return int(self._errors.value)

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return bool(self._stop.is_set())

    def _wrote(self) -> None:
        with self._writes.get_lock():
            self._writes.value += 1

    def _failed(self) -> None:
        with self._errors.get_lock():
            self._errors.value += 1


def _client_loop(factory: Callable[[], Writer], payload: int, deadline: float, max_ops: int, prefix: str,
                 keys: int, out: list[Any], progress: LoadProgress | None = None) -> None:
    latencies: list[float] = []
    samples: list[str] = []
    errors = 0
    ops = 0
    value = os.urandom(payload)
    writer = factory()
    try:
        while ops < max_ops and time.monotonic() < deadline and not (progress and progress.stopped):
            key = f"{prefix}/{ops % keys}".encode()
            started = time.perf_counter()
            try:
                writer.put(key, value)
            except Exception as error:  # counted, and the run goes on: a benchmark reports, it does not crash
                errors += 1
                if len(samples) < MAX_ERROR_SAMPLES:
                    samples.append(f"{type(error).__name__}: {error}"[:200])
                if progress is not None:
                    progress._failed()
                time.sleep(0.01)
                continue
            elapsed = time.perf_counter() - started
            ops += 1
            if progress is not None:
                progress._wrote()
            if len(latencies) < MAX_SAMPLES_PER_CLIENT:
                latencies.append(elapsed)
    finally:
        writer.close()
    out.append((ops, errors, latencies, samples))


def _process_main(factory: Callable[[], Writer], threads: int, payload: int, start_at: float, seconds: float,
                  max_ops: int, tag: str, keys: int, queue: Any, progress: LoadProgress | None = None) -> None:
    while time.monotonic() < start_at:
        time.sleep(0.001)
    deadline = start_at + seconds
    out: list[Any] = []
    workers = [
        threading.Thread(target=_client_loop,
                         args=(factory, payload, deadline, max_ops, f"{tag}-{i}", keys, out, progress))
        for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    queue.put((out, time.monotonic()))


def run_load(
    factory: Callable[[], Writer],
    *,
    clients: int,
    payload: int,
    seconds: float,
    max_ops_per_client: int = 1_000_000,
    processes: int | None = None,
    key_prefix: str = "",
    keys_per_client: int = 1000,
    progress: LoadProgress | None = None,
) -> LoadResult:
    """Run ``clients`` concurrent writers for at most ``seconds`` (processes are forked: any factory works).

    Each client cycles over ``keys_per_client`` keys named ``{key_prefix}c{pid}-{process}-{thread}/{n}``.
    With ``progress``, every write and failure is counted there as it happens, and the clients stop early
    once it is stopped.
    """
    processes = processes or min(clients, 4)
    per_process = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    start_at = time.monotonic() + 0.3
    procs = [
        context.Process(
            target=_process_main,
            args=(factory, n, payload, start_at, seconds, max_ops_per_client, f"{key_prefix}c{os.getpid()}-{i}",
                  keys_per_client, queue, progress),
            daemon=True,
        )
        for i, n in enumerate(per_process)
        if n
    ]
    for proc in procs:
        proc.start()
    reports = [queue.get(timeout=seconds + 60) for _ in procs]
    for proc in procs:
        proc.join(10)
    results = [out for out, _ in reports]
    finished = max(ended for _, ended in reports)
    ops = sum(o for batch in results for o, _, _, _ in batch)
    errors = sum(e for batch in results for _, e, _, _ in batch)
    latencies = sorted(x for batch in results for _, _, lat, _ in batch for x in lat)
    samples = [s for batch in results for _, _, _, found in batch for s in found]
    elapsed = max(finished - start_at, 1e-6)
    return LoadResult(
        clients=clients,
        payload=payload,
        ops=ops,
        errors=errors,
        seconds=round(elapsed, 3),
        throughput=ops / elapsed,
        p50_ms=statistics.median(latencies) * 1000 if latencies else float("nan"),
        p99_ms=latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000 if latencies else float("nan"),
        error_samples=list(dict.fromkeys(samples))[:10],
    )
