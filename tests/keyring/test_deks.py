"""DEK keyrings, KEKs and wrapped keys."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftstore.keyring import (
    Algorithm,
    DataKey,
    InvalidRecord,
    KeyEncryptionKey,
    Keyring,
    RecordKind,
    UnlockKey,
    open_private_key,
    open_record,
    record_key_id,
    seal_private_key,
    unwrap_data_key,
    unwrap_keyring,
    wrap_data_key,
    wrap_keyring,
    wrapped_kek_version,
)

CLUSTER = "cluster000000000000000000"


def _tamper_each_byte(blob: bytes, mask: int = 0x40) -> list[bytes]:
    return [blob[:i] + bytes([blob[i] ^ mask]) + blob[i + 1 :] for i in range(len(blob))]


# ------------------------------------------------------------------ the keyring


def test_generate() -> None:
    ring = Keyring.generate()
    assert ring.key_ids == (1,) and ring.active_id == 1 and ring.active.algorithm is Algorithm.AES_256_GCM
    assert Keyring.generate(Algorithm.CHACHA20_POLY1305).active.algorithm is Algorithm.CHACHA20_POLY1305
    assert Keyring.generate().active != ring.active


def test_rotation_returns_a_new_keyring() -> None:
    ring = Keyring.generate()
    rotated = ring.rotated()
    assert ring.key_ids == (1,) and ring.active_id == 1  # unchanged
    assert rotated.key_ids == (1, 2) and rotated.active_id == 2
    assert rotated.get_key(1) == ring.get_key(1) and rotated.active != ring.active
    again = rotated.rotated(Algorithm.CHACHA20_POLY1305)
    assert again.active_id == 3 and again.active.algorithm is Algorithm.CHACHA20_POLY1305
    assert again.rotated().active.algorithm is Algorithm.CHACHA20_POLY1305  # follows the active key
    # Term numbers follow the highest id, even after older terms leave.
    assert again.without([1, 2]).rotated().key_ids == (3, 4)


def test_keyring_is_immutable() -> None:
    ring = Keyring.generate()
    with pytest.raises(dataclasses.FrozenInstanceError):
        ring.active_id = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ring.keys = ()  # type: ignore[misc]
    assert isinstance(ring.keys, tuple)
    keys = [DataKey.generate(2), DataKey.generate(1)]
    from_list = Keyring(keys, 1)  # type: ignore[arg-type]
    keys.append(DataKey.generate(3))
    assert from_list.key_ids == (1, 2)  # sorted, and a copy


def test_keyring_validation() -> None:
    with pytest.raises(ValueError):
        Keyring((), 1)
    with pytest.raises(ValueError):
        Keyring((DataKey.generate(1),), 2)
    with pytest.raises(ValueError):
        Keyring((DataKey.generate(1), DataKey.generate(1)), 1)
    with pytest.raises(TypeError):
        Keyring((b"\0" * 32,), 1)  # type: ignore[arg-type]


def test_get_key_names_the_unknown_id() -> None:
    ring = Keyring.generate()
    with pytest.raises(InvalidRecord, match="^sealed under unknown key id 5$"):
        ring.get_key(5)


def test_with_key_is_idempotent_and_refuses_conflicts() -> None:
    ring = Keyring.generate()
    key = DataKey.generate(2)
    added = ring.with_key(key)
    assert added.key_ids == (1, 2) and added.active_id == 1
    assert added.with_key(key) == added
    assert added.with_key(DataKey(2, key.secret)) == added  # an equal copy, as from a replayed entry
    assert ring.with_key(key, active=True).active_id == 2
    assert added.with_key(key, active=True).active_id == 2
    with pytest.raises(InvalidRecord):
        added.with_key(DataKey.generate(2))
    with pytest.raises(InvalidRecord):
        added.with_key(DataKey(2, key.secret, Algorithm.CHACHA20_POLY1305))


def test_without() -> None:
    ring = Keyring.generate().rotated().rotated()
    assert ring.without([1]).key_ids == (2, 3)
    assert ring.without([1, 2, 99]).key_ids == (3,)
    assert ring.without([]) == ring
    with pytest.raises(ValueError):
        ring.without([3])


def test_repr_hides_every_secret() -> None:
    ring = Keyring.generate().rotated()
    text = repr(ring) + str(ring)
    for key in ring.keys:
        assert key.secret.hex() not in text and repr(key.secret) not in text


def test_keyring_bytes_round_trip() -> None:
    ring = Keyring.generate().rotated(Algorithm.CHACHA20_POLY1305).rotated().without([1])
    copy = Keyring.from_bytes(ring.to_bytes())
    assert copy == ring and copy.active_id == ring.active_id
    assert [k.algorithm for k in copy.keys] == [k.algorithm for k in ring.keys]


@given(st.binary(max_size=200))
@settings(max_examples=300)
def test_keyring_from_arbitrary_bytes_raises_only_invalid_record(data: bytes) -> None:
    try:
        Keyring.from_bytes(data)
    except InvalidRecord:
        pass


_MSGPACK = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=8)
    | st.binary(max_size=40) | st.sampled_from(["active", "keys", b"\0" * 32]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["active", "keys", "v", "x"]), inner, max_size=3),
    max_leaves=12,
)


@given(_MSGPACK)
@settings(max_examples=300)
def test_keyring_from_any_msgpack_raises_only_invalid_record(value: object) -> None:
    try:
        Keyring.from_bytes(msgpack.packb(value, use_bin_type=True))
    except InvalidRecord:
        pass


@pytest.mark.parametrize(
    "value",
    [
        {"active": 1, "keys": [[1, 1, bytes(32)]], "extra": 0},
        {"active": 1, "keys": [[1, 1, 32]]},  # an int is not a secret (bytes(32) would make one)
        {"active": "1", "keys": [[1, 1, bytes(32)]]},
        {"active": True, "keys": [[1, 1, bytes(32)]]},
        {"active": 1, "keys": [[True, 1, bytes(32)]]},
        {"active": 1, "keys": [[1, 3, bytes(32)]]},
        {"active": 1, "keys": [[1, 1, bytes(31)]]},
        {"active": 1, "keys": [[1, 1, "0" * 32]]},
        {"active": 1, "keys": [[1, 1, bytes(32), 0]]},
        {"active": 2, "keys": [[1, 1, bytes(32)]]},
        {"active": 1, "keys": [[1, 1, bytes(32)], [1, 1, bytes(32)]]},
        {"active": 0, "keys": [[0, 1, bytes(32)]]},
        {"active": 1, "keys": []},
        [1, [[1, 1, bytes(32)]]],
    ],
)
def test_keyring_parsing_is_strict(value: object) -> None:
    with pytest.raises(InvalidRecord, match="^keyring is malformed$"):
        Keyring.from_bytes(msgpack.packb(value, use_bin_type=True))


def test_keyring_bytes_with_trailing_data_are_refused() -> None:
    with pytest.raises(InvalidRecord):
        Keyring.from_bytes(Keyring.generate().to_bytes() + b"\0")


# ------------------------------------------------------------------ KEKs


def _hkdf_sha256(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    """RFC 5869 for one block, written out here only to check the parameters independently."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def test_kek_from_unlock_key_is_the_documented_hkdf() -> None:
    key = UnlockKey(bytes(range(32)))
    kek = KeyEncryptionKey.from_unlock_key(key, CLUSTER, 4)
    assert kek.version == 4
    assert kek.secret == _hkdf_sha256(bytes(range(32)), CLUSTER.encode(), b"raftstore kek")


