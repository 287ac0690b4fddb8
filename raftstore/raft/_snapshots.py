"""Sealed snapshots: what a Raft snapshot holds, taking one, loading one, and receiving one in chunks.

A snapshot file is ``storage/_snapshot_file``'s frame (magic, index, term,
checksum) around one sealed record, and this module writes it only through
that module. The record (kind SNAPSHOT, place ``snapshot_context(index,
term)``) holds a msgpack map::

    state     the state machine's dump (its own format)
    last      [on-disk payload, index, term] of the last entry it covers
    prev      the same for the entry before it
    members   [[node id, address], ...]: the Raft configuration at ``last``

``last`` and ``prev`` are in the journal's on-disk form (``_envelope.py``),
so a control entry stays sealed inside the snapshot too.

pysyncobj takes and loads snapshots through its public hooks
(``SyncObjConf.serializer``, ``deserializer``, ``serializeChecker``):
``SealedSnapshots`` supplies them. A leader streams its file to a lagging
follower in chunks; ``SnapshotReceiver`` receives them (the seam that
installs it: ``RaftCore.receive_snapshots_with``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import msgpack
from pysyncobj.config import SERIALIZER_STATE

from ..keyring import InvalidRecord, RecordKind, open_record, record_key_id, seal, snapshot_context
from ..storage import fsync_directory, read_snapshot, write_snapshot
from ..telemetry import SNAPSHOT_BYTES, SNAPSHOT_SECONDS, timed
from ._current_keyring import CurrentKeyring
from ._envelope import EntryCodec
from ._journal import SealedJournal
from ._seams import RaftMember

__all__ = ["SealedSnapshots", "SnapshotReceiver", "install_single_member", "write_snapshot_file"]

#: An entry as pysyncobj holds it: (command, index, term).
Entry = Any


def write_snapshot_file(
    path: str | os.PathLike[str],
    keys: CurrentKeyring,
    last: Entry,
    prev: Entry,
    members: list[tuple[str, str]],
    state: bytes,
) -> None:
    """Seal a snapshot at ``last`` and replace the file at ``path`` with it (mode 0600, durable on return).

    Raises:
        StorageError: the disk refused; the file at ``path`` is unchanged.
    """
    codec = EntryCodec(keys)
    index, term = last[1], last[2]
    plaintext = msgpack.packb(
        {
            "state": state,
            "last": [codec.to_disk(last[0], last[1]), last[1], last[2]],
            "prev": [codec.to_disk(prev[0], prev[1]), prev[1], prev[2]],
            "members": [list(m) for m in members],
        },
        use_bin_type=True,
    )
    sealed = seal(keys.keyring.active, RecordKind.SNAPSHOT, keys.cluster_id, snapshot_context(index, term), plaintext)
    write_snapshot(path, index, term, sealed)


def install_single_member(
    raft_dir: Path,
    keys: CurrentKeyring,
    last: Entry,
    prev: Entry,
    member: tuple[str, str],
    state: bytes,
    log_line: Callable[[str], None],
) -> None:
    """Make ``raft_dir`` a one-member Raft at ``last``: a snapshot of ``state`` and a log cut to it.

    Used by force-new-cluster and by restoring a backup; Raft must not be running.
    """
    raft_dir = Path(raft_dir)
    raft_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_snapshot_file(raft_dir / "snapshot", keys, last, prev, [member], state)
    journal = SealedJournal(raft_dir, EntryCodec(keys), 0, log_line)
    journal.reset_to(prev, last)
    journal.close()


class SealedSnapshots:
    """pysyncobj's snapshot hooks over the sealed snapshot file ``raft_dir/snapshot``.

    Callbacks (all on the tick thread): ``dump_state() -> bytes`` and
    ``load_state(bytes)``: the state machine's contents; ``on_fatal(message)``:
    a snapshot pysyncobj loads does not open; ``missing_key(key_id)``: a
    snapshot names a DEK term we lack, fetch it into ``keys`` if possible.
    """

    def __init__(
        self,
        *,
        raft_dir: Path,
        keys: CurrentKeyring,
        dump_state: Callable[[], bytes],
        load_state: Callable[[bytes], None],
        on_fatal: Callable[[str], None],
        missing_key: Callable[[int], bool],
        log: Callable[[str], None],
    ) -> None:
        self.raft_dir = raft_dir
        self.path = raft_dir / "snapshot"
        self.keys = keys
        self._codec = EntryCodec(keys)
        self._dump_state = dump_state
        self._load_state = load_state
        self._on_fatal = on_fatal
        self._missing_key = missing_key
        self.log = log
        self._status = SERIALIZER_STATE.NOT_SERIALIZING

    def position(self) -> tuple[int, int] | None:
        """``(index, term)`` of the snapshot on disk, or None when there is none.

        Raises:
            InvalidRecord: the file is damaged.
        """
        if not self.path.exists():
            return None
        index, term, _payload = read_snapshot(self.path)
        return index, term

    # pysyncobj's hooks ---------------------------------------------------

    def serialize(self, tmp_path: str, data: tuple[Any, Any, Any]) -> None:
        """``SyncObjConf.serializer``: write a snapshot to ``tmp_path``; pysyncobj renames it into place."""
        last, prev, cluster = data
        try:
            self._write(tmp_path, last, prev, [(n.id, n.address) for n in cluster], self._dump_state())
            self._status = SERIALIZER_STATE.SUCCESS
        except Exception:
            self._status = SERIALIZER_STATE.FAILED
            raise

    def _write(self, path: str, last: Entry, prev: Entry, members: list[tuple[str, str]], state: bytes) -> None:
        with timed(SNAPSHOT_SECONDS):
            write_snapshot_file(path, self.keys, last, prev, members, state)
        SNAPSHOT_BYTES.set(os.path.getsize(path))
        self.log(f"snapshot written at index {last[1]} (term {last[2]})")

    def check(self) -> int:
        """``SyncObjConf.serializeChecker``: the state of the last ``serialize``."""
        status = self._status
        if status == SERIALIZER_STATE.SUCCESS:
            # pysyncobj renamed the file after our serializer returned.
            fsync_directory(self.raft_dir)
        if status in (SERIALIZER_STATE.SUCCESS, SERIALIZER_STATE.FAILED):
            self._status = SERIALIZER_STATE.NOT_SERIALIZING
        return status

    def deserialize(self, path: str) -> tuple[Any, Any, Any]:
        """``SyncObjConf.deserializer``: load the snapshot at ``path`` into the state machine."""
        # Our own snapshots and received ones alike were fsynced and renamed by us (SnapshotReceiver).
        try:
            state, last, prev, members = self.open(path)
            self._load_state(state)
            return last, prev, members
        except Exception as error:
            message = str(error) if isinstance(error, InvalidRecord) else f"{type(error).__name__}: {error}"
            self._on_fatal(f"snapshot {path} could not be loaded: {message}")
            raise

    # ours ----------------------------------------------------------------

    def open(self, path: str) -> tuple[bytes, Entry, Entry, list[RaftMember]]:
        """A snapshot file's state, last and previous entries and members; raises if it does not open."""
        index, term, sealed = read_snapshot(Path(path))
        key_id = record_key_id(sealed)
        if key_id not in self.keys.keyring.key_ids:
            # Sealed under a DEK term this manager never saw (it was down
            # while the term was added and the log compacted): ask a peer.
            self._missing_key(key_id)
        plaintext = open_record(
            self.keys.keyring,
            RecordKind.SNAPSHOT,
            self.keys.cluster_id,
            snapshot_context(index, term),
            sealed,
        )
        body = msgpack.unpackb(plaintext, raw=False)
        last = (self._codec.from_disk(body["last"][0], path), body["last"][1], body["last"][2])
        prev = (self._codec.from_disk(body["prev"][0], path), body["prev"][1], body["prev"][2])
        members = [RaftMember(i, a) for i, a in body["members"]]
        return body["state"], last, prev, members

    def receiver(self, inner: Any) -> "SnapshotReceiver":
        """The serializer that receives a leader's snapshot, around pysyncobj's ``inner`` one."""
        return SnapshotReceiver(inner, self.path, self.open, self.log)


