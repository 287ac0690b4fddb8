"""The connection pool's rules, one at a time (the daemon tests show them under load)."""

from __future__ import annotations

import socket
from typing import Iterator

import pytest

from raftstore.net._admission import ConnectionPool, Slot


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    made: list[tuple[socket.socket, socket.socket]] = []
    yield made
    for a, b in made:
        a.close()
        b.close()


def _admit(pool: ConnectionPool, pairs: list[tuple[socket.socket, socket.socket]], address: str) -> Slot | None:
    server, client = socket.socketpair()
    pairs.append((server, client))
    return pool.admit(server, address)


def _shut(pairs: list[tuple[socket.socket, socket.socket]], index: int) -> bool:
    """Whether the server side of pair ``index`` was shut down (its peer reads end of stream)."""
    client = pairs[index][1]
    client.settimeout(0.5)
    try:
        return client.recv(1) == b""
    except (socket.timeout, OSError):
        return False


def test_a_full_address_evicts_its_longest_idle_stranger_not_a_busy_one(pairs: list) -> None:
    pool = ConnectionPool(strangers=10, strangers_per_address=3, identified=2)
    first, second, third = (_admit(pool, pairs, "10.0.0.1") for _ in range(3))
    assert first and second and third
    with first.serving():  # the oldest is answering a request: it stays
        fourth = _admit(pool, pairs, "10.0.0.1")
        assert fourth is not None
    assert second.evicted and not first.evicted and _shut(pairs, 1)
    assert _admit(pool, pairs, "10.0.0.2") is not None  # another address has its own share


def test_evicted_slots_count_until_their_threads_let_go(pairs: list) -> None:
    pool = ConnectionPool(strangers=1, strangers_per_address=1, identified=0)
    assert _admit(pool, pairs, "10.0.0.1") is not None
    assert _admit(pool, pairs, "10.0.0.1") is not None  # evicts the first, whose thread has not ended
    assert _admit(pool, pairs, "10.0.0.1") is None  # the hard cap: 2 x strangers + identified


def test_every_stranger_busy_means_the_newcomer_is_refused(pairs: list) -> None:
    pool = ConnectionPool(strangers=2, strangers_per_address=2, identified=2)
    slots = [_admit(pool, pairs, "10.0.0.1") for _ in range(2)]
    for slot in slots:
        assert slot is not None
        slot.busy = True
    assert _admit(pool, pairs, "10.0.0.3") is None


def test_identified_connections_are_out_of_the_strangers_reach(pairs: list) -> None:
    pool = ConnectionPool(strangers=2, strangers_per_address=2, identified=1)
    member = _admit(pool, pairs, "10.0.0.1")
    assert member is not None and member.identify()
    strangers: list[Slot] = []
    for _ in range(10):
        slot = _admit(pool, pairs, "10.0.0.1")
        assert slot is not None
        strangers.append(slot)
        for evicted in (s for s in strangers if s.evicted):
            evicted.release()  # what its serving thread does once its socket is shut
    assert not member.evicted
    other = _admit(pool, pairs, "10.0.0.9")
    assert other is not None and not other.identify()  # the identified pool has its own cap


def test_released_slots_free_their_place(pairs: list) -> None:
    pool = ConnectionPool(strangers=1, strangers_per_address=1, identified=1)
    slot = _admit(pool, pairs, "10.0.0.1")
    assert slot is not None
    slot.release()
    slot.release()  # twice is harmless
    again = _admit(pool, pairs, "10.0.0.1")
    assert again is not None and not again.evicted