def test_kek_from_unlock_key_is_deterministic_and_salted_by_cluster() -> None:
    key = UnlockKey.generate()
    a = KeyEncryptionKey.from_unlock_key(key, CLUSTER, 1)
    assert a == KeyEncryptionKey.from_unlock_key(UnlockKey.parse(str(key)), CLUSTER, 1)
    assert a.secret != KeyEncryptionKey.from_unlock_key(key, "other-cluster", 1).secret
    assert a.secret != KeyEncryptionKey.from_unlock_key(UnlockKey.generate(), CLUSTER, 1).secret
    assert a != KeyEncryptionKey(2, a.secret)  # the version is part of its identity
    assert hash(a) == hash(KeyEncryptionKey(1, a.secret))
    assert a.secret.hex() not in repr(a) and repr(a.secret) not in repr(a) and "redacted" in repr(a)
    with pytest.raises(TypeError):
        KeyEncryptionKey.from_unlock_key(str(key), CLUSTER, 1)  # type: ignore[arg-type]


def test_kek_validation() -> None:
    assert KeyEncryptionKey.random().version == 1 and KeyEncryptionKey.random(7).version == 7
    assert KeyEncryptionKey.random().secret != KeyEncryptionKey.random().secret
    for version in (0, -1, 2**32, True):
        with pytest.raises(ValueError):
            KeyEncryptionKey(version, bytes(32))
    with pytest.raises(ValueError):
        KeyEncryptionKey(1, bytes(16))


