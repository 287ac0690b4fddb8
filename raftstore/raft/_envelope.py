"""The entry envelope: how a Raft entry carries a sealed record (this module alone lays it out).

An entry of ours, as the manager's proposer hands it to ``RaftNode.append_entry``
and as the manager's apply hook gets it back once it commits::

    entry id (16 random bytes) | sealed record      keyring.seal, kind ENTRY, place entry_context(entry id)
    entry id (16 random bytes) | 0x00 | plaintext   the benchmark control without sealing (refused elsewhere)

A sealed record begins with its format version (1), so a 0x00 there cannot
be one: it is the unsealed marker.

In pysyncobj's memory an entry is a command: the byte ``ENTRY_TYPE`` (4, a
command type pysyncobj does not know, so it hands the entry to our apply hook)
and then the envelope. pysyncobj's own commands (no-op, membership, version)
stay as pysyncobj encodes them.

On disk (the payload of one segment record, written by ``SealedJournal``) every
command is sealed, ours by their proposer and pysyncobj's by the journal::

    0x04 | envelope                        an entry of ours
    0x05 | entry id | sealed command       a pysyncobj control entry

A snapshot keeps its last two entries in this on-disk form as well
(``_snapshots.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..keyring import DataKey, InvalidRecord, Keyring, RecordKind, entry_context, open_record, record_key_id, seal
from ._current_keyring import CurrentKeyring

__all__ = [
    "ENTRY_TYPE",
    "ENTRY_ID_BYTES",
    "Envelope",
    "EntryCodec",
    "envelope_of",
    "parse_envelope",
    "seal_envelope",
    "unsealed_envelope",
]

#: pysyncobj's command-type byte for our entries (its own are 0..3).
ENTRY_TYPE = 4
#: The entry id: fresh random bytes per entry, the place its record is sealed to.
ENTRY_ID_BYTES = 16
_UNSEALED = b"\x00"
_DISK_PROPOSAL = 0x04
_DISK_CONTROL = 0x05


def seal_envelope(key: DataKey, cluster_id: str, plaintext: bytes) -> bytes:
    """An entry carrying ``plaintext`` sealed under ``key`` (the active DEK) with a fresh entry id."""
    entry_id = os.urandom(ENTRY_ID_BYTES)
    return entry_id + seal(key, RecordKind.ENTRY, cluster_id, entry_context(entry_id), plaintext)


def unsealed_envelope(plaintext: bytes) -> bytes:
    """An entry carrying ``plaintext`` in clear: only the benchmark control without sealing writes one."""
    return os.urandom(ENTRY_ID_BYTES) + _UNSEALED + plaintext


@dataclass(frozen=True)
class Envelope:
    """A committed entry of ours, split into its entry id and what follows it."""

    entry_id: bytes
    record: bytes

    @property
    def sealed(self) -> bool:
        """False for an entry of the benchmark control without sealing."""
        return self.record[:1] != _UNSEALED

    @property
    def unsealed_plaintext(self) -> bytes:
        """The plaintext of an unsealed entry (only meaningful when ``sealed`` is False)."""
        return self.record[1:]

    def key_id(self) -> int:
        """The DEK term the record names.

        Raises:
            InvalidRecord: the record is too short or of an unknown version.
        """
        return record_key_id(self.record)

    def open(self, keyring: Keyring, cluster_id: str) -> bytes:
        """The plaintext, if the record opens at this entry id.

        Raises:
            InvalidRecord: the record does not open (damaged, moved, or a key we lack).
            ValueError: the entry id is not 16 bytes (a damaged entry).
        """
        return open_record(keyring, RecordKind.ENTRY, cluster_id, entry_context(self.entry_id), self.record)


def parse_envelope(payload: bytes) -> Envelope:
    """Split an entry of ours; nothing is checked until ``key_id`` or ``open``."""
    return Envelope(payload[:ENTRY_ID_BYTES], payload[ENTRY_ID_BYTES:])


def envelope_of(command: bytes) -> bytes | None:
    """The envelope inside a pysyncobj command, or None for a command of pysyncobj's own."""
    if command[:1] == bytes([ENTRY_TYPE]):
        return command[1:]
    return None


class EntryCodec:
    """pysyncobj's in-memory commands to the journal's on-disk payloads and back."""

    def __init__(self, keys: CurrentKeyring) -> None:
        self.keys = keys

    def to_disk(self, command: bytes, index: int) -> bytes:
        """The on-disk payload of ``command``; a control entry is sealed here, under the active DEK."""
        if envelope_of(command) is not None:
            return bytes([_DISK_PROPOSAL]) + command[1:]
        entry_id = os.urandom(ENTRY_ID_BYTES)
        sealed = seal(
            self.keys.keyring.active, RecordKind.ENTRY, self.keys.cluster_id, entry_context(entry_id), command
        )
        return bytes([_DISK_CONTROL]) + entry_id + sealed

    def from_disk(self, payload: bytes, where: str) -> bytes:
        """The command an on-disk payload holds; ``where`` names it in errors.

        Raises:
            InvalidRecord: an unknown kind, or a control entry that does not open.
        """
        kind = payload[:1]
        if kind == bytes([_DISK_PROPOSAL]):
            return bytes([ENTRY_TYPE]) + payload[1:]
        if kind == bytes([_DISK_CONTROL]) and len(payload) > 1 + ENTRY_ID_BYTES:
            entry_id = payload[1 : 1 + ENTRY_ID_BYTES]
            try:
                return open_record(
                    self.keys.keyring,
                    RecordKind.ENTRY,
                    self.keys.cluster_id,
                    entry_context(entry_id),
                    payload[1 + ENTRY_ID_BYTES :],
                )
            except InvalidRecord as error:
                raise InvalidRecord(f"raft log damaged: {where}: {error}") from None
        raise InvalidRecord(f"raft log damaged: {where}: unknown entry kind")

    @staticmethod
    def key_id(payload: bytes) -> int:
        """The DEK term sealing an on-disk payload (0 for an entry of the benchmark control without sealing)."""
        record = payload[1 + ENTRY_ID_BYTES :]
        if record[:1] == _UNSEALED:
            return 0
        return record_key_id(record)
