"""Secret and config names and sizes at and around every limit (property tests)."""

from __future__ import annotations

import os
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftstore import InvalidArgument
from raftstore.state._objects import CONFIG_MAX_BYTES, SECRET_MAX_BYTES, public_view, validate_data, validate_name
from raftstore.state._state_machine import StateMachine

ALNUM = string.ascii_letters + string.digits
INNER = ALNUM + "-_."

valid_names = st.one_of(
    st.text(alphabet=ALNUM, min_size=1, max_size=1),
    st.builds(lambda a, m, b: a + m + b, st.sampled_from(ALNUM), st.text(alphabet=INNER, max_size=62),
              st.sampled_from(ALNUM)),
)


@given(valid_names)
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@given(st.text(max_size=80))
def test_any_text_is_either_valid_or_refused_with_the_rule(name: str) -> None:
    ok = (
        0 < len(name) <= 64
        and all(c in INNER for c in name)
        and name[0] in ALNUM
        and name[-1] in ALNUM
    )
    try:
        validate_name(name)
    except InvalidArgument as error:
        assert not ok
        assert str(error).startswith("invalid name, only 64 [a-zA-Z0-9-_.] characters allowed")
    else:
        assert ok


@pytest.mark.parametrize("length,ok", [(0, False), (1, True), (63, True), (64, True), (65, False)])
def test_name_length_limits(length: int, ok: bool) -> None:
    name = "a" * length
    if ok:
        validate_name(name)
    else:
        with pytest.raises(InvalidArgument):
            validate_name(name)


@pytest.mark.parametrize("name", ["-a", "a-", ".a", "a.", "_a", "a_", "ä", "a b", "a/b", "１"])
def test_names_refused(name: str) -> None:
    with pytest.raises(InvalidArgument):
        validate_name(name)


@pytest.mark.parametrize(
    "table,limit", [("secrets", SECRET_MAX_BYTES), ("configs", CONFIG_MAX_BYTES)]
)
@pytest.mark.parametrize("delta", [-2, -1, 0, 1])
def test_size_limits(table: str, limit: int, delta: int) -> None:
    size = limit + delta
    if size < limit:
        assert len(validate_data(table, b"x" * size)) == size
    else:
        with pytest.raises(InvalidArgument, match=f"must be larger than 0 and less than {limit} bytes"):
            validate_data(table, b"x" * size)


def test_secret_limit_is_512000() -> None:
    assert SECRET_MAX_BYTES == 512000 and CONFIG_MAX_BYTES == 1024000
    with pytest.raises(InvalidArgument, match="^secret data must be larger than 0 and less than 512000 bytes$"):
        validate_data("secrets", b"")


@given(st.binary(min_size=1, max_size=64), st.sampled_from(["table", "json"]))
def test_public_view_of_a_secret_never_has_its_data(data: bytes, _: str) -> None:
    sm = StateMachine()
    sm.apply_batch(2, 1, [(os.urandom(16), "now", [
        {"op": "create", "table": "secrets", "id": "s1", "name": "s", "spec": {"data": data, "grants": ["n"]}}])])
    view = public_view("secrets", sm.get("secrets", "s"))
    assert "data" not in view and set(view) == {"id", "name", "version", "created_at", "updated_at", "labels", "grants"}


def test_state_machine_enforces_the_rules_too() -> None:
    sm = StateMachine()
    bad = [
        {"op": "create", "table": "secrets", "id": "a", "name": "-bad", "spec": {"data": b"x"}},
        {"op": "create", "table": "secrets", "id": "b", "name": "ok", "spec": {"data": b""}},
        {"op": "create", "table": "configs", "id": "c", "name": "ok", "spec": {"data": b"x" * CONFIG_MAX_BYTES}},
        {"op": "create", "table": "secrets", "id": "d", "name": "ok", "spec": {"data": b"x", "grants": "n1"}},
    ]
    for index, action in enumerate(bad, start=2):
        [outcome], _ = sm.apply_batch(index, 1, [(os.urandom(16), "now", [action])])
        assert not outcome.ok and outcome.error_code == "InvalidArgument", action
