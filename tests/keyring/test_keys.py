"""DEK keyrings, KEKs, unlock keys and wrapped keys."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftstore.keyring import (
    DataKey,
    InvalidRecord,
    InvalidUnlockKey,
    KeyEncryptionKey,
    Keyring,
    UnlockKey,
    open_private_key,
    seal_private_key,
    unwrap_data_key,
    unwrap_keyring,
    wrap_data_key,
    wrap_keyring,
    wrapped_kek_version,
)

CLUSTER = "cluster0000000000000000000"


def test_keyring_rotation_is_immutable() -> None:
    ring = Keyring.generate()
    rotated = ring.rotated()
    assert ring.key_ids == (1,) and ring.active_id == 1
    assert rotated.key_ids == (1, 2) and rotated.active_id == 2
    assert rotated.get_key(1) == ring.get_key(1)
    assert rotated.without([1]).key_ids == (2,)
    with pytest.raises(ValueError):
        rotated.without([2])


def test_with_key_is_idempotent_and_refuses_conflicts() -> None:
    ring = Keyring.generate()
    key = DataKey.generate(2)
    assert ring.with_key(key).with_key(key).key_ids == (1, 2)
    with pytest.raises(InvalidRecord):
        ring.with_key(key).with_key(DataKey.generate(2))


def test_keyring_bytes_round_trip() -> None:
    ring = Keyring.generate().rotated().rotated()
    assert Keyring.from_bytes(ring.to_bytes()) == ring


@given(st.binary(max_size=200))
def test_keyring_from_bytes_only_raises_invalid_record(data: bytes) -> None:
    try:
        Keyring.from_bytes(data)
    except InvalidRecord:
        pass


def test_wrap_unwrap_and_wrong_kek() -> None:
    ring = Keyring.generate()
    kek = KeyEncryptionKey.random(5)
    blob = wrap_keyring(ring, kek, CLUSTER)
    assert wrapped_kek_version(blob) == 5
    assert unwrap_keyring(blob, kek, CLUSTER) == ring
    with pytest.raises(InvalidRecord):
        unwrap_keyring(blob, KeyEncryptionKey.random(5), CLUSTER)
    with pytest.raises(InvalidRecord):
        unwrap_keyring(blob, kek, "another-cluster")


def test_every_byte_of_wrapped_keyring_is_tamper_evident() -> None:
    kek = KeyEncryptionKey.random(1)
    blob = wrap_keyring(Keyring.generate(), kek, CLUSTER)
    for offset in range(len(blob)):
        tampered = bytearray(blob)
        tampered[offset] ^= 0x40
        with pytest.raises(InvalidRecord):
            unwrap_keyring(bytes(tampered), kek, CLUSTER)


def test_kek_from_unlock_key_is_deterministic_and_salted_by_cluster() -> None:
    key = UnlockKey.generate()
    a = KeyEncryptionKey.from_unlock_key(key, CLUSTER, 1)
    assert a == KeyEncryptionKey.from_unlock_key(UnlockKey.parse(str(key)), CLUSTER, 1)
    assert a.secret != KeyEncryptionKey.from_unlock_key(key, "other-cluster", 1).secret
    assert a.secret != KeyEncryptionKey.from_unlock_key(UnlockKey.generate(), CLUSTER, 1).secret
    assert a.secret.hex() not in repr(a)


def test_rotated_dek_travels_sealed_under_the_previous_one() -> None:
    ring = Keyring.generate()
    new = DataKey.generate(2)
    blob = wrap_data_key(new, ring.active, CLUSTER)
    assert new.secret not in blob
    assert unwrap_data_key(blob, ring, CLUSTER) == new
    with pytest.raises(InvalidRecord):
        unwrap_data_key(blob, Keyring.generate(), CLUSTER)
    for offset in range(len(blob)):
        tampered = bytearray(blob)
        tampered[offset] ^= 1
        with pytest.raises(InvalidRecord):
            unwrap_data_key(bytes(tampered), ring, CLUSTER)


def test_node_key_sealed_under_kek() -> None:
    kek = KeyEncryptionKey.random(3)
    pem = b"-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n"
    blob = seal_private_key(pem, kek, CLUSTER)
    assert b"PRIVATE KEY" not in blob
    assert open_private_key(blob, kek, CLUSTER) == pem
    with pytest.raises(InvalidRecord):
        open_private_key(blob, KeyEncryptionKey.random(3), CLUSTER)


# ------------------------------------------------------------------ unlock keys


def test_unlock_key_format_and_round_trip() -> None:
    key = UnlockKey.generate()
    text = str(key)
    assert text.startswith("SWMKEY-1-") and len(text) == 52 and "=" not in text
    assert UnlockKey.parse(text) == key
    assert UnlockKey.parse(f"  {text}\n") == key
    assert text not in repr(key) and key.secret.hex() not in repr(key)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SWMKEY-1-",
        "SWMKEY-2-" + "A" * 43,
        "swmkey-1-" + "A" * 43,
        "SWMKEY-1-" + "A" * 42,
        "SWMKEY-1-" + "A" * 44,
        "SWMKEY-1-" + "A" * 42 + "=",
        "SWMKEY-1-" + "A" * 42 + "B",  # non-canonical: stray low bits
        "SWMKEY-1-" + "A" * 42 + "*",
        "SWMTKN-1-" + "A" * 43,
    ],
)
def test_malformed_unlock_keys(text: str) -> None:
    with pytest.raises(InvalidUnlockKey, match="^invalid unlock key"):
        UnlockKey.parse(text)


@given(st.one_of(st.text(max_size=80), st.binary(max_size=80), st.integers(), st.none(), st.lists(st.text())))
@settings(max_examples=300)
def test_unlock_key_parser_raises_only_its_own_error(value: object) -> None:
    try:
        UnlockKey.parse(value)
    except InvalidUnlockKey:
        pass


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-", max_size=60))
def test_unlock_key_parser_near_misses(suffix: str) -> None:
    try:
        key = UnlockKey.parse("SWMKEY-1-" + suffix)
    except InvalidUnlockKey:
        return
    assert str(key) == "SWMKEY-1-" + suffix
