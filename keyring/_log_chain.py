"""Keyed chain MACs that bind each log entry on a manager's disk to its Raft index and term.

A log entry is sealed by the manager that proposes it, before pysyncobj gives
it an index and a term, so the record's AAD cannot name them. Instead, when an
entry is appended to a manager's log, it gets a tag over its place and over
the tag of the entry before it; the log is checked against these tags when it
is opened. A record swapped, moved, replayed or dropped from the middle of the
log no longer matches, and the attacker who can write the disk cannot make a
new tag without the DEK.

Recipe (this module alone computes it; ``raftstore/storage/_segment_format.py`` lays the
result out on disk)::

    chain key = HKDF-SHA256(ikm = the DEK of term key_id, salt = cluster id (UTF-8),
                            info = "raftstore log chain"), 32 bytes
    tag       = BLAKE2b(key = chain key, digest size = 16,
                        "raftstore-log-chain" | key id (4, BE) | index (8, BE) | term (8, BE)
                        | previous tag (16) | record)

BLAKE2b's keyed mode is a MAC in its own right (RFC 7693), and costs a third
of HMAC-SHA256 here: about a microsecond on every append.

Every field but the record has a fixed size and the record comes last, so no
two inputs share a message. ``previous`` is the tag of the entry before this
one in the log, or ``CHAIN_START`` (16 zero bytes) where a chain starts. The
key id is the DEK term the chain key came from; the caller stores it beside
the tag, so a reader needs that term in its keyring (and a term leaves the
keyring only when no tag on disk names it). Tags are not secret and the DEK
never leaves this module through them (HKDF separates the two uses).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import TYPE_CHECKING, Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ._errors import InvalidRecord
from ._seal import DataKey

if TYPE_CHECKING:
    from ._deks import Keyring

__all__ = ["LogChain", "CHAIN_START", "CHAIN_TAG_SIZE", "chain_key", "chain_tag"]

CHAIN_TAG_SIZE = 16
CHAIN_START = bytes(CHAIN_TAG_SIZE)
_INFO = b"raftstore log chain"
_DOMAIN = b"raftstore-log-chain"
_PLACE = struct.Struct(">IQQ")  # key id, index, term
_MAX_U64 = 2**64 - 1
_MISMATCH = "chain MAC mismatch: the record was moved, swapped, replayed or altered"


def chain_key(key: DataKey, cluster_id: str) -> bytes:
    """The MAC key of one DEK term (HKDF, so the DEK itself is never used twice)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=cluster_id.encode("utf-8"), info=_INFO)
    return hkdf.derive(key.secret)


def chain_tag(mac_key: bytes, key_id: int, index: int, term: int, previous: bytes, record: bytes) -> bytes:
    """The tag of one entry (``mac_key`` from ``chain_key``); public for the test vectors.

    Raises:
        ValueError: a field out of range, or ``previous`` not 16 bytes.
    """
    if not (0 < key_id < 2**32 and 0 <= index <= _MAX_U64 and 0 <= term <= _MAX_U64):
        raise ValueError(f"key id {key_id}, index {index} or term {term} out of range")
    if len(previous) != CHAIN_TAG_SIZE:
        raise ValueError("a previous chain tag is 16 bytes")
    mac = hashlib.blake2b(_DOMAIN, key=mac_key, digest_size=CHAIN_TAG_SIZE)
    mac.update(_PLACE.pack(key_id, index, term))
    mac.update(previous)
    mac.update(record)
    return mac.digest()


class LogChain:
    """Signs and checks the tags of one manager's log, with the keyring it currently holds.

    ``keyring`` is called on every use, so that a DEK rotation (the manager
    swaps its keyring) takes effect at the next append. Chain keys are
    derived once per term and kept while that term's key is the same object.
    """

    def __init__(self, keyring: Callable[[], "Keyring"], cluster_id: str) -> None:
        self._keyring = keyring
        self._cluster_id = cluster_id
        self._keys: dict[int, tuple[DataKey, bytes]] = {}

    def _mac_key(self, key: DataKey) -> bytes:
        cached = self._keys.get(key.key_id)
        if cached is not None and cached[0] is key:
            return cached[1]
        if len(self._keys) >= 16:
            self._keys.clear()
        mac_key = chain_key(key, self._cluster_id)
        self._keys[key.key_id] = (key, mac_key)
        return mac_key

    def sign(self, index: int, term: int, previous: bytes, record: bytes) -> tuple[int, bytes]:
        """``(key id, tag)`` of an entry appended now, under the active DEK term.

        Raises:
            ValueError: a field out of range (a bug in the caller).
        """
        key = self._keyring().active
        return key.key_id, chain_tag(self._mac_key(key), key.key_id, index, term, previous, record)

    def check(self, key_id: int, index: int, term: int, previous: bytes, record: bytes, tag: bytes) -> None:
        """Check an entry read from disk against its tag (constant-time comparison).

        Raises:
            InvalidRecord: "chained under unknown key id N" when the keyring
                lacks that term, else one message for any mismatch.
        """
        try:
            key = self._keyring().get_key(key_id)
        except InvalidRecord:
            raise InvalidRecord(f"chained under unknown key id {key_id}") from None
        try:
            expected = chain_tag(self._mac_key(key), key_id, index, term, previous, record)
        except ValueError:
            raise InvalidRecord(_MISMATCH) from None
        if not hmac.compare_digest(expected, tag):
            raise InvalidRecord(_MISMATCH)
