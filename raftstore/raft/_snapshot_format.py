"""What a Raft snapshot holds and how it is sealed: this module alone writes and reads that layout.

A snapshot file (``storage/_snapshot_file``, version 2) is a sequence of
sealed records of kind SNAPSHOT, all under one DEK term; record ``i`` sits at
``snapshot_chunk_context(index, term, i, final)``, ``final`` true for the
last one only::

    record 0    msgpack map: last, prev, members
    record 1..  the state machine's parts, opaque here (``state/_state_dump``)

``last`` and ``prev`` are ``[on-disk payload, index, term]`` of the last entry
the snapshot covers and the one before it, in the journal's on-disk form
(``_envelope.py``), so a control entry stays sealed inside the snapshot too;
``members`` is ``[[node id, address], ...]``, the Raft configuration at
``last``.

Snapshots written before version 2 are one record at ``snapshot_context(index,
term)`` holding a map with the same three keys and ``state``, the state's
single part; they are still read.

Why chunks: one AEAD call is limited to 2 GiB and holds the interpreter for
as long as it runs; a sequence of records is written and read a few MiB at a
time, so neither side holds a second copy of the store, and the order, the
count and the end of the sequence are authenticated (the context binds them).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import msgpack

from ..keyring import (
    InvalidRecord,
    RecordKind,
    open_record,
    record_key_id,
    seal,
    snapshot_chunk_context,
    snapshot_context,
)
from ..storage import SnapshotReader, SnapshotWriter
from ._current_keyring import CurrentKeyring
from ._envelope import EntryCodec
from ._seams import RaftMember

__all__ = ["Entry", "OpenedSnapshot", "SnapshotCancelled", "open_snapshot", "snapshot_key_id", "write_snapshot_file"]

#: An entry as pysyncobj holds it: (command, index, term).
Entry = Any


class SnapshotCancelled(Exception):
    """The node stopped while its snapshot was being written; the old one stays."""


def write_snapshot_file(
    path: str | os.PathLike[str],
    keys: CurrentKeyring,
    last: Entry,
    prev: Entry,
    members: list[tuple[str, str]],
    state_parts: Iterable[bytes],
    cancelled: threading.Event | None = None,
) -> int:
    """Seal a snapshot at ``last`` part by part and replace the file at ``path`` with it (0600, durable on return).

    Returns the file's size. ``cancelled``, when set between two parts,
    abandons the write.

    Raises:
        StorageError: the disk refused; the file at ``path`` is unchanged.
        SnapshotCancelled: ``cancelled`` was set; the file is unchanged.
    """
    codec = EntryCodec(keys)
    index, term = last[1], last[2]
    key = keys.keyring.active  # one term for every chunk, even if the DEK rotates meanwhile
    head = msgpack.packb(
        {
            "last": [codec.to_disk(last[0], last[1]), last[1], last[2]],
            "prev": [codec.to_disk(prev[0], prev[1]), prev[1], prev[2]],
            "members": [list(m) for m in members],
        },
        use_bin_type=True,
    )
    with SnapshotWriter(path, index, term) as writer:
        number = 0
        pending = head
        for part in state_parts:
            if cancelled is not None and cancelled.is_set():
                raise SnapshotCancelled(f"snapshot at index {index} abandoned: the node is stopping")
            writer.add(seal(key, RecordKind.SNAPSHOT, keys.cluster_id, snapshot_chunk_context(index, term, number, False), pending))
            pending, number = part, number + 1
        writer.add(seal(key, RecordKind.SNAPSHOT, keys.cluster_id, snapshot_chunk_context(index, term, number, True), pending))
        writer.commit()
        return writer.bytes_written


@dataclass
class OpenedSnapshot:
    """A snapshot whose head has opened: position and members now, the state's parts as they are read."""

    index: int
    term: int
    last: Entry
    prev: Entry
    members: list[RaftMember]
    _parts: Iterator[bytes]
    _reader: SnapshotReader

    def state_parts(self) -> Iterator[bytes]:
        """Each state part, opened as it is read; raises InvalidRecord at the first one that does not open."""
        try:
            yield from self._parts
        finally:
            self._reader.close()

    def close(self) -> None:
        self._reader.close()


def open_snapshot(
    path: str | os.PathLike[str],
    keys: CurrentKeyring,
    missing_key: Callable[[int], Any] = lambda key_id: False,
) -> OpenedSnapshot:
    """Open a snapshot file's head; its state parts follow lazily (``OpenedSnapshot.state_parts``).

    ``missing_key(key_id)`` is called when the snapshot is sealed under a DEK
    term this manager never saw (it was down while the term was added and the
    log compacted), so that it can ask a peer before opening.

    Raises:
        FileNotFoundError: there is no snapshot.
        InvalidRecord: the file is damaged or does not open.
        StorageError: the file cannot be read.
    """
    source = os.fspath(path)
    reader = SnapshotReader(path)
    try:
        records = _opened_records(reader, keys, missing_key)
        body = msgpack.unpackb(next(records), raw=False)
        codec = EntryCodec(keys)
        last = (codec.from_disk(body["last"][0], source), body["last"][1], body["last"][2])
        prev = (codec.from_disk(body["prev"][0], source), body["prev"][1], body["prev"][2])
        members = [RaftMember(i, a) for i, a in body["members"]]
        parts: Iterator[bytes] = iter([body["state"]]) if reader.version == 1 else records
    except StopIteration:
        reader.close()
        raise InvalidRecord(f"snapshot damaged: {source}: it holds no record") from None
    except (KeyError, TypeError, ValueError, IndexError) as error:
        reader.close()
        raise InvalidRecord(f"snapshot damaged: {source}: malformed head ({type(error).__name__})") from None
    except BaseException:
        reader.close()
        raise
    return OpenedSnapshot(reader.index, reader.term, last, prev, members, parts, reader)


def snapshot_key_id(path: str | os.PathLike[str]) -> int | None:
    """The DEK term the snapshot at ``path`` is sealed under (every record has the same), or None without one.

    Raises:
        InvalidRecord: the file is damaged.
    """
    try:
        reader = SnapshotReader(path)
    except FileNotFoundError:
        return None
    with reader:
        first = next(reader.payloads(), None)
        if first is None:
            raise InvalidRecord(f"snapshot damaged: {os.fspath(path)}: it holds no record")
        return record_key_id(first)


def _opened_records(
    reader: SnapshotReader, keys: CurrentKeyring, missing_key: Callable[[int], Any]
) -> Iterator[bytes]:
    """The plaintext of each record in order; a record is opened once the next one shows whether it is the last."""
    payloads = reader.payloads()
    first = next(payloads, None)
    if first is None:
        return
    key_id = record_key_id(first)
    if key_id not in keys.keyring.key_ids:
        missing_key(key_id)
    if reader.version == 1:
        yield open_record(
            keys.keyring, RecordKind.SNAPSHOT, keys.cluster_id, snapshot_context(reader.index, reader.term), first
        )
        return
    number, pending = 0, first
    for payload in payloads:
        yield _open_chunk(keys, reader, number, False, pending)
        number, pending = number + 1, payload
    yield _open_chunk(keys, reader, number, True, pending)


def _open_chunk(keys: CurrentKeyring, reader: SnapshotReader, number: int, final: bool, sealed: bytes) -> bytes:
    place = snapshot_chunk_context(reader.index, reader.term, number, final)
    return open_record(keys.keyring, RecordKind.SNAPSHOT, keys.cluster_id, place, sealed)
