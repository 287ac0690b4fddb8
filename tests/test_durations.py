"""Go-style durations: parse what Go's time.ParseDuration parses, print what Duration.String prints."""

from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftstore import InvalidArgument, format_duration, parse_duration
from raftstore.state._durations import _parse_ns

MAX_NS = 2**63 - 1
UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


@pytest.mark.parametrize(
    "text,nanoseconds",
    [
        # The cases of Go's time_test.go parseDurationTests.
        ("0", 0), ("5s", 5 * 10**9), ("30s", 30 * 10**9), ("1478s", 1478 * 10**9),
        ("-5s", -5 * 10**9), ("+5s", 5 * 10**9), ("-0", 0), ("+0", 0),
        ("5.0s", 5 * 10**9), ("5.6s", 5 * 10**9 + 600 * 10**6), ("5.s", 5 * 10**9), (".5s", 500 * 10**6),
        ("1.0s", 10**9), ("1.00s", 10**9), ("1.004s", 10**9 + 4 * 10**6), ("1.0040s", 10**9 + 4 * 10**6),
        ("100.00100s", 100 * 10**9 + 1 * 10**6),
        ("10ns", 10), ("11us", 11 * 10**3), ("12µs", 12 * 10**3), ("12μs", 12 * 10**3), ("13ms", 13 * 10**6),
        ("14s", 14 * 10**9), ("15m", 15 * 60 * 10**9), ("16h", 16 * 3600 * 10**9),
        ("3h30m", (3 * 3600 + 30 * 60) * 10**9), ("10.5s4m", 4 * 60 * 10**9 + 10 * 10**9 + 500 * 10**6),
        ("-2m3.4s", -(2 * 60 * 10**9 + 3 * 10**9 + 400 * 10**6)),
        ("1h2m3s4ms5us6ns", 3600 * 10**9 + 2 * 60 * 10**9 + 3 * 10**9 + 4 * 10**6 + 5 * 10**3 + 6),
        ("39h9m14.425s", 39 * 3600 * 10**9 + 9 * 60 * 10**9 + 14 * 10**9 + 425 * 10**6),
        ("52763797000ns", 52763797000), ("0.3333333333333333333h", 20 * 60 * 10**9),
        ("9007199254740993ns", 2**53 + 1), ("9223372036854775807ns", MAX_NS),
        ("9223372036854775.807us", MAX_NS), ("9223372036s854ms775us807ns", MAX_NS),
        ("-9223372036854775808ns", -(2**63)), ("-9223372036854775.808us", -(2**63)),
        ("-2562047h47m16.854775808s", -(2**63)),
        ("0.100000000000000000000h", 6 * 60 * 10**9), ("0.830103483285477580700h", 49 * 60 * 10**9 + 48 * 10**9 + 372539827),
        # Docker's and ours.
        ("2160h0m0s", 2160 * 3600 * 10**9), ("2160h", 2160 * 3600 * 10**9), ("90s", 90 * 10**9), ("720h", 720 * 3600 * 10**9),
        ("1.5h", 90 * 60 * 10**9), ("1h30m", 90 * 60 * 10**9), ("000001s", 10**9),
    ],
)
def test_parse_like_go(text: str, nanoseconds: int) -> None:
    assert _parse_ns(text) == nanoseconds
    micro, rest = divmod(nanoseconds, 1000)
    assert abs(parse_duration(text) - timedelta(microseconds=micro)) <= timedelta(microseconds=1)
    if rest == 0:
        assert parse_duration(text) == timedelta(microseconds=micro)


