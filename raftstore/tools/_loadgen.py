"""A bounded write load: N clients, each writing one value at a time, measured.

Clients run as threads spread over a few processes (so that the load
generator's own GIL does not cap the figure), each with its own connection.
Every loop stops at a deadline and at a count, whichever comes first. The
system under test is reached through a ``Writer`` factory, so that raftstore,
plain pysyncobj and etcd are driven by the same clients.

The result of one measurement is committed writes per second over the whole
run and the latency percentiles of single writes.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Protocol

__all__ = ["Writer", "LoadResult", "run_load", "ControlWriter"]

MAX_SAMPLES_PER_CLIENT = 20_000


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _client_loop(factory: Callable[[], Writer], payload: int, deadline: float, max_ops: int, prefix: str,
                 keys: int, out: list[Any]) -> None:
    latencies: list[float] = []
    errors = 0
    ops = 0
    value = os.urandom(payload)
    writer = factory()
    try:
        while ops < max_ops and time.monotonic() < deadline:
            key = f"{prefix}/{ops % keys}".encode()
            started = time.perf_counter()
            try:
                writer.put(key, value)
            except Exception:  # counted, and the run goes on: a benchmark reports, it does not crash
                errors += 1
                time.sleep(0.01)
                continue
            elapsed = time.perf_counter() - started
            ops += 1
            if len(latencies) < MAX_SAMPLES_PER_CLIENT:
                latencies.append(elapsed)
    finally:
        writer.close()
    out.append((ops, errors, latencies))


def _process_main(factory: Callable[[], Writer], threads: int, payload: int, start_at: float, seconds: float,
                  max_ops: int, tag: str, keys: int, queue: Any) -> None:
    while time.monotonic() < start_at:
        time.sleep(0.001)
    deadline = start_at + seconds
    out: list[Any] = []
    workers = [
        threading.Thread(target=_client_loop, args=(factory, payload, deadline, max_ops, f"{tag}-{i}", keys, out))
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
) -> LoadResult:
    """Run ``clients`` concurrent writers for at most ``seconds`` (processes are forked: any factory works).

    Each client cycles over ``keys_per_client`` keys named ``{key_prefix}c{pid}-{process}-{thread}/{n}``.
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
                  keys_per_client, queue),
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
    ops = sum(o for batch in results for o, _, _ in batch)
    errors = sum(e for batch in results for _, e, _ in batch)
    latencies = sorted(x for batch in results for _, _, lat in batch for x in lat)
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
    )
