"""The checker itself, on hand-made histories that are and are not linearizable."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from linearizability import Operation, check


def op(client, kind, arg, call, ret, result, key="k"):
    return Operation(client, key, kind, arg, call, ret, result)


def test_sequential_history_is_linearizable() -> None:
    history = [op(1, "put", "a", 0, 1, "ok"), op(1, "get", None, 2, 3, "a"), op(1, "cas", ("a", "b"), 4, 5, "ok"),
               op(1, "get", None, 6, 7, "b"), op(1, "delete", None, 8, 9, "ok"), op(1, "get", None, 10, 11, None)]
    assert check(history).ok


def test_concurrent_reads_may_see_either_value() -> None:
    history = [op(1, "put", "a", 0, 10, "ok"), op(2, "get", None, 1, 2, None), op(3, "get", None, 3, 4, "a"),
               op(2, "get", None, 5, 6, "a")]
    assert check(history).ok


def test_stale_read_after_a_completed_write_is_rejected() -> None:
    history = [op(1, "put", "a", 0, 1, "ok"), op(1, "put", "b", 2, 3, "ok"), op(2, "get", None, 4, 5, "a")]
    verdict = check(history)
    assert not verdict.ok and verdict.failing_key == "k"
    assert [o.kind for o in verdict.window] == ["put", "get"]  # the smallest window: b written, then a read
    assert "NOT linearizable" in verdict.explain()


def test_value_flickering_back_is_rejected() -> None:
    history = [op(1, "put", "a", 0, 1, "ok"), op(2, "put", "b", 0, 10, "ok"), op(3, "get", None, 2, 3, "b"),
               op(3, "get", None, 4, 5, "a")]
    assert not check(history).ok


def test_timed_out_write_may_or_may_not_apply() -> None:
    applied = [op(1, "put", "a", 0, 1, "ok"), op(2, "put", "b", 2, None, None), op(3, "get", None, 5, 6, "b")]
    not_applied = [op(1, "put", "a", 0, 1, "ok"), op(2, "put", "b", 2, None, None), op(3, "get", None, 5, 6, "a")]
    assert check(applied).ok and check(not_applied).ok
    # But it cannot take effect before it was invoked.
    early = [op(1, "put", "a", 0, 1, "ok"), op(3, "get", None, 1.5, 1.8, "b"), op(2, "put", "b", 2, None, None)]
    assert not check(early).ok


def test_cas_outcomes() -> None:
    good = [op(1, "put", "a", 0, 1, "ok"), op(2, "cas", ("a", "b"), 2, 3, "ok"), op(3, "cas", ("a", "c"), 4, 5, "failed")]
    bad = [op(1, "put", "a", 0, 1, "ok"), op(2, "cas", ("a", "b"), 2, 3, "ok"), op(3, "cas", ("a", "c"), 4, 5, "ok")]
    lost_update = [op(1, "put", "a", 0, 1, "ok"), op(2, "cas", ("a", "b"), 2, 3, "failed")]
    assert check(good).ok and not check(bad).ok and not check(lost_update).ok


def test_keys_are_checked_independently() -> None:
    history = [op(1, "put", "a", 0, 1, "ok", key="x"), op(1, "put", "a", 0, 1, "ok", key="y"),
               op(2, "get", None, 2, 3, "a", key="x"), op(2, "get", None, 2, 3, None, key="y")]
    verdict = check(history)
    assert not verdict.ok and verdict.failing_key == "y"


@st.composite
def sequential_histories(draw):
    """Histories produced by a real register, one operation at a time: always linearizable."""
    state, t, ops = None, 0.0, []
    for i in range(draw(st.integers(1, 30))):
        kind = draw(st.sampled_from(["put", "get", "cas", "delete"]))
        client = draw(st.integers(1, 4))
        call, ret = t, t + draw(st.floats(0.01, 1))
        t = ret + 0.01
        if kind == "put":
            value = f"v{i}"
            ops.append(Operation(client, "k", "put", value, call, ret, "ok"))
            state = value
        elif kind == "get":
            ops.append(Operation(client, "k", "get", None, call, ret, state))
        elif kind == "delete":
            ops.append(Operation(client, "k", "delete", None, call, ret, "ok"))
            state = None
        else:
            expected = state if draw(st.booleans()) else "other"
            new = f"v{i}"
            ok = state == expected
            ops.append(Operation(client, "k", "cas", (expected, new), call, ret, "ok" if ok else "failed"))
            if ok:
                state = new
    return ops


@given(sequential_histories(), st.randoms())
@settings(max_examples=100, deadline=None)
def test_real_register_histories_pass_even_when_overlapping(ops, rnd: random.Random) -> None:
    # Stretching each operation's interval (earlier call, later return) keeps a history linearizable.
    stretched = [Operation(o.client, o.key, o.kind, o.argument, o.call - rnd.random(), o.ret + rnd.random(), o.result)
                 for o in ops]
    assert check(stretched).ok


def test_a_large_concurrent_history_is_checked_quickly() -> None:
    rnd = random.Random(7)
    state, ops, t = None, [], 0.0
    for i in range(3000):  # 8 clients, overlapping operations, results from a real register
        call = t
        t += 0.001
        value = f"v{i}"
        if rnd.random() < 0.5:
            ops.append(op(i % 8, "put", value, call, t + rnd.random() * 0.004, "ok"))
            state = value
        else:
            ops.append(op(i % 8, "get", None, call - rnd.random() * 0.003, t + rnd.random() * 0.004, state))
    assert check(ops).ok
