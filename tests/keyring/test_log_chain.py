"""The log chain MAC recipe: vectors from the documented layout, binding of every field, rotation."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from raftstore.keyring import (
    CHAIN_START,
    CHAIN_TAG_SIZE,
    DataKey,
    InvalidRecord,
    Keyring,
    LogChain,
    chain_key,
    chain_tag,
)

VECTORS = Path(__file__).parent.parent / "vectors" / "log_chain.json"
CLUSTER = "7adsui4qspy8yfv1w0sknl048"
SECRET = bytes.fromhex("00112233445566778899aabbccddeeff" * 2)
CASES = [  # key id, index, term, previous, record
    (1, 1, 1, CHAIN_START, b""),
    (9, 42, 7, bytes(range(16)), b"\x04" + bytes(range(40))),
    (2**32 - 1, 2**64 - 1, 2**64 - 1, b"\xff" * 16, b"x" * 1000),
]


def _documented(secret: bytes, cluster_id: str, key_id: int, index: int, term: int, previous: bytes, record: bytes) -> bytes:
    """The tag exactly as the _log_chain docstring lays it out, computed independently of it."""
    mac_key = HKDF(hashes.SHA256(), 32, cluster_id.encode(), b"raftstore log chain").derive(secret)
    message = (
        b"raftstore-log-chain"
        + key_id.to_bytes(4, "big")
        + index.to_bytes(8, "big")
        + term.to_bytes(8, "big")
        + previous
        + record
    )
    return hashlib.blake2b(message, key=mac_key, digest_size=16).digest()


def _make_vectors() -> list[dict[str, object]]:
    out = []
    for key_id, index, term, previous, record in CASES:
        key = DataKey(key_id, SECRET)
        out.append(
            {
                "key_id": key_id,
                "key": SECRET.hex(),
                "cluster_id": CLUSTER,
                "index": index,
                "term": term,
                "previous": previous.hex(),
                "record": record.hex(),
                "chain_key": chain_key(key, CLUSTER).hex(),
                "tag": chain_tag(chain_key(key, CLUSTER), key_id, index, term, previous, record).hex(),
            }
        )
    return out


def test_vectors() -> None:
    """A recipe change fails here loudly. RAFTSTORE_REWRITE_VECTORS=1 rewrites the file (think twice)."""
    if os.environ.get("RAFTSTORE_REWRITE_VECTORS") == "1":
        VECTORS.write_text(json.dumps(_make_vectors(), indent=2) + "\n")
    vectors = json.loads(VECTORS.read_text())
    assert len(vectors) == len(CASES)
    for v in vectors:
        secret, previous, record = bytes.fromhex(v["key"]), bytes.fromhex(v["previous"]), bytes.fromhex(v["record"])
        expected = _documented(secret, v["cluster_id"], v["key_id"], v["index"], v["term"], previous, record)
        assert expected.hex() == v["tag"]
        key = DataKey(v["key_id"], secret)
        assert chain_key(key, v["cluster_id"]).hex() == v["chain_key"]
        ring = Keyring((key,), key.key_id)
        chain = LogChain(lambda: ring, v["cluster_id"])
        assert chain.sign(v["index"], v["term"], previous, record) == (v["key_id"], expected)
        chain.check(v["key_id"], v["index"], v["term"], previous, record, expected)


RING = Keyring.generate()
CHAIN = LogChain(lambda: RING, CLUSTER)


@pytest.mark.parametrize(
    "change",
    ["index", "term", "previous", "record", "key id", "cluster", "tag"],
)
def test_every_field_is_bound(change: str) -> None:
    key_id, tag = CHAIN.sign(5, 2, CHAIN_START, b"record")
    assert len(tag) == CHAIN_TAG_SIZE
    args = {"key_id": key_id, "index": 5, "term": 2, "previous": CHAIN_START, "record": b"record", "tag": tag}
    chain = CHAIN
    if change == "index":
        args["index"] = 6
    elif change == "term":
        args["term"] = 3
    elif change == "previous":
        args["previous"] = b"\x01" + CHAIN_START[1:]
    elif change == "record":
        args["record"] = b"recorD"
    elif change == "tag":
        args["tag"] = bytes([tag[0] ^ 1]) + tag[1:]
    elif change == "cluster":
        chain = LogChain(lambda: RING, "another-cluster")
    elif change == "key id":
        ring = RING.rotated()
        chain = LogChain(lambda: ring, CLUSTER)
        args["key_id"] = ring.active_id
    with pytest.raises(InvalidRecord, match="chain MAC mismatch"):
        chain.check(**args)


def test_rotation_signs_with_the_new_term_and_still_checks_the_old() -> None:
    holder = [RING]
    chain = LogChain(lambda: holder[0], CLUSTER)
    old_id, old_tag = chain.sign(1, 1, CHAIN_START, b"a")
    holder[0] = RING.rotated()
    new_id, new_tag = chain.sign(2, 1, old_tag, b"b")
    assert new_id == old_id + 1
    chain.check(old_id, 1, 1, CHAIN_START, b"a", old_tag)
    chain.check(new_id, 2, 1, old_tag, b"b", new_tag)
    holder[0] = holder[0].without([old_id])
    with pytest.raises(InvalidRecord, match=f"chained under unknown key id {old_id}"):
        chain.check(old_id, 1, 1, CHAIN_START, b"a", old_tag)


def test_the_chain_key_is_not_the_dek() -> None:
    key = RING.active
    assert chain_key(key, CLUSTER) != key.secret
    assert chain_key(key, CLUSTER) != chain_key(key, "other")


def test_out_of_range_fields_are_refused() -> None:
    mac_key = chain_key(RING.active, CLUSTER)
    for args in ((0, 1, 1, CHAIN_START), (1, -1, 1, CHAIN_START), (1, 1, 2**64, CHAIN_START), (1, 1, 1, b"short")):
        with pytest.raises(ValueError):
            chain_tag(mac_key, *args, b"")
