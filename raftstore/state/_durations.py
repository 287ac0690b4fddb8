"""Durations written as Go and Docker write them: ``90s``, ``30m``, ``720h``, ``2160h0m0s``.

``parse_duration`` accepts exactly what Go's ``time.ParseDuration`` accepts
(units ns, us, µs, ms, s, m, h; decimal fractions; several terms; a sign; a
bare ``0``; at most 2**63-1 nanoseconds), computing the same nanoseconds (float64
fraction maths included), and ``format_duration`` prints what
Go's ``Duration.String`` prints, so that a value shown by raftstore can be
pasted back into it, and a value from Docker's documentation works here.

A ``timedelta`` holds microseconds, so a parsed value is rounded to the
nearest microsecond (half to even); printing is exact.

This module is not cryptography; it imports only the error classes from
``raftstore.keyring``.
"""

from __future__ import annotations

from datetime import timedelta

from ..keyring import InvalidArgument

__all__ = ["parse_duration", "format_duration"]

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # µ MICRO SIGN, as Go prints it
    "\u03bcs": 1_000,  # μ GREEK SMALL LETTER MU, which Go accepts too
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_LIMIT = 1 << 63  # Go's Duration is an int64 of nanoseconds


def parse_duration(text: str) -> timedelta:
    """Parse a Go duration such as ``2160h0m0s``, ``1.5h`` or ``-90s``.

    Raises:
        InvalidArgument: 'time: invalid duration "TEXT"' for anything Go
            refuses (no other exception, whatever the string).
    """
    if not isinstance(text, str):
        raise InvalidArgument(f'time: invalid duration "{text!s}"')
    nanoseconds = _parse_ns(text)
    if nanoseconds is None:
        raise InvalidArgument(f'time: invalid duration "{text}"')
    return _to_timedelta(nanoseconds)


def _is_digit(char: str) -> bool:
    return "0" <= char <= "9"  # ASCII only, as Go: not str.isdigit, which takes any script's digits


def _parse_ns(text: str) -> int | None:
    """Go's ParseDuration, step for step (including its float64 fraction maths), in nanoseconds."""
    rest = text
    negative = False
    if rest[:1] in ("-", "+"):
        negative = rest[0] == "-"
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        return None
    total = 0
    while rest:
        if not (rest[0] == "." or _is_digit(rest[0])):
            return None
        # The whole part: [0-9]*, at most 2**63.
        value, i = 0, 0
        while i < len(rest) and _is_digit(rest[i]):
            if value > _LIMIT // 10:
                return None
            value = value * 10 + ord(rest[i]) - 48
            if value > _LIMIT:
                return None
            i += 1
        has_whole, rest = i > 0, rest[i:]
        # The fraction: (.[0-9]*)?; digits past what fits are read and ignored.
        fraction, scale, has_fraction = 0, 1.0, False
        if rest[:1] == ".":
            rest = rest[1:]
            i, overflow = 0, False
            while i < len(rest) and _is_digit(rest[i]):
                if not overflow:
                    digit = fraction * 10 + ord(rest[i]) - 48
                    if fraction > (_LIMIT - 1) // 10 or digit > _LIMIT:
                        overflow = True
                    else:
                        fraction, scale = digit, scale * 10
                i += 1
            has_fraction, rest = i > 0, rest[i:]
        if not (has_whole or has_fraction):
            return None
        # The unit: everything up to the next digit or point.
        i = 0
        while i < len(rest) and not (rest[i] == "." or _is_digit(rest[i])):
            i += 1
        unit = _UNITS_NS.get(rest[:i])
        if unit is None:
            return None
        rest = rest[i:]
        if value > _LIMIT // unit:
            return None
        value *= unit
        if fraction > 0:
            value += int(float(fraction) * (float(unit) / scale))  # float64, as Go computes it
            if value > _LIMIT:
                return None
        total += value
        if total > _LIMIT:
            return None
    if negative:
        return -total
    if total > _LIMIT - 1:
        return None
    return total


def _to_timedelta(nanoseconds: int) -> timedelta:
    micro, rest = divmod(nanoseconds, 1_000)
    if rest > 500 or (rest == 500 and micro % 2):
        micro += 1
    return timedelta(microseconds=micro)


def _fraction(value: int, size: int) -> str:
    """``value / size`` in decimal without trailing zeros (size is a power of ten)."""
    whole, rest = divmod(value, size)
    if not rest:
        return str(whole)
    digits = str(rest).rjust(len(str(size)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


def format_duration(duration: timedelta) -> str:
    """Print a duration as Go's ``Duration.String`` does: ``2160h0m0s``, ``1m30s``, ``90ms``, ``0s``."""
    ns = (duration.days * 86_400 + duration.seconds) * 1_000_000_000 + duration.microseconds * 1_000
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("\u00b5s", 1_000), ("ns", 1)):
            if ns >= size:
                return f"{sign}{_fraction(ns, size)}{unit}"
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _fraction(rest, 1_000_000_000) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return f"{sign}{seconds}"
