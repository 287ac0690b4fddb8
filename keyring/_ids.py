"""Node and cluster ids: 25 characters of lower-case base 36, random.

128 random bits in base 36 need at most 25 digits, so every id has the same
length (left-padded with zeros), as swarmkit's identity.NewID produces.
"""

from __future__ import annotations

import re
import secrets

__all__ = ["ID_LENGTH", "new_id", "is_valid_id", "to_base36"]

ID_LENGTH = 25
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_ID_RE = re.compile(r"[0-9a-z]{25}")


def to_base36(n: int, width: int) -> str:
    """``n`` in lower-case base 36, left-padded with zeros to ``width`` digits."""
    if n < 0:
        raise ValueError("base 36 of a negative number")
    digits = []
    while n:
        n, r = divmod(n, 36)
        digits.append(_DIGITS[r])
    text = "".join(reversed(digits)) or "0"
    if len(text) > width:
        raise ValueError(f"{len(text)} base-36 digits do not fit in {width}")
    return text.rjust(width, "0")


def new_id() -> str:
    """A new node or cluster id: 128 random bits (``secrets``) in 25 base-36 digits."""
    return to_base36(int.from_bytes(secrets.token_bytes(16), "big"), ID_LENGTH)


def is_valid_id(text: object) -> bool:
    """Whether ``text`` has the shape of an id (25 lower-case base-36 characters); never raises."""
    return isinstance(text, str) and _ID_RE.fullmatch(text) is not None