_REFUSAL_REPORT_SECONDS = 60.0


class SnapshotReceiver:
    """pysyncobj's ``Serializer`` for everything but receiving a leader's snapshot, which it replaces.

    pysyncobj calls ``setTransmissionData((chunk, is_first, is_last))`` per
    chunk on the tick thread, and loads the snapshot file when it returns
    True. pysyncobj's own would write with the umask's mode and rename over
    ours before anything checks it, without fsync. Here: a 0600 temporary
    file, fsync, open it with the keyring, rename, fsync the directory. A
    snapshot that does not open is refused and ours stays.
    """

    def __init__(self, inner: Any, path: Path, verify: Callable[[str], Any], log_line: Callable[[str], None]) -> None:
        self._inner = inner
        self._path = path
        self._tmp = path.with_name(path.name + ".recv.tmp")
        self._verify = verify
        self._log = log_line
        self._fd: int | None = None
        self._refused = 0
        self._reported_at = -_REFUSAL_REPORT_SECONDS

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def setTransmissionData(self, data: Any) -> bool:  # noqa: N802 (pysyncobj's name)
        if data is None:
            return False
        chunk, is_first, is_last = data
        try:
            if is_first:
                self._discard()
                self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            if self._fd is None:
                return False  # a transmission whose start we missed
            view = memoryview(chunk)
            while view:
                view = view[os.write(self._fd, view) :]
            if not is_last:
                return False
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            self._verify(str(self._tmp))
        except Exception as error:  # disk or snapshot: either way ours stays, the leader will resend
            self._discard()
            self._report_refusal(error)
            return False
        os.replace(self._tmp, self._path)
        fsync_directory(self._path.parent)
        return True

    def _report_refusal(self, error: Exception) -> None:
        """Once a minute at most: a leader with a damaged snapshot resends it every heartbeat."""
        self._refused += 1
        now = time.monotonic()
        if now - self._reported_at < _REFUSAL_REPORT_SECONDS:
            return
        self._reported_at = now
        message = str(error) if isinstance(error, InvalidRecord) else f"{type(error).__name__}: {error}"
        self._log(f"refused the snapshot received from the leader ({self._refused} so far): {message}; "
                  "keeping the one on disk")

    def _discard(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        try:
            os.unlink(self._tmp)
        except FileNotFoundError:
            pass