# ------------------------------------------------------------------ wrapped keyrings


def test_wrap_unwrap_and_wrong_kek() -> None:
    ring = Keyring.generate().rotated()
    kek = KeyEncryptionKey.random(5)
    blob = wrap_keyring(ring, kek, CLUSTER)
    assert wrapped_kek_version(blob) == 5
    assert unwrap_keyring(blob, kek, CLUSTER) == ring
    assert ring.active.secret not in blob and ring.to_bytes() not in blob
    with pytest.raises(InvalidRecord, match="^sealed record failed to open$"):
        unwrap_keyring(blob, KeyEncryptionKey.random(5), CLUSTER)
    with pytest.raises(InvalidRecord, match="^sealed record failed to open$"):
        unwrap_keyring(blob, kek, "another-cluster")
    with pytest.raises(InvalidRecord, match="^sealed under unknown key id 5$"):
        unwrap_keyring(blob, KeyEncryptionKey(6, kek.secret), CLUSTER)  # another KEK version


def test_wrapped_with_an_unlock_key_opens_with_the_same_key_only() -> None:
    unlock = UnlockKey.generate()
    ring = Keyring.generate()
    blob = wrap_keyring(ring, KeyEncryptionKey.from_unlock_key(unlock, CLUSTER, 1), CLUSTER)
    again = KeyEncryptionKey.from_unlock_key(UnlockKey.parse(str(unlock)), CLUSTER, 1)
    assert unwrap_keyring(blob, again, CLUSTER) == ring
    with pytest.raises(InvalidRecord):
        unwrap_keyring(blob, KeyEncryptionKey.from_unlock_key(UnlockKey.generate(), CLUSTER, 1), CLUSTER)


def test_every_byte_of_a_wrapped_keyring_is_tamper_evident() -> None:
    kek = KeyEncryptionKey.random(1)
    blob = wrap_keyring(Keyring.generate(), kek, CLUSTER)
    for mask in (0x01, 0x80):
        for tampered in _tamper_each_byte(blob, mask):
            with pytest.raises(InvalidRecord):
                unwrap_keyring(tampered, kek, CLUSTER)
    for cut in range(len(blob)):
        with pytest.raises(InvalidRecord):
            unwrap_keyring(blob[:cut], kek, CLUSTER)


def test_wrapped_kek_version_of_garbage() -> None:
    with pytest.raises(InvalidRecord):
        wrapped_kek_version(b"not a record")


# ------------------------------------------------------------------ rotated DEKs


