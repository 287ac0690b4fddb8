"""Timed scenarios: leader failover, and unlock plus catch-up of a large store."""

from __future__ import annotations

import math
import time
from typing import Any

from raftstore.net._control import ControlClient
from raftstore.tools._loadgen import run_load
from raftstore.tools._local_cluster import wait_until

__all__ = ["failover_seconds", "fill", "unlock_and_catch_up_seconds"]


def failover_seconds(peer: Any, timeout: float = 30.0) -> float:
    """SIGKILL the leader; seconds until a write through a survivor commits. The leader is restarted after."""
    leader = peer.leader()
    survivor = next(m for m in peer.members if m is not leader)
    factory = peer.writer_factory(survivor)
    writer = factory()
    writer.put(b"failover/warm", b"x")
    started = time.monotonic()
    peer.kill(leader)
    try:
        while time.monotonic() - started < timeout:
            try:
                writer.put(b"failover/probe", b"x")
                return time.monotonic() - started
            except Exception:
                writer.close()
                time.sleep(0.005)
                writer = factory()
        raise TimeoutError(f"{peer.name}: no write committed within {timeout}s of killing the leader")
    finally:
        writer.close()
        peer.restart(leader)
        wait_until(lambda: peer.leader() is not None, timeout=30, what="a leader after restart")


def fill(peer: Any, entries: int, payload: int = 100) -> str:
    """Write ``entries`` values (64 clients) and return the key of one of the last ones."""
    leader = peer.leader()
    clients = 64
    run_load(peer.writer_factory(leader), clients=clients, payload=payload, seconds=600,
             max_ops_per_client=math.ceil(entries / clients))
    with ControlClient(leader.host) as client:
        client.call("kv.put", {"key": "fill/last", "value": b"done"})
    return "fill/last"


def unlock_and_catch_up_seconds(peer: Any, missed: int = 500) -> float:
    """A manager that holds the store restarts locked and misses ``missed`` writes;
    seconds from ``unlock`` until it serves a linearizable read of the latest write."""
    leader = peer.leader()
    follower = next(m for m in peer.members if m is not leader)
    follower.stop()
    with ControlClient(leader.host) as client:
        for i in range(missed):
            client.call("kv.put", {"key": f"missed/{i % 100}", "value": b"y" * 100})
        client.call("kv.put", {"key": "missed/last", "value": str(time.time()).encode()})
        expected = client.call("kv.get", {"key": "missed/last"})["value"]
    follower.start()
    assert follower.info()["locked"] is True
    started = time.monotonic()
    with ControlClient(follower.host, timeout=60) as client:
        client.call("unlock", {"key": peer.unlock_key})
        while time.monotonic() - started < 120:
            try:
                if client.call("kv.get", {"key": "missed/last"})["value"] == expected:
                    return time.monotonic() - started
            except Exception:
                time.sleep(0.01)
    raise TimeoutError("the unlocked manager did not catch up within 120 s")
