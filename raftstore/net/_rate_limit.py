"""Token buckets for the unauthenticated ``join`` on the cluster port.

A join is the one request anyone may make that does work (a token check, and
for a right token a barrier and a certificate). Each source address has a
small bucket, and all addresses share a larger one, so that neither one
prober nor many can make a manager busy. A wrong token costs more than a
right one: a legitimate node retries a few times, a guesser runs dry at once.
Time is a parameter (``now``, monotonic seconds): the caller reads the clock.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from ..keyring import RateLimited

__all__ = ["TokenBucket", "JoinLimiter"]


@dataclass
class TokenBucket:
    capacity: float
    refill_per_second: float
    tokens: float
    updated: float

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.updated) * self.refill_per_second)
        self.updated = now

    def take(self, cost: float, now: float) -> float:
        """Take ``cost`` tokens and return 0, or take none and return the seconds until there are enough."""
        self._refill(now)
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.refill_per_second

    def charge(self, cost: float, now: float) -> None:
        """Take up to ``cost`` more (a penalty): the bucket may run empty but not below."""
        self._refill(now)
        self.tokens = max(0.0, self.tokens - cost)

    def full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.capacity


class JoinLimiter:
    """Per-address and global buckets for joins: ``admit`` before the token check, ``penalize`` after a wrong one."""

    #: A source address: a burst of 10 joins, then one every 2 s; a wrong token costs 5 in all.
    PER_ADDRESS = (10.0, 0.5)
    #: Every address together: a burst of 60, then 5 a second.
    GLOBAL = (60.0, 5.0)
    WRONG_TOKEN_COST = 4.0
    #: Addresses remembered at once; full buckets are forgotten first.
    MAX_ADDRESSES = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._global: TokenBucket | None = None
        self._buckets: dict[str, TokenBucket] = {}

    def _bucket(self, address: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) >= self.MAX_ADDRESSES:
                self._forget(now)
            bucket = self._buckets[address] = TokenBucket(*self.PER_ADDRESS, self.PER_ADDRESS[0], now)
        return bucket

    def _forget(self, now: float) -> None:
        full = [a for a, b in self._buckets.items() if b.full(now)]
        for address in full or list(self._buckets)[: self.MAX_ADDRESSES // 4]:
            del self._buckets[address]

    def admit(self, address: str | None, now: float) -> None:
        """Take one join's worth from this address's bucket and the global one.

        Raises:
            RateLimited: either bucket is empty (nothing taken from the other).
        """
        key = address or "unknown"
        with self._lock:
            if self._global is None:
                self._global = TokenBucket(*self.GLOBAL, self.GLOBAL[0], now)
            local = self._bucket(key, now)
            wait = local.take(1.0, now)
            if wait:
                raise RateLimited(f"too many join attempts from {key}; try again in {math.ceil(wait)}s")
            wait = self._global.take(1.0, now)
            if wait:
                local.tokens += 1.0  # not this address's fault
                raise RateLimited(f"too many join attempts; try again in {math.ceil(wait)}s")

    def penalize(self, address: str | None, now: float) -> None:
        """A wrong token: it costs this address more."""
        with self._lock:
            self._bucket(address or "unknown", now).charge(self.WRONG_TOKEN_COST, now)
