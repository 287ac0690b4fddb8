"""Sealed records: round trips, tamper detection at every byte, AAD binding, vectors."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

from raftstore.keyring import (
    HEADER_SIZE,
    RECORD_VERSION,
    Algorithm,
    DataKey,
    InvalidRecord,
    Keyring,
    RecordKind,
    entry_context,
    open_record,
    record_key_id,
    seal,
    snapshot_chunk_context,
    snapshot_context,
)
from raftstore.keyring import _seal
from raftstore.keyring._seal import _seal_with_nonce

VECTORS = Path(__file__).parent.parent / "vectors" / "seal.json"
SECRET = bytes(range(32))
KEYS = {a: DataKey(7, SECRET, a) for a in Algorithm}
CLUSTER = "0123456789abcdefghijklmno"
CONTEXT = entry_context(b"\x01" * 16)
FAILED = "^sealed record failed to open$"


def _fails(key: object, kind: RecordKind, cluster: str, context: bytes, record: bytes) -> bool:
    try:
        open_record(key, kind, cluster, context, record)  # type: ignore[arg-type]
    except InvalidRecord:
        return True
    return False


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize("algorithm", list(Algorithm))
@given(plaintext=st.binary(max_size=2048), kind=st.sampled_from(RecordKind), context=st.binary(max_size=64))
@settings(max_examples=60, deadline=None)
def test_round_trip(algorithm: Algorithm, plaintext: bytes, kind: RecordKind, context: bytes) -> None:
    key = KEYS[algorithm]
    record = seal(key, kind, CLUSTER, context, plaintext)
    assert len(record) == HEADER_SIZE + len(plaintext) + 16
    assert record[0] == RECORD_VERSION and record[1] == algorithm
    assert record_key_id(record) == 7
    assert open_record(key, kind, CLUSTER, context, record) == plaintext
    assert open_record(key, kind, CLUSTER, context, bytearray(record)) == plaintext
    assert open_record(key, kind, CLUSTER, context, memoryview(record)) == plaintext


def test_nonce_is_fresh_every_time() -> None:
    key = KEYS[Algorithm.AES_256_GCM]
    records = [seal(key, RecordKind.ENTRY, CLUSTER, CONTEXT, b"same") for _ in range(200)]
    assert len({r[6:HEADER_SIZE] for r in records}) == 200


def test_seal_and_its_vector_twin_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """``seal`` inlines ``_seal_with_nonce`` for speed; they must produce the same bytes."""
    nonce = bytes(range(12))
    monkeypatch.setattr(_seal.os, "urandom", lambda n: nonce[:n])
    for key in KEYS.values():
        for kind in RecordKind:
            assert seal(key, kind, CLUSTER, CONTEXT, b"pt") == _seal_with_nonce(key, kind, CLUSTER, CONTEXT, b"pt", nonce)


def test_int_kinds_and_enum_kinds_are_the_same_place() -> None:
    key = KEYS[Algorithm.AES_256_GCM]
    record = seal(key, 2, CLUSTER, CONTEXT, b"x")  # type: ignore[arg-type]
    assert open_record(key, RecordKind.SNAPSHOT, CLUSTER, CONTEXT, record) == b"x"
    with pytest.raises(ValueError):
        seal(key, 9, CLUSTER, CONTEXT, b"x")  # type: ignore[arg-type]


# ------------------------------------------------------------- tamper evidence


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_every_value_of_every_byte_is_tamper_evident(algorithm: Algorithm) -> None:
    key = KEYS[algorithm]
    record = seal(key, RecordKind.ENTRY, CLUSTER, CONTEXT, b"worth it")
    for offset in range(len(record)):
        for value in range(256):
            if value == record[offset]:
                continue
            tampered = record[:offset] + bytes([value]) + record[offset + 1 :]
            assert _fails(key, RecordKind.ENTRY, CLUSTER, CONTEXT, tampered), (offset, value)


@pytest.mark.parametrize("algorithm", list(Algorithm))
@given(data=st.data())
@settings(max_examples=150, deadline=None)
def test_any_single_bit_flip_fails(algorithm: Algorithm, data: st.DataObject) -> None:
    key = KEYS[algorithm]
    plaintext = data.draw(st.binary(max_size=64))
    record = seal(key, RecordKind.SNAPSHOT, CLUSTER, snapshot_context(5, 2), plaintext)
    region = data.draw(st.sampled_from(["header", "nonce", "body"]))
    low, high = {"header": (0, 6), "nonce": (6, HEADER_SIZE), "body": (HEADER_SIZE, len(record))}[region]
    bit = data.draw(st.integers(low * 8, high * 8 - 1))
    tampered = bytearray(record)
    tampered[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(InvalidRecord):
        open_record(key, RecordKind.SNAPSHOT, CLUSTER, snapshot_context(5, 2), bytes(tampered))


def test_truncated_and_extended_records_fail() -> None:
    key = KEYS[Algorithm.AES_256_GCM]
    record = seal(key, RecordKind.ENTRY, CLUSTER, CONTEXT, b"payload")
    for cut in range(len(record)):
        with pytest.raises(InvalidRecord, match=FAILED):
            open_record(key, RecordKind.ENTRY, CLUSTER, CONTEXT, record[:cut])
    for extra in (b"\0", b"\0" * 16, record):
        with pytest.raises(InvalidRecord, match=FAILED):
            open_record(key, RecordKind.ENTRY, CLUSTER, CONTEXT, record + extra)


@pytest.mark.parametrize("record", [None, "text", 42, [1, 2, 3]])
def test_a_record_that_is_not_bytes_is_invalid(record: object) -> None:
    with pytest.raises(InvalidRecord, match=FAILED):
        open_record(KEYS[Algorithm.AES_256_GCM], RecordKind.ENTRY, CLUSTER, CONTEXT, record)  # type: ignore[arg-type]
    with pytest.raises(InvalidRecord, match=FAILED):
        record_key_id(record)  # type: ignore[arg-type]


@given(st.binary(max_size=80))
@settings(max_examples=200)
def test_garbage_raises_only_invalid_record(garbage: bytes) -> None:
    ring = Keyring((KEYS[Algorithm.AES_256_GCM],), 7)
    assert _fails(ring, RecordKind.ENTRY, CLUSTER, CONTEXT, garbage)


# ------------------------------------------------------------- moves (the AAD)


@pytest.mark.parametrize(
    "kind,cluster,context",
    [
        (RecordKind.SNAPSHOT, CLUSTER, CONTEXT),  # another kind
        (RecordKind.KEYRING, CLUSTER, CONTEXT),
        (RecordKind.NODE_KEY, CLUSTER, CONTEXT),
        (RecordKind.ENTRY, "0123456789abcdefghijklmnp", CONTEXT),  # another cluster
        (RecordKind.ENTRY, "", CONTEXT),
        (RecordKind.ENTRY, CLUSTER, entry_context(b"\x02" * 16)),  # another position
        (RecordKind.ENTRY, CLUSTER, b""),
        (RecordKind.ENTRY, CLUSTER, CONTEXT + b"\0"),
        (RecordKind.ENTRY, CLUSTER, snapshot_context(1, 1)),
        (RecordKind.ENTRY, CLUSTER, snapshot_chunk_context(1, 1, 0, False)),
    ],
)
@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_moved_record_fails(algorithm: Algorithm, kind: RecordKind, cluster: str, context: bytes) -> None:
    key = KEYS[algorithm]
    record = seal(key, RecordKind.ENTRY, CLUSTER, CONTEXT, b"bound to its place")
    with pytest.raises(InvalidRecord, match=FAILED):
        open_record(key, kind, cluster, context, record)


def test_length_prefixes_keep_cluster_and_context_apart() -> None:
    """Shifting bytes between the cluster id and the context must not keep the AAD."""
    key = KEYS[Algorithm.AES_256_GCM]
    record = seal(key, RecordKind.ENTRY, "ab", b"cd", b"x")
    for cluster, context in (("a", b"bcd"), ("abc", b"d"), ("abcd", b""), ("", b"abcd")):
        assert _fails(key, RecordKind.ENTRY, cluster, context, record)


def test_relabelled_key_id_fails_even_with_the_same_secret() -> None:
    """The key id is in the AAD: a record cannot be moved to another term, even one with equal bytes."""
    one, two = DataKey(1, SECRET), DataKey(2, SECRET)
    record = seal(one, RecordKind.ENTRY, CLUSTER, CONTEXT, b"term one")
    moved = record[:2] + struct.pack(">I", 2) + record[6:]
    assert record_key_id(moved) == 2
    with pytest.raises(InvalidRecord, match=FAILED):
        open_record(two, RecordKind.ENTRY, CLUSTER, CONTEXT, moved)
    with pytest.raises(InvalidRecord, match=FAILED):
        open_record(Keyring((one, two), 2), RecordKind.ENTRY, CLUSTER, CONTEXT, moved)


def test_relabelled_algorithm_fails() -> None:
    aes, chacha = DataKey(1, SECRET, Algorithm.AES_256_GCM), DataKey(1, SECRET, Algorithm.CHACHA20_POLY1305)
    record = seal(aes, RecordKind.ENTRY, CLUSTER, CONTEXT, b"x")
    moved = record[:1] + bytes([Algorithm.CHACHA20_POLY1305]) + record[2:]
    for key in (aes, chacha):
        with pytest.raises(InvalidRecord, match=FAILED):
            open_record(key, RecordKind.ENTRY, CLUSTER, CONTEXT, moved)


@given(data=st.data())
@settings(max_examples=150)
def test_any_single_bit_change_of_cluster_or_context_fails(data: st.DataObject) -> None:
    key = KEYS[Algorithm.CHACHA20_POLY1305]
    record = seal(key, RecordKind.ENTRY, CLUSTER, CONTEXT, b"bound")
    which = data.draw(st.sampled_from(["cluster", "context"]))
    original = CLUSTER.encode() if which == "cluster" else CONTEXT
    bit = data.draw(st.integers(0, len(original) * 8 - 1))
    changed = bytearray(original)
    changed[bit // 8] ^= 1 << (bit % 8)
    cluster = changed.decode("latin-1") if which == "cluster" else CLUSTER
    context = bytes(changed) if which == "context" else CONTEXT
    assert _fails(key, RecordKind.ENTRY, cluster, context, record)


def test_snapshot_context_binds_index_and_term() -> None:
    key = KEYS[Algorithm.AES_256_GCM]
    record = seal(key, RecordKind.SNAPSHOT, CLUSTER, snapshot_context(10, 3), b"state")
    assert open_record(key, RecordKind.SNAPSHOT, CLUSTER, snapshot_context(10, 3), record) == b"state"
    for index, term in ((11, 3), (10, 4), (3, 10), (0, 0)):
        with pytest.raises(InvalidRecord):
            open_record(key, RecordKind.SNAPSHOT, CLUSTER, snapshot_context(index, term), record)


# ------------------------------------------------------------------ key choice


def test_key_id_selects_the_key_and_unknown_ids_are_named() -> None:
    ring = Keyring.generate().rotated()
    old = seal(ring.get_key(1), RecordKind.ENTRY, CLUSTER, CONTEXT, b"old")
    new = seal(ring.active, RecordKind.ENTRY, CLUSTER, CONTEXT, b"new")
    assert open_record(ring, RecordKind.ENTRY, CLUSTER, CONTEXT, old) == b"old"
    assert open_record(ring, RecordKind.ENTRY, CLUSTER, CONTEXT, new) == b"new"
    with pytest.raises(InvalidRecord, match="^sealed under unknown key id 1$"):
        open_record(ring.without([1]), RecordKind.ENTRY, CLUSTER, CONTEXT, old)
    with pytest.raises(InvalidRecord, match="^sealed under unknown key id 2$"):
        open_record(ring.get_key(1), RecordKind.ENTRY, CLUSTER, CONTEXT, new)
    # The same key id with another secret is a forgery, not a lookup miss.
    with pytest.raises(InvalidRecord, match=FAILED):
        open_record(DataKey(2, bytes(32)), RecordKind.ENTRY, CLUSTER, CONTEXT, new)


def test_keys_are_never_tried_in_turn() -> None:
    """Only the term the header names is asked for."""
    asked: list[int] = []
    ring = Keyring.generate().rotated().rotated()

    class Source:
        def get_key(self, key_id: int) -> DataKey:
            asked.append(key_id)
            return ring.get_key(key_id)

    record = seal(ring.get_key(2), RecordKind.ENTRY, CLUSTER, CONTEXT, b"x")
    assert open_record(Source(), RecordKind.ENTRY, CLUSTER, CONTEXT, record) == b"x"
    tampered = record[:-1] + bytes([record[-1] ^ 1])
    with pytest.raises(InvalidRecord):
        open_record(Source(), RecordKind.ENTRY, CLUSTER, CONTEXT, tampered)
    assert asked == [2, 2]


def test_a_key_source_returning_another_term_is_refused() -> None:
    class Liar:
        def get_key(self, key_id: int) -> DataKey:
            return DataKey(key_id + 1, SECRET)

    record = seal(DataKey(1, SECRET), RecordKind.ENTRY, CLUSTER, CONTEXT, b"x")
    with pytest.raises(InvalidRecord, match=FAILED):
        open_record(Liar(), RecordKind.ENTRY, CLUSTER, CONTEXT, record)


def test_record_key_id() -> None:
    record = seal(DataKey(2**32 - 1, SECRET), RecordKind.ENTRY, CLUSTER, CONTEXT, b"")
    assert record_key_id(record) == 2**32 - 1
    assert record_key_id(bytearray(record)) == 2**32 - 1
    with pytest.raises(InvalidRecord, match=FAILED):
        record_key_id(record[: HEADER_SIZE + 15])
    with pytest.raises(InvalidRecord, match=FAILED):
        record_key_id(bytes([RECORD_VERSION + 1]) + record[1:])


# ------------------------------------------------------------------ data keys


def test_data_key_validation() -> None:
    for key_id in (0, -1, 2**32, True, 1.0, "1"):
        with pytest.raises(ValueError):
            DataKey(key_id, SECRET)  # type: ignore[arg-type]
    for secret in (b"", SECRET[:31], SECRET + b"\0", bytearray(SECRET), SECRET.hex()):
        with pytest.raises(ValueError):
            DataKey(1, secret)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        DataKey(1, SECRET, 3)  # type: ignore[arg-type]
    assert DataKey(1, SECRET, 2).algorithm is Algorithm.CHACHA20_POLY1305  # type: ignore[arg-type]


def test_data_key_equality_hash_and_repr() -> None:
    key = DataKey.generate(3)
    assert key == DataKey(3, key.secret) and hash(key) == hash(DataKey(3, key.secret))
    assert key != DataKey(3, bytes(32)) and key != DataKey(4, key.secret)
    assert key != DataKey(3, key.secret, Algorithm.CHACHA20_POLY1305)
    assert key.secret.hex() not in repr(key) and str(list(key.secret)) not in repr(key) and "redacted" in repr(key)
    assert repr(key.secret) not in repr(key) and repr(key.secret) not in str(key)
    with pytest.raises(AttributeError):
        key.secret = bytes(32)  # type: ignore[misc]


def test_contexts() -> None:
    assert entry_context(b"\x01" * 16) != entry_context(b"\x02" * 16)
    for bad in (b"short", b"\0" * 17, "x" * 16, bytearray(16)):
        with pytest.raises(ValueError):
            entry_context(bad)  # type: ignore[arg-type]
    assert snapshot_context(2**64 - 1, 0) != snapshot_context(0, 2**64 - 1)
    for index, term in ((-1, 0), (0, 2**64), (True, 1)):
        with pytest.raises(ValueError):
            snapshot_context(index, term)
    assert entry_context(b"\0" * 16) != snapshot_context(0, 0)


# ------------------------------------------------------------------ vectors

VECTOR_CASES = [
    ("entry", RecordKind.ENTRY, bytes.fromhex("000102030405060708090a0b0c0d0e0f"), b"put a=1"),
    ("snapshot", RecordKind.SNAPSHOT, None, b""),
    ("snapshot-chunk", RecordKind.SNAPSHOT, None, b"chunk"),
    ("keyring", RecordKind.KEYRING, None, bytes(range(64))),
    ("node-key", RecordKind.NODE_KEY, None, b"-----BEGIN PRIVATE KEY-----\n"),
]


def _documented_aad(algorithm: int, key_id: int, kind: int, cluster_id: str, context: bytes) -> bytes:
    """The AAD exactly as the _seal docstring lays it out, packed independently of _seal."""
    cluster = cluster_id.encode()
    return (
        b"raftstore-seal"
        + bytes([1, algorithm])
        + key_id.to_bytes(4, "big")
        + bytes([kind])
        + len(cluster).to_bytes(2, "big")
        + cluster
        + len(context).to_bytes(4, "big")
        + context
    )


def _make_vectors() -> list[dict[str, object]]:
    key_bytes = bytes.fromhex("00112233445566778899aabbccddeeff" * 2)
    cluster_id, nonce = "7adsui4qspy8yfv1w0sknl048", bytes(range(12))
    vectors = []
    for algorithm in Algorithm:
        key = DataKey(9, key_bytes, algorithm)
        for name, kind, entry_id, plaintext in VECTOR_CASES:
            if kind is RecordKind.ENTRY:
                context = entry_context(entry_id)  # type: ignore[arg-type]
            elif name == "snapshot-chunk":
                context = snapshot_chunk_context(42, 7, 3, True)
            elif kind is RecordKind.SNAPSHOT:
                context = snapshot_context(42, 7)
            else:
                context = name.encode()
            vectors.append(
                {
                    "name": f"{algorithm.name}/{name}",
                    "algorithm": algorithm.name,
                    "key_id": 9,
                    "key": key_bytes.hex(),
                    "kind": kind.name,
                    "cluster_id": cluster_id,
                    "context": context.hex(),
                    "nonce": nonce.hex(),
                    "plaintext": plaintext.hex(),
                    "aad": _documented_aad(algorithm, 9, kind, cluster_id, context).hex(),
                    "record": _seal_with_nonce(key, kind, cluster_id, context, plaintext, nonce).hex(),
                }
            )
    return vectors


def test_vectors() -> None:
    """A format change fails here loudly. RAFTSTORE_REWRITE_VECTORS=1 rewrites the file (think twice)."""
    if os.environ.get("RAFTSTORE_REWRITE_VECTORS") == "1":
        VECTORS.write_text(json.dumps(_make_vectors(), indent=2) + "\n")
    vectors = json.loads(VECTORS.read_text())
    assert {v["algorithm"] for v in vectors} == {a.name for a in Algorithm}
    assert {v["kind"] for v in vectors} == {k.name for k in RecordKind}
    for vector in vectors:
        algorithm = Algorithm[vector["algorithm"]]
        secret, nonce = bytes.fromhex(vector["key"]), bytes.fromhex(vector["nonce"])
        key = DataKey(vector["key_id"], secret, algorithm)
        kind = RecordKind[vector["kind"]]
        context, plaintext = bytes.fromhex(vector["context"]), bytes.fromhex(vector["plaintext"])
        aad = _documented_aad(algorithm, vector["key_id"], kind, vector["cluster_id"], context)
        assert aad.hex() == vector["aad"], vector["name"]
        # The documented layout, sealed with the raw AEAD, is the record...
        raw = (AESGCM if algorithm is Algorithm.AES_256_GCM else ChaCha20Poly1305)(secret)
        header = bytes([1, algorithm]) + struct.pack(">I", vector["key_id"]) + nonce
        assert (header + raw.encrypt(nonce, plaintext, aad)).hex() == vector["record"], vector["name"]
        # ...and so is what _seal makes, and it opens.
        record = _seal_with_nonce(key, kind, vector["cluster_id"], context, plaintext, nonce)
        assert record.hex() == vector["record"], vector["name"]
        assert open_record(key, kind, vector["cluster_id"], context, bytes.fromhex(vector["record"])) == plaintext


def test_vector_nonce_must_be_12_bytes() -> None:
    with pytest.raises(ValueError):
        _seal_with_nonce(KEYS[Algorithm.AES_256_GCM], RecordKind.ENTRY, CLUSTER, CONTEXT, b"", b"\0" * 11)


def test_keys_copy_as_themselves_and_never_pickle() -> None:
    import copy
    import pickle

    key = DataKey.generate(1)
    assert copy.copy(key) is key and copy.deepcopy(key) is key
    ring = Keyring((key,), 1)
    assert copy.deepcopy(ring) == ring
    with pytest.raises(TypeError, match="never pickled"):
        pickle.dumps(key)
    with pytest.raises(TypeError, match="never pickled"):
        pickle.dumps(ring)


def test_snapshot_chunk_context_layout() -> None:
    """Index, term and number big-endian, then the final flag: packed independently of _seal."""
    expected = b"snapshot-chunk:" + (42).to_bytes(8, "big") + (7).to_bytes(8, "big") + (3).to_bytes(8, "big") + b"\x01"
    assert snapshot_chunk_context(42, 7, 3, True) == expected
    assert snapshot_chunk_context(42, 7, 3, False) == expected[:-1] + b"\x00"


def test_snapshot_chunk_contexts_are_all_distinct() -> None:
    """A chunk cannot pass for another chunk, for the last one, or for a whole snapshot."""
    places = {snapshot_context(5, 2)}
    for number in range(4):
        for final in (False, True):
            places.add(snapshot_chunk_context(5, 2, number, final))
    places.add(snapshot_chunk_context(5, 3, 0, False))
    places.add(snapshot_chunk_context(6, 2, 0, False))
    assert len(places) == 11


@pytest.mark.parametrize("bad", [-1, 2**64, True, 1.0, "1"])
def test_snapshot_chunk_context_refuses_bad_numbers(bad: object) -> None:
    with pytest.raises(ValueError):
        snapshot_chunk_context(1, 1, bad, False)  # type: ignore[arg-type]
