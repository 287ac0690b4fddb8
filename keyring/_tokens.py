"""Join tokens: ``SWMTKN-1-<digest>-<secret>``.

``<digest>`` is the SHA-256 of the root CA bundle's PEM bytes in base 36 (50
characters): the joining node checks the CA it is shown against it before
trusting the manager. ``<secret>`` is 16 random bytes in base 36 (25
characters): the manager compares the whole token, in constant time, with
the worker and the manager tokens. The two tokens differ only in the secret.
The versioned prefix lives here, beside its only parser.
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
_DIGEST_LENGTH = 50
_SECRET_LENGTH = 25
_DIGEST_RE = re.compile(r"[0-9a-z]{50}")
_SECRET_RE = re.compile(r"[0-9a-z]{25}")
_TOKEN_RE = re.compile(r"SWMTKN-1-([0-9a-z]{50})-([0-9a-z]{25})")
_MALFORMED = "invalid join token"


def _well_formed(digest: object, secret: object) -> bool:
    return (
        isinstance(digest, str)
        and isinstance(secret, str)
        and _DIGEST_RE.fullmatch(digest) is not None
        and _SECRET_RE.fullmatch(secret) is not None
        and int(digest, 36) < 2**256
        and int(secret, 36) < 2**128
    )


@dataclass(frozen=True, eq=False)
class JoinToken:
    """A parsed join token. Equality is constant-time; the repr hides the secret.

    Raises (on construction):
        InvalidJoinToken: a digest or secret of the wrong shape.
    """

    ca_digest: str
    secret: str = field(repr=False)

    def __post_init__(self) -> None:
        if not _well_formed(self.ca_digest, self.secret):
            raise InvalidJoinToken(_MALFORMED)

    @classmethod
    def generate(cls, ca_bundle_pem: bytes) -> "JoinToken":
        """A new token for the cluster whose root CA bundle is ``ca_bundle_pem``."""
        return cls(ca_digest(ca_bundle_pem), _new_secret())

    @classmethod
    def parse(cls, text: object) -> "JoinToken":
        """Parse a token (surrounding whitespace ignored).

        Tokens arrive from command lines and the network, so anything
        malformed, of any type, raises the one error and nothing else.

        Raises:
            InvalidJoinToken: "invalid join token".
        """
        if not isinstance(text, str):
            raise InvalidJoinToken(_MALFORMED)
        match = _TOKEN_RE.fullmatch(str.strip(text))
        if match is None:
            raise InvalidJoinToken(_MALFORMED)
        return cls(*match.groups())

    def rotated(self) -> "JoinToken":
        """The same CA digest with a new secret: the old token stops admitting nodes."""
        return JoinToken(self.ca_digest, _new_secret())

    def matches_ca(self, bundle_pem: bytes) -> bool:
        """Whether the CA a manager shows is the one this token names (constant time)."""
        return hmac.compare_digest(self.ca_digest.encode("ascii"), ca_digest(bundle_pem).encode("ascii"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JoinToken):
            return NotImplemented
        return tokens_equal(str(self), str(other))

    def __hash__(self) -> int:
        return hash(self.ca_digest)

    def __str__(self) -> str:
        return f"{JOIN_TOKEN_PREFIX}{self.ca_digest}-{self.secret}"

    def __repr__(self) -> str:
        return f"JoinToken(ca_digest={self.ca_digest!r}, secret=<redacted>)"


def _new_secret() -> str:
    return to_base36(int.from_bytes(secrets.token_bytes(16), "big"), _SECRET_LENGTH)


def tokens_equal(a: str, b: str) -> bool:
    """Constant-time comparison of two whole token strings (surrounding whitespace ignored).

    Never raises: anything but two strings is simply unequal.
    """
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    return hmac.compare_digest(
        str.strip(a).encode("utf-8", "surrogatepass"), str.strip(b).encode("utf-8", "surrogatepass")
    )
