"""Durations written as Go and Docker write them: ``90s``, ``30m``, ``720h``, ``2160h0m0s``.

``parse_duration`` accepts what Go's ``time.ParseDuration`` accepts (units ns,
us, µs, ms, s, m, h; decimal fractions; several terms; a sign) and
``format_duration`` prints what Go's ``Duration.String`` prints, so that a
value shown by raftstore can be pasted back into it.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from .keyring import InvalidArgument

__all__ = ["parse_duration", "format_duration"]

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_TERM = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_MAX_NS = 2**63 - 1


def parse_duration(text: str) -> timedelta:
    error = InvalidArgument(f'time: invalid duration "{text}"')
    if not isinstance(text, str):
        raise error
    rest = text
    sign = 1
    if rest[:1] in "+-" and rest:
        sign = -1 if rest[0] == "-" else 1
        rest = rest[1:]
    if rest == "0":
        return timedelta(0)
    if not rest:
        raise error
    total = Decimal(0)
    pos = 0
    while pos < len(rest):
        match = _TERM.match(rest, pos)
        if match is None:
            raise error
        try:
            total += Decimal(match.group(1)) * _UNITS_NS[match.group(2)]
        except InvalidOperation:
            raise error from None
        pos = match.end()
    if total > _MAX_NS:
        raise error
    nanoseconds = int(total) * sign
    return timedelta(microseconds=nanoseconds / 1000) if nanoseconds % 1000 else timedelta(microseconds=nanoseconds // 1000)


def _trim(value: str) -> str:
    if "." in value:
        value = value.rstrip("0").rstrip(".")
    return value


def format_duration(duration: timedelta) -> str:
    ns = (duration.days * 86_400 + duration.seconds) * 1_000_000_000 + duration.microseconds * 1_000
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _trim(f"{ns / size:.9f}") + unit if ns % size else f"{sign}{ns // size}{unit}"
    hours, rem = divmod(ns, 3_600_000_000_000)
    minutes, rem = divmod(rem, 60_000_000_000)
    seconds = rem / 1_000_000_000
    seconds_text = _trim(f"{seconds:.9f}") if rem % 1_000_000_000 else str(rem // 1_000_000_000)
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds_text}s"
    if minutes:
        return f"{sign}{minutes}m{seconds_text}s"
    return f"{sign}{seconds_text}s"
