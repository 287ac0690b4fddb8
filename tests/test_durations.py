"""Go-style durations: parse what Go parses, print what Go prints."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftstore import InvalidArgument, format_duration, parse_duration


@pytest.mark.parametrize(
    "text,expected",
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("720h", timedelta(hours=720)),
        ("2160h0m0s", timedelta(hours=2160)),
        ("1.5h", timedelta(minutes=90)),
        ("1h30m", timedelta(minutes=90)),
        ("300ms", timedelta(milliseconds=300)),
        ("0", timedelta(0)),
        ("-5s", timedelta(seconds=-5)),
        (".5s", timedelta(milliseconds=500)),
    ],
)
def test_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "value,text",
    [(timedelta(hours=2160), "2160h0m0s"), (timedelta(hours=1), "1h0m0s"), (timedelta(seconds=90), "1m30s"),
     (timedelta(milliseconds=90), "90ms"), (timedelta(0), "0s"), (timedelta(seconds=1.5), "1.5s")],
)
def test_format(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


@pytest.mark.parametrize("text", ["", "h", "1", "1x", "1hh", "--1s", "1 h", "1.h.5", "s1"])
def test_invalid(text: str) -> None:
    with pytest.raises(InvalidArgument, match=f'^time: invalid duration "{text}"$'):
        parse_duration(text)


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_round_trip(microseconds: int) -> None:
    value = timedelta(microseconds=microseconds)
    assert parse_duration(format_duration(value)) == value


@given(st.text(max_size=30))
def test_parse_raises_only_invalid_argument(text: str) -> None:
    try:
        parse_duration(text)
    except InvalidArgument:
        pass
