"""Join tokens: ``SWMTKN-1-<digest>-<secret>``.

``<digest>`` is the SHA-256 of the root CA bundle in base 36 (50 characters):
the joining node checks the CA it is shown against it before trusting the
manager. ``<secret>`` is 16 random bytes in base 36 (25 characters): the
manager compares the whole token, in constant time, with the worker and the
manager tokens. The two tokens differ only in the secret.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass, field

from ._ca import ca_digest
from ._errors import InvalidJoinToken
from ._ids import to_base36

__all__ = ["JoinToken", "tokens_equal", "JOIN_TOKEN_PREFIX"]

JOIN_TOKEN_PREFIX = "SWMTKN-1-"
_TOKEN_RE = re.compile(r"SWMTKN-1-([0-9a-z]{50})-([0-9a-z]{25})")
_MALFORMED = "invalid join token"


@dataclass(frozen=True)
class JoinToken:
    ca_digest: str
    secret: str = field(repr=False)

    @classmethod
    def generate(cls, ca_bundle_pem: bytes) -> "JoinToken":
        return cls(ca_digest(ca_bundle_pem), _new_secret())

    @classmethod
    def parse(cls, text: object) -> "JoinToken":
        """Parse a token; anything malformed raises InvalidJoinToken and nothing else."""
        if not isinstance(text, str):
            raise InvalidJoinToken(_MALFORMED)
        match = _TOKEN_RE.fullmatch(text.strip())
        if match is None:
            raise InvalidJoinToken(_MALFORMED)
        digest, secret = match.groups()
        if int(digest, 36) >= 2**256 or int(secret, 36) >= 2**128:
            raise InvalidJoinToken(_MALFORMED)
        return cls(digest, secret)

    def rotated(self) -> "JoinToken":
        return JoinToken(self.ca_digest, _new_secret())

    def matches_ca(self, bundle_pem: bytes) -> bool:
        return hmac.compare_digest(self.ca_digest, ca_digest(bundle_pem))

    def __str__(self) -> str:
        return f"{JOIN_TOKEN_PREFIX}{self.ca_digest}-{self.secret}"

    def __repr__(self) -> str:
        return f"JoinToken(ca_digest={self.ca_digest!r}, secret=<redacted>)"


def _new_secret() -> str:
    return to_base36(int.from_bytes(secrets.token_bytes(16), "big"), 25)


def tokens_equal(a: str, b: str) -> bool:
    """Constant-time comparison of two whole token strings."""
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    return hmac.compare_digest(a.strip().encode(), b.encode())
