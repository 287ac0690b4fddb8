"""Unlock keys: ``SWMKEY-1-`` followed by unpadded standard base64 of 32 random bytes.

The versioned prefix lives here, beside its only parser (as swarmkit keeps
``SWMKEY-1-`` beside its own). The key is never written anywhere by
raftstore; it exists in the operator's password manager and in the
replicated store (sealed), and in memory while a manager is unlocked.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re

from ._errors import InvalidUnlockKey

__all__ = ["UnlockKey", "UNLOCK_KEY_PREFIX"]

UNLOCK_KEY_PREFIX = "SWMKEY-1-"
_KEY_BYTES = 32
_B64_LENGTH = 43  # ceil(32 * 4 / 3) without padding
_B64_RE = re.compile(r"[A-Za-z0-9+/]{43}")
_MALFORMED = f"invalid unlock key: expected {UNLOCK_KEY_PREFIX} followed by {_B64_LENGTH} base64 characters"


class UnlockKey:
    """The operator's unlock key; compares in constant time and never shows itself in a repr."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        """Wrap 32 secret bytes (use ``generate`` or ``parse`` instead, normally)."""
        if not isinstance(secret, bytes) or len(secret) != _KEY_BYTES:
            raise InvalidUnlockKey(_MALFORMED)
        self._secret = secret

    @classmethod
    def generate(cls) -> "UnlockKey":
        """A new random unlock key (autolock turned on, or ``unlock-key --rotate``)."""
        return cls(os.urandom(_KEY_BYTES))

    @classmethod
    def parse(cls, text: object) -> "UnlockKey":
        """Parse ``SWMKEY-1-`` + 43 base64 characters, ignoring surrounding whitespace.

        Operators paste this, so every malformed input of any type gets the
        same error and nothing else escapes: padded base64, the wrong length,
        prefix or version, and non-canonical base64 (stray bits in the last
        character, which would let two texts name one key) are refused.

        Raises:
            InvalidUnlockKey: "invalid unlock key: expected SWMKEY-1- followed by 43 base64 characters".
        """
        if not isinstance(text, str):
            raise InvalidUnlockKey(_MALFORMED)
        text = str.strip(text)  # the base method: a str subclass cannot make this raise
        if not str.startswith(text, UNLOCK_KEY_PREFIX):
            raise InvalidUnlockKey(_MALFORMED)
        encoded = text[len(UNLOCK_KEY_PREFIX) :]
        if _B64_RE.fullmatch(encoded) is None:
            raise InvalidUnlockKey(_MALFORMED)
        try:
            secret = base64.b64decode(encoded + "=", validate=True)
        except (binascii.Error, ValueError):
            raise InvalidUnlockKey(_MALFORMED) from None
        canonical = base64.b64encode(secret)[:_B64_LENGTH]
        if len(secret) != _KEY_BYTES or not hmac.compare_digest(canonical, encoded.encode("ascii")):
            raise InvalidUnlockKey(_MALFORMED)
        return cls(secret)

    @property
    def secret(self) -> bytes:
        """The 32 key bytes: input to the KEK derivation, never stored."""
        return self._secret

    def __str__(self) -> str:
        return UNLOCK_KEY_PREFIX + base64.b64encode(self._secret).decode().rstrip("=")

    def __repr__(self) -> str:
        return "UnlockKey(<redacted>)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UnlockKey):
            return NotImplemented
        return hmac.compare_digest(self._secret, other._secret)

    __hash__ = None  # type: ignore[assignment]