@pytest.mark.parametrize(
    "text",
    [
        # Go refuses these.
        "", "3", "-", "+", "s", ".", "-.", ".s", "+.s", "1d", "\x85\x85", "\xffff", "hello \xffff world",
        "9223372036854775808ns", "9223372036854775.808us", "9223372036854ms775us808ns", "-9223372036854775809ns",
        "00", "1e3s", "1.5.5s", "1 h", " 1h", "1h ", "1hh", "1H", "1S", "--1s", "+-1s", "1.h.5", "s1", "1h1",
        "1ms1", "١s", "1٫5s", "１s", "1_000s", "0x10s", "inf", "nan", "1sec", "1m0", "µ", "us",
        "99999999999999999999h", "1" + "0" * 5000 + "h",
    ],
)
def test_invalid(text: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_duration(text)
    assert str(caught.value) == f'time: invalid duration "{text}"'


def test_rounding_to_microseconds() -> None:
    assert parse_duration("1ns") == timedelta(0)
    assert parse_duration("499ns") == timedelta(0)
    assert parse_duration("500ns") == timedelta(0)  # half to even
    assert parse_duration("1500ns") == timedelta(microseconds=2)
    assert parse_duration("501ns") == timedelta(microseconds=1)
    assert parse_duration("-1500ns") == timedelta(microseconds=-2)


@pytest.mark.parametrize(
    "value,text",
    [
        (timedelta(hours=2160), "2160h0m0s"), (timedelta(hours=1), "1h0m0s"), (timedelta(seconds=90), "1m30s"),
        (timedelta(milliseconds=90), "90ms"), (timedelta(0), "0s"), (timedelta(seconds=1.5), "1.5s"),
        (timedelta(microseconds=1), "1µs"), (timedelta(microseconds=1500), "1.5ms"), (timedelta(seconds=-5), "-5s"),
        (timedelta(minutes=-90), "-1h30m0s"), (timedelta(days=3, microseconds=1), "72h0m0.000001s"),
        (timedelta(microseconds=999999), "999.999ms"), (timedelta(seconds=59, microseconds=999999), "59.999999s"),
        (timedelta(hours=1, minutes=1, seconds=1, milliseconds=100), "1h1m1.1s"),
        (timedelta(microseconds=MAX_NS // 1000), "2562047h47m16.854775s"),
    ],
)
def test_format_like_go(value: timedelta, text: str) -> None:
    assert format_duration(value) == text
    assert "µ" == "\u00b5"  # the micro sign, as Go prints it


@given(st.integers(min_value=-(2**63) // 1000 + 1, max_value=MAX_NS // 1000))
@settings(max_examples=500)
def test_round_trip(microseconds: int) -> None:
    value = timedelta(microseconds=microseconds)
    assert parse_duration(format_duration(value)) == value


@st.composite
def go_durations(draw: st.DrawFn) -> tuple[str, int]:
    """A duration string Go accepts, and its value computed term by term."""
    terms = draw(st.lists(st.tuples(st.integers(0, 10**6), st.one_of(st.none(), st.text("0123456789", max_size=12)),
                                    st.sampled_from(sorted(UNITS))), min_size=1, max_size=4))
    sign = draw(st.sampled_from(["", "-", "+"]))
    text, total = sign, 0
    for whole, fraction, unit in terms:
        text += f"{whole}" + ("" if fraction is None else "." + fraction) + unit
        total += whole * UNITS[unit]
        if fraction:
            total += int(fraction) * UNITS[unit] // 10 ** len(fraction)
    return text, -total if sign == "-" else total


@given(go_durations())
@settings(max_examples=300)
def test_parse_generated_durations(case: tuple[str, int]) -> None:
    """Exact maths within Go's float64 fraction error: under a nanosecond per term."""
    text, nanoseconds = case
    parsed = _parse_ns(text)
    if abs(nanoseconds) > MAX_NS - 8:  # Go refuses what does not fit in an int64 (margin: float rounding)
        assert parsed is None or abs(parsed) <= MAX_NS
        return
    assert parsed is not None and abs(parsed - nanoseconds) <= 4


@given(st.text(max_size=30))
@settings(max_examples=500)
def test_parse_raises_only_invalid_argument(text: str) -> None:
    try:
        parse_duration(text)
    except InvalidArgument as error:
        assert str(error) == f'time: invalid duration "{text}"'


@given(st.text(alphabet="0123456789.+-hmsunµμ ", max_size=20))
@settings(max_examples=500)
def test_parse_near_misses_raise_only_invalid_argument(text: str) -> None:
    try:
        parse_duration(text)
    except InvalidArgument:
        pass


def test_durations_module_imports_only_keyring_errors() -> None:
    tree = ast.parse((Path(__file__).parent.parent / "raftstore" / "state" / "_durations.py").read_text(encoding="utf-8"))
    ours = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level > 0]
    assert [(node.level, node.module) for node in ours] == [(2, "keyring")]
