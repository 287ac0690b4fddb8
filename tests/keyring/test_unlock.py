"""Unlock keys: SWMKEY-1- + unpadded base64 of 32 bytes; a parser that only ever says "invalid unlock key"."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftstore.keyring import UNLOCK_KEY_PREFIX, InvalidUnlockKey, UnlockKey

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def test_format_and_round_trip() -> None:
    key = UnlockKey.generate()
    text = str(key)
    assert UNLOCK_KEY_PREFIX == "SWMKEY-1-"
    assert text.startswith("SWMKEY-1-") and len(text) == 52 and "=" not in text
    assert base64.b64decode(text[9:] + "=") == key.secret and len(key.secret) == 32
    assert UnlockKey.parse(text) == key
    assert UnlockKey.parse(f"  {text}\n") == key
    assert UnlockKey.parse(f"\t{text}\r\n") == key
    assert UnlockKey.generate() != key


@given(st.binary(min_size=32, max_size=32))
@settings(max_examples=100)
def test_every_key_round_trips(secret: bytes) -> None:
    key = UnlockKey(secret)
    assert UnlockKey.parse(str(key)).secret == secret


def test_repr_never_shows_the_key() -> None:
    key = UnlockKey.generate()
    for text in (repr(key), repr([key]), f"{key!r}"):
        assert str(key) not in text and str(key)[9:] not in text and key.secret.hex() not in text
        assert repr(key.secret) not in text and "redacted" in text


def test_equality_is_by_value() -> None:
    key = UnlockKey.generate()
    assert key == UnlockKey(key.secret) and key != UnlockKey(bytes(32)) and key != str(key)
    with pytest.raises(TypeError):
        hash(key)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "SWMKEY-1-",
        "SWMKEY-2-" + "A" * 43,
        "SWMKEY-0-" + "A" * 43,
        "swmkey-1-" + "A" * 43,
        "SWMKEY-1" + "A" * 43,
        "SWMKEY-1-" + "A" * 42,
        "SWMKEY-1-" + "A" * 44,
        "SWMKEY-1-" + "A" * 42 + "=",  # padded
        "SWMKEY-1-" + "A" * 43 + "=",
        "SWMKEY-1-" + "A" * 42 + "B",  # non-canonical: stray low bits
        "SWMKEY-1-" + "A" * 42 + "D",
        "SWMKEY-1-" + "A" * 42 + "*",
        "SWMKEY-1-" + "A" * 41 + "-A",  # URL-safe alphabet
        "SWMKEY-1-" + "A" * 41 + "_A",
        "SWMKEY-1-" + "A" * 20 + " " + "A" * 22,
        "SWMKEY-1-" + "A" * 20 + "\n" + "A" * 23,
        "SWMKEY-1-" + "Ａ" * 43,  # fullwidth letters
        "SWMKEY-1-" + "A" * 43 + "SWMKEY-1-" + "A" * 43,
        "SWMTKN-1-" + "A" * 43,
        "SWMKEY-1-\udc80" + "A" * 42,
    ],
)
def test_malformed_unlock_keys(text: str) -> None:
    with pytest.raises(InvalidUnlockKey, match="^invalid unlock key"):
        UnlockKey.parse(text)


def test_only_the_canonical_last_character_parses() -> None:
    """43 characters carry 258 bits; the last character's two low bits must be zero."""
    key = UnlockKey.generate()
    text = str(key)
    index = B64.index(text[-1])
    assert index % 4 == 0
    for stray in (1, 2, 3):
        with pytest.raises(InvalidUnlockKey):
            UnlockKey.parse(text[:-1] + B64[index + stray])


class _Hostile(str):
    def strip(self, *args: object) -> str:  # type: ignore[override]
        raise RuntimeError("boom")

    def startswith(self, *args: object) -> bool:  # type: ignore[override]
        raise RuntimeError("boom")


class _Weird:
    def __str__(self) -> str:
        raise RuntimeError("boom")


@pytest.mark.parametrize("value", [None, 0, 1.5, b"SWMKEY-1-" + b"A" * 43, ["SWMKEY-1-"], _Weird(), object()])
def test_non_text_is_invalid(value: object) -> None:
    with pytest.raises(InvalidUnlockKey, match="^invalid unlock key"):
        UnlockKey.parse(value)


def test_str_subclasses_cannot_make_the_parser_raise_anything_else() -> None:
    text = str(UnlockKey.generate())
    assert UnlockKey.parse(_Hostile(text)) == UnlockKey.parse(text)
    with pytest.raises(InvalidUnlockKey):
        UnlockKey.parse(_Hostile("nope"))


@given(
    st.one_of(
        st.text(max_size=80),
        st.binary(max_size=80),
        st.integers(),
        st.floats(),
        st.none(),
        st.booleans(),
        st.lists(st.text(max_size=5), max_size=3),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        st.builds(object),
    )
)
@settings(max_examples=300)
def test_parser_raises_only_its_own_error(value: object) -> None:
    try:
        UnlockKey.parse(value)
    except InvalidUnlockKey as error:
        assert str(error).startswith("invalid unlock key")


@given(st.text(alphabet=B64 + "=-_ \n", max_size=60))
@settings(max_examples=300)
def test_near_misses_either_fail_or_are_canonical(suffix: str) -> None:
    try:
        key = UnlockKey.parse("SWMKEY-1-" + suffix)
    except InvalidUnlockKey:
        return
    assert str(key) == ("SWMKEY-1-" + suffix).strip()


def test_constructor_checks_the_secret() -> None:
    for secret in (b"", bytes(31), bytes(33), "x" * 32, bytearray(32)):
        with pytest.raises(InvalidUnlockKey):
            UnlockKey(secret)  # type: ignore[arg-type]
