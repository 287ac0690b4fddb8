"""Sealed records: round trips, tamper detection at every byte, AAD binding, vectors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftstore.keyring import (
    HEADER_SIZE,
    Algorithm,
    DataKey,
    InvalidRecord,
    Keyring,
    RecordKind,
    entry_context,
    open_record,
    record_key_id,
    seal,
    snapshot_context,
)
from raftstore.keyring._seal import _seal_with_nonce

VECTORS = Path(__file__).parent.parent / "vectors" / "seal.json"
KEYS = {a: DataKey(7, bytes(range(32)), a) for a in Algorithm}
CLUSTER = "0123456789abcdefghijklmno"
CONTEXT = entry_context(b"\x01" * 16)


@pytest.mark.parametrize("algorithm", list(Algorithm))
@given(plaintext=st.binary(max_size=2048))
@settings(max_examples=50)
def test_round_trip(algorithm: Algorithm, plaintext: bytes) -> None:
    key = KEYS[algorithm]
    record = seal(key, RecordKind.ENTRY, CLUSTER, CONTEXT, plaintext)
    assert len(record) == HEADER_SIZE + len(plaintext) + 16
    assert record_key_id(record) == 7
    assert open_record(key, RecordKind.ENTRY, CLUSTER, CONTEXT, record) == plaintext


def test_nonce_is_fresh_every_time() -> None:
    key = KEYS[Algorithm.AES_256_GCM]
    records = {seal(key, RecordKind.ENTRY, CLUSTER, CONTEXT, b"same") for _ in range(100)}
    assert len(records) == 100


@pytest.mark.parametrize("algorithm", list(Algorithm))
@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_every_byte_is_tamper_evident(algorithm: Algorithm, mask: int) -> None:
    key = KEYS[algorithm]
    record = seal(key, RecordKind.ENTRY, CLUSTER, CONTEXT, b"a record worth protecting")
    for offset in range(len(record)):
        tampered = bytearray(record)
        tampered[offset] ^= mask
        with pytest.raises(InvalidRecord):
            open_record(key, RecordKind.ENTRY, CLUSTER, CONTEXT, bytes(tampered))


@given(data=st.data())
@settings(max_examples=200)
def test_any_single_bit_flip_fails(data: st.DataObject) -> None:
    key = KEYS[Algorithm.AES_256_GCM]
    plaintext = data.draw(st.binary(min_size=0, max_size=64))
    record = seal(key, RecordKind.SNAPSHOT, CLUSTER, snapshot_context(5, 2), plaintext)
    bit = data.draw(st.integers(0, len(record) * 8 - 1))
    tampered = bytearray(record)
    tampered[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(InvalidRecord):
        open_record(key, RecordKind.SNAPSHOT, CLUSTER, snapshot_context(5, 2), bytes(tampered))


def test_truncated_and_extended_records_fail() -> None:
    key = KEYS[Algorithm.AES_256_GCM]
    record = seal(key, RecordKind.ENTRY, CLUSTER, CONTEXT, b"payload")
    for cut in range(len(record)):
        with pytest.raises(InvalidRecord):
            open_record(key, RecordKind.ENTRY, CLUSTER, CONTEXT, record[:cut])
    with pytest.raises(InvalidRecord):
        open_record(key, RecordKind.ENTRY, CLUSTER, CONTEXT, record + b"\0")


@pytest.mark.parametrize(
    "kind,cluster,context",
    [
        (RecordKind.SNAPSHOT, CLUSTER, CONTEXT),  # another kind
        (RecordKind.KEYRING, CLUSTER, CONTEXT),
        (RecordKind.ENTRY, "another-cluster-id-000000", CONTEXT),  # another cluster
        (RecordKind.ENTRY, CLUSTER, entry_context(b"\x02" * 16)),  # another position
        (RecordKind.ENTRY, CLUSTER, snapshot_context(1, 1)),
    ],
)
def test_moved_record_fails(kind: RecordKind, cluster: str, context: bytes) -> None:
    key = KEYS[Algorithm.AES_256_GCM]
    record = seal(key, RecordKind.ENTRY, CLUSTER, CONTEXT, b"bound to its place")
    with pytest.raises(InvalidRecord):
        open_record(key, kind, cluster, context, record)


def test_snapshot_context_binds_index_and_term() -> None:
    key = KEYS[Algorithm.AES_256_GCM]
    record = seal(key, RecordKind.SNAPSHOT, CLUSTER, snapshot_context(10, 3), b"state")
    for index, term in ((11, 3), (10, 4), (3, 10)):
        with pytest.raises(InvalidRecord):
            open_record(key, RecordKind.SNAPSHOT, CLUSTER, snapshot_context(index, term), record)


def test_key_id_selects_the_key_and_unknown_ids_are_named() -> None:
    ring = Keyring.generate().rotated()
    old = seal(ring.get_key(1), RecordKind.ENTRY, CLUSTER, CONTEXT, b"old")
    new = seal(ring.active, RecordKind.ENTRY, CLUSTER, CONTEXT, b"new")
    assert open_record(ring, RecordKind.ENTRY, CLUSTER, CONTEXT, old) == b"old"
    assert open_record(ring, RecordKind.ENTRY, CLUSTER, CONTEXT, new) == b"new"
    with pytest.raises(InvalidRecord, match="unknown key id 1"):
        open_record(ring.without([1]), RecordKind.ENTRY, CLUSTER, CONTEXT, old)
    # The same key id with another secret is a forgery, not a lookup miss.
    impostor = DataKey(2, bytes(32))
    with pytest.raises(InvalidRecord, match="failed to open"):
        open_record(impostor, RecordKind.ENTRY, CLUSTER, CONTEXT, new)


def test_entry_context_requires_128_bits() -> None:
    with pytest.raises(ValueError):
        entry_context(b"short")


def test_data_key_repr_hides_secret() -> None:
    key = DataKey.generate(3)
    assert key.secret.hex() not in repr(key) and "redacted" in repr(key)


def test_vectors() -> None:
    vectors = json.loads(VECTORS.read_text())
    assert len(vectors) >= 4
    for vector in vectors:
        key = DataKey(vector["key_id"], bytes.fromhex(vector["key"]), Algorithm[vector["algorithm"]])
        kind = RecordKind[vector["kind"]]
        context = bytes.fromhex(vector["context"])
        record = _seal_with_nonce(
            key, kind, vector["cluster_id"], context, bytes.fromhex(vector["plaintext"]), bytes.fromhex(vector["nonce"])
        )
        assert record.hex() == vector["record"], vector["name"]
        assert open_record(key, kind, vector["cluster_id"], context, record) == bytes.fromhex(vector["plaintext"])


@given(data=st.data())
@settings(max_examples=200)
def test_any_single_bit_change_of_the_aad_fails(data: st.DataObject) -> None:
    key = KEYS[Algorithm.CHACHA20_POLY1305]
    record = seal(key, RecordKind.ENTRY, CLUSTER, CONTEXT, b"bound")
    which = data.draw(st.sampled_from(["cluster", "context"]))
    original = (CLUSTER.encode() if which == "cluster" else CONTEXT)
    bit = data.draw(st.integers(0, len(original) * 8 - 1))
    changed = bytearray(original)
    changed[bit // 8] ^= 1 << (bit % 8)
    cluster = changed.decode("latin-1") if which == "cluster" else CLUSTER
    context = bytes(changed) if which == "context" else CONTEXT
    with pytest.raises(InvalidRecord):
        open_record(key, RecordKind.ENTRY, cluster, context, record)
