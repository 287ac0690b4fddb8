"""The join limiter on its own, with time as a parameter (finding 3's buckets)."""

from __future__ import annotations

import pytest

from raftstore.net._rate_limit import JoinLimiter
from raftstore.keyring import RateLimited


def _admitted(limiter: JoinLimiter, address: str, now: float, wrong: bool = False) -> bool:
    try:
        limiter.admit(address, now)
    except RateLimited:
        return False
    if wrong:
        limiter.penalize(address, now)
    return True


def test_wrong_tokens_run_an_address_dry_and_it_refills() -> None:
    limiter = JoinLimiter()
    results = [_admitted(limiter, "10.0.0.1", 0.0, wrong=True) for _ in range(20)]
    assert results[:2] == [True, True] and not any(results[2:])
    assert _admitted(limiter, "10.0.0.2", 0.0)  # another address is not held up
    assert not _admitted(limiter, "10.0.0.1", 1.0)
    assert _admitted(limiter, "10.0.0.1", 3.0)  # one every 2 s
    with pytest.raises(RateLimited, match=r"too many join attempts from 10\.0\.0\.1; try again in \d+s"):
        limiter.admit("10.0.0.1", 3.0)


def test_right_tokens_allow_a_burst_of_joins() -> None:
    limiter = JoinLimiter()
    assert all(_admitted(limiter, "10.0.0.1", 0.0) for _ in range(10))


def test_many_addresses_share_a_global_bucket_and_memory_is_bounded() -> None:
    limiter = JoinLimiter()
    admitted = sum(_admitted(limiter, f"10.1.{i // 256}.{i % 256}", 0.0) for i in range(200))
    assert admitted == int(JoinLimiter.GLOBAL[0])
    for i in range(JoinLimiter.MAX_ADDRESSES * 2):
        _admitted(limiter, f"10.2.{i // 256}.{i % 256}", 100.0 + i)
    assert len(limiter._buckets) <= JoinLimiter.MAX_ADDRESSES