def test_rotated_dek_travels_sealed_under_the_previous_one() -> None:
    ring = Keyring.generate()
    new = DataKey.generate(2, Algorithm.CHACHA20_POLY1305)
    blob = wrap_data_key(new, ring.active, CLUSTER)
    assert new.secret not in blob
    assert blob.startswith(b"dek:\x00\x00\x00\x02") and record_key_id(blob[8:]) == 1
    unwrapped = unwrap_data_key(blob, ring, CLUSTER)
    assert unwrapped == new and unwrapped.algorithm is Algorithm.CHACHA20_POLY1305
    assert unwrap_data_key(blob, ring.active, CLUSTER) == new
    assert ring.with_key(unwrapped, active=True).active == new
    with pytest.raises(InvalidRecord):
        unwrap_data_key(blob, Keyring.generate(), CLUSTER)  # another term 1
    with pytest.raises(InvalidRecord):
        unwrap_data_key(blob, ring, "another-cluster")
    with pytest.raises(InvalidRecord, match="^sealed under unknown key id 1$"):
        unwrap_data_key(blob, Keyring((DataKey.generate(3),), 3), CLUSTER)


def test_every_byte_of_a_wrapped_dek_is_tamper_evident() -> None:
    ring = Keyring.generate()
    blob = wrap_data_key(DataKey.generate(2), ring.active, CLUSTER)
    for tampered in _tamper_each_byte(blob, 0x01):
        with pytest.raises(InvalidRecord):
            unwrap_data_key(tampered, ring, CLUSTER)
    for cut in range(len(blob)):
        with pytest.raises(InvalidRecord):
            unwrap_data_key(blob[:cut], ring, CLUSTER)


def test_a_wrapped_dek_cannot_be_relabelled_as_another_term() -> None:
    ring = Keyring.generate()
    blob = wrap_data_key(DataKey.generate(2), ring.active, CLUSTER)
    relabelled = b"dek:\x00\x00\x00\x03" + blob[8:]
    with pytest.raises(InvalidRecord):
        unwrap_data_key(relabelled, ring, CLUSTER)


def test_wrapped_things_do_not_open_as_each_other() -> None:
    kek = KeyEncryptionKey.random(1)
    dek_as_kek = DataKey(1, kek.secret)
    wrapped_keyring = wrap_keyring(Keyring.generate(), kek, CLUSTER)
    sealed_node_key = seal_private_key(b"-----BEGIN PRIVATE KEY-----\n", kek, CLUSTER)
    wrapped_dek = wrap_data_key(DataKey.generate(2), dek_as_kek, CLUSTER)
    with pytest.raises(InvalidRecord):
        unwrap_keyring(sealed_node_key, kek, CLUSTER)
    with pytest.raises(InvalidRecord):
        open_private_key(wrapped_keyring, kek, CLUSTER)
    with pytest.raises(InvalidRecord):
        unwrap_keyring(wrapped_dek[8:], kek, CLUSTER)
    with pytest.raises(InvalidRecord):
        unwrap_data_key(b"dek:\x00\x00\x00\x02" + wrapped_keyring, dek_as_kek, CLUSTER)
    with pytest.raises(InvalidRecord):
        open_record(kek._key, RecordKind.ENTRY, CLUSTER, b"keyring", wrapped_keyring)  # type: ignore[attr-defined]


# ------------------------------------------------------------------ node keys


def test_node_key_sealed_under_kek() -> None:
    kek = KeyEncryptionKey.random(3)
    pem = b"-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n"
    blob = seal_private_key(pem, kek, CLUSTER)
    assert b"PRIVATE KEY" not in blob and wrapped_kek_version(blob) == 3
    assert open_private_key(blob, kek, CLUSTER) == pem
    with pytest.raises(InvalidRecord):
        open_private_key(blob, KeyEncryptionKey.random(3), CLUSTER)
    with pytest.raises(InvalidRecord):
        open_private_key(blob, kek, "another-cluster")
    for tampered in _tamper_each_byte(blob):
        with pytest.raises(InvalidRecord):
            open_private_key(tampered, kek, CLUSTER)
