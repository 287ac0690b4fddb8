"""Join tokens and ids."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftstore.keyring import (
    ID_LENGTH,
    JOIN_TOKEN_PREFIX,
    InvalidJoinToken,
    JoinToken,
    ca_digest,
    is_valid_id,
    new_id,
    to_base36,
    tokens_equal,
)

BUNDLE = b"-----BEGIN CERTIFICATE-----\nnot parsed: the digest is over the bytes\n-----END CERTIFICATE-----\n"
BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


# ------------------------------------------------------------------ ids


def test_ids() -> None:
    ids = {new_id() for _ in range(500)}
    assert len(ids) == 500 and all(is_valid_id(i) and len(i) == ID_LENGTH == 25 for i in ids)
    assert all(int(i, 36) < 2**128 for i in ids)
    for bad in ("UPPER" * 5, "short", "0" * 26, "0" * 24 + "-", None, 5, b"0" * 25, "٠" * 25):
        assert not is_valid_id(bad)


def test_to_base36() -> None:
    assert to_base36(0, 3) == "000" and to_base36(35, 1) == "z" and to_base36(36, 2) == "10"
    assert to_base36(2**128 - 1, 25) == "f5lxx1zz5pnorynqglhzmsp33"
    assert len(to_base36(2**256 - 1, 50)) == 50 and to_base36(2**256 - 1, 50)[0] != "0"  # 50 digits are just enough
    with pytest.raises(ValueError):
        to_base36(36, 1)
    with pytest.raises(ValueError):
        to_base36(-1, 5)


@given(st.integers(0, 2**256 - 1))
def test_to_base36_round_trip(n: int) -> None:
    text = to_base36(n, 50)
    assert len(text) == 50 and set(text) <= set(BASE36) and int(text, 36) == n


# ------------------------------------------------------------------ join tokens


def test_join_token_format() -> None:
    token = JoinToken.generate(BUNDLE)
    text = str(token)
    assert JOIN_TOKEN_PREFIX == "SWMTKN-1-"
    prefix, version, digest, secret = text.split("-")
    assert (prefix, version) == ("SWMTKN", "1") and len(digest) == 50 and len(secret) == 25
    assert len(text) == 9 + 50 + 1 + 25
    assert digest == ca_digest(BUNDLE) == token.ca_digest
    assert int(digest, 36) == int.from_bytes(hashlib.sha256(BUNDLE).digest(), "big")
    assert int(secret, 36) < 2**128
    assert JoinToken.parse(text) == token and JoinToken.parse(f" {text}\n") == token


def test_tokens_of_one_ca_differ_only_in_the_secret() -> None:
    worker, manager = JoinToken.generate(BUNDLE), JoinToken.generate(BUNDLE)
    assert worker.ca_digest == manager.ca_digest and worker.secret != manager.secret and worker != manager


def test_matches_ca() -> None:
    token = JoinToken.generate(BUNDLE)
    assert token.matches_ca(BUNDLE)
    assert not token.matches_ca(BUNDLE + b"\n") and not token.matches_ca(b"")


def test_rotated_keeps_the_digest() -> None:
    token = JoinToken.generate(BUNDLE)
    rotated = token.rotated()
    assert rotated.ca_digest == token.ca_digest and rotated.secret != token.secret
    assert rotated.matches_ca(BUNDLE) and not tokens_equal(str(token), str(rotated))


def test_repr_redacts_the_secret() -> None:
    token = JoinToken.generate(BUNDLE)
    assert token.secret not in repr(token) and str(token) not in repr(token) and "redacted" in repr(token)
    assert token.ca_digest in repr(token)


def test_equality_and_hash() -> None:
    token = JoinToken.generate(BUNDLE)
    assert token == JoinToken(token.ca_digest, token.secret) and hash(token) == hash(JoinToken.parse(str(token)))
    assert token != str(token)


def test_tokens_equal() -> None:
    text = str(JoinToken.generate(BUNDLE))
    assert tokens_equal(text, text) and tokens_equal(f" {text}\n", text) and tokens_equal(text, f"{text} ")
    assert not tokens_equal(text, text[:-1]) and not tokens_equal(text, text + "0") and not tokens_equal(text, "")
    assert not tokens_equal(text, None) and not tokens_equal(b"x", b"x")  # type: ignore[arg-type]


@given(st.text(max_size=40), st.text(max_size=40))
@settings(max_examples=200)
def test_tokens_equal_never_raises(a: str, b: str) -> None:
    assert tokens_equal(a, b) == (a.strip() == b.strip())


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SWMTKN-1-",
        "SWMTKN-2-" + "0" * 50 + "-" + "0" * 25,
        "swmtkn-1-" + "0" * 50 + "-" + "0" * 25,
        "SWMTKN-1-" + "0" * 49 + "-" + "0" * 25,
        "SWMTKN-1-" + "0" * 50 + "-" + "0" * 24,
        "SWMTKN-1-" + "0" * 50 + "-" + "0" * 26,
        "SWMTKN-1-" + "0" * 50 + "0" * 25,
        "SWMTKN-1-" + "A" * 50 + "-" + "0" * 25,  # upper case
        "SWMTKN-1-" + "z" * 50 + "-" + "0" * 25,  # more than 256 bits
        "SWMTKN-1-" + "0" * 50 + "-" + "z" * 25,  # more than 128 bits
        "SWMTKN-1-" + "٠" * 50 + "-" + "0" * 25,  # non-ASCII digits
        "SWMKEY-1-" + "A" * 43,
    ],
)
def test_malformed_tokens(text: str) -> None:
    with pytest.raises(InvalidJoinToken, match="^invalid join token$"):
        JoinToken.parse(text)


def test_constructor_checks_the_shape() -> None:
    good = JoinToken.generate(BUNDLE)
    for digest, secret in ((good.ca_digest, "x"), ("x", good.secret), (good.ca_digest.upper(), good.secret), (1, 2)):
        with pytest.raises(InvalidJoinToken):
            JoinToken(digest, secret)  # type: ignore[arg-type]


class _Hostile(str):
    def strip(self, *args: object) -> str:  # type: ignore[override]
        raise RuntimeError("boom")


def test_str_subclasses_cannot_make_the_parser_raise_anything_else() -> None:
    text = str(JoinToken.generate(BUNDLE))
    assert JoinToken.parse(_Hostile(text)) == JoinToken.parse(text)
    assert tokens_equal(_Hostile(text), text)


@given(st.one_of(st.text(max_size=120), st.none(), st.integers(), st.floats(), st.binary(max_size=90),
                 st.lists(st.text(max_size=4), max_size=3), st.builds(object)))
@settings(max_examples=300)
def test_parser_raises_only_its_own_error(value: object) -> None:
    try:
        JoinToken.parse(value)
    except InvalidJoinToken:
        pass


@given(st.text(alphabet=BASE36 + "ABC-_ \n", min_size=70, max_size=80))
@settings(max_examples=300)
def test_near_misses_either_fail_or_round_trip(body: str) -> None:
    try:
        token = JoinToken.parse("SWMTKN-1-" + body)
    except InvalidJoinToken:
        return
    assert str(token) == ("SWMTKN-1-" + body).strip()
