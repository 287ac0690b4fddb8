"""Snapshots under Raft: taken without stalling it, loaded, streamed to followers and received from a leader.

The file's layout and sealing belong to ``_snapshot_format``; this module
decides when and on which thread that code runs.

Taking one. pysyncobj asks for a snapshot on its tick thread, and a custom
serializer used to run there in full: at 500 MB the leader spent long
enough packing and sealing to lose its leadership. Now the tick thread only
freezes a view of the state (``dump_state``: shallow copies, see
``state/_state_dump``) and hands the writing to a background thread, which
seals and writes it a few MiB at a time; pysyncobj learns of the end through
``checkSerializing`` on a later tick and only then compacts its log.

pysyncobj's hooks (``SyncObjConf.deserializer`` at start-up) and its
``Serializer`` object (replaced once Raft runs, through the seam
``RaftCore.receive_snapshots_with``) are both served here: ``SealedSnapshots``
holds the file, ``SnapshotSerializer`` stands in for pysyncobj's serializer.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from pysyncobj.config import SERIALIZER_STATE

from ..keyring import InvalidRecord
from ..storage import SnapshotReader, discard_temporary, fsync_directory
from ..telemetry import SNAPSHOT_BYTES, SNAPSHOT_SECONDS
from ._current_keyring import CurrentKeyring
from ._journal import SealedJournal
from ._envelope import EntryCodec
from ._seams import RaftMember
from ._snapshot_format import Entry, SnapshotCancelled, open_snapshot, write_snapshot_file

__all__ = ["SealedSnapshots", "SnapshotSerializer", "install_single_member", "write_snapshot_file", "in_a_thread"]

#: How many bytes may wait in a follower's connection before the next snapshot chunk goes out.
#: pysyncobj sends once per heartbeat (0.1 s) when idle, so this also caps the rate: 16 MiB
#: a heartbeat, 160 MB/s, above what the receiving end writes and checks here.
SEND_BACKLOG_BYTES = 16 * 2**20


def in_a_thread(job: Callable[[], None]) -> None:
    """Run ``job`` on a daemon thread of its own (the default way to write a snapshot)."""
    threading.Thread(target=job, name="raft-snapshot", daemon=True).start()


def install_single_member(
    raft_dir: Path,
    keys: CurrentKeyring,
    last: Entry,
    prev: Entry,
    member: tuple[str, str],
    state_parts: Iterable[bytes],
    log_line: Callable[[str], None],
) -> None:
    """Make ``raft_dir`` a one-member Raft at ``last``: a snapshot of the state and a log cut to it.

    Used by force-new-cluster and by restoring a backup; Raft must not be running.
    """
    raft_dir = Path(raft_dir)
    raft_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_snapshot_file(raft_dir / "snapshot", keys, last, prev, [member], state_parts)
    journal = SealedJournal(raft_dir, EntryCodec(keys), 0, log_line)
    journal.reset_to(prev, last)
    journal.close()


class SealedSnapshots:
    """The sealed snapshot file ``raft_dir/snapshot``: taking one in the background and loading one.

    Callbacks: ``dump_state() -> parts`` runs on the tick thread and must be
    cheap (it freezes the state; the parts are packed later, on the writer's
    thread); ``load_state(parts)`` loads the state's parts on the tick thread;
    ``on_fatal(message)``: a snapshot pysyncobj loads does not open;
    ``missing_key(key_id)``: a snapshot names a DEK term we lack, fetch it
    into ``keys`` if possible. ``run_in_background(job)`` runs the writing
    (``in_a_thread``; the deterministic simulation runs it at once).
    """

    def __init__(
        self,
        *,
        raft_dir: Path,
        keys: CurrentKeyring,
        dump_state: Callable[[], Iterable[bytes]],
        load_state: Callable[[Iterable[bytes]], None],
        on_fatal: Callable[[str], None],
        missing_key: Callable[[int], bool],
        log: Callable[[str], None],
        run_in_background: Callable[[Callable[[], None]], None] = in_a_thread,
    ) -> None:
        self.raft_dir = raft_dir
        self.path = raft_dir / "snapshot"
        self.keys = keys
        self._dump_state = dump_state
        self._load_state = load_state
        self._on_fatal = on_fatal
        self._missing_key = missing_key
        self.log = log
        self._run_in_background = run_in_background
        self._status = SERIALIZER_STATE.NOT_SERIALIZING
        self._cancel = threading.Event()
        self._writer_done = threading.Event()
        self._writer_done.set()
        # Receiving a leader's snapshot: when a chunk last arrived, and whether one is being checked and loaded.
        self.received_at: float | None = None
        self.installing = False

    def receiving_idle(self) -> float | None:
        """Seconds since the last sign of a leader's snapshot arriving (0 while one is checked and loaded), or None."""
        if self.installing:
            return 0.0
        return None if self.received_at is None else time.monotonic() - self.received_at

    def position(self, check_frames: bool = False) -> tuple[int, int] | None:
        """``(index, term)`` of the snapshot on disk, or None when there is none.

        Only the header is read, unless ``check_frames``: then every frame's
        checksum too (at start-up, so that a damaged file stops the start
        with its path and offset instead of failing later on the tick thread,
        where pysyncobj loads it).

        Raises:
            InvalidRecord: the file is damaged.
        """
        try:
            with SnapshotReader(self.path) as reader:
                if check_frames:
                    for _payload in reader.payloads():
                        pass
                return reader.index, reader.term
        except FileNotFoundError:
            return None

    # taking one ----------------------------------------------------------

    def start(self, last: Entry, prev: Entry, members: list[tuple[str, str]]) -> None:
        """On the tick thread: freeze the state at ``last`` and write it in the background."""
        parts = self._dump_state()
        self._status = SERIALIZER_STATE.SERIALIZING
        self._writer_done.clear()
        self._run_in_background(lambda: self._write(last, prev, members, parts))

    def _write(self, last: Entry, prev: Entry, members: list[tuple[str, str]], parts: Iterable[bytes]) -> None:
        started = time.monotonic()
        try:
            size = write_snapshot_file(self.path, self.keys, last, prev, members, parts, self._cancel)
        except SnapshotCancelled:
            self._status = SERIALIZER_STATE.FAILED
        except Exception as error:
            self.log(f"writing the snapshot at index {last[1]} failed: {error}; the previous one stays")
            self._status = SERIALIZER_STATE.FAILED
        else:
            SNAPSHOT_SECONDS.observe(time.monotonic() - started)
            SNAPSHOT_BYTES.set(size)
            self.log(f"snapshot written at index {last[1]} (term {last[2]}, {size} bytes, "
                     f"{time.monotonic() - started:.2f} s)")
            self._status = SERIALIZER_STATE.SUCCESS
        finally:
            self._writer_done.set()

    @property
    def writing(self) -> bool:
        """A snapshot is being written now."""
        return not self._writer_done.is_set()

    def check(self) -> int:
        """Where the snapshot being written stands; SUCCESS and FAILED are reported once."""
        status = self._status
        if status in (SERIALIZER_STATE.SUCCESS, SERIALIZER_STATE.FAILED):
            self._status = SERIALIZER_STATE.NOT_SERIALIZING
        return status

    def close(self, timeout: float = 10.0) -> None:
        """Stop a snapshot being written (between two parts) and wait for its thread, at most ``timeout``."""
        self._cancel.set()
        self._writer_done.wait(timeout)

    def serialize_inline(self, tmp_path: str, data: Any) -> None:
        """``SyncObjConf.serializer``: set so that pysyncobj does not gather a state of its own; never called.

        ``SnapshotSerializer`` replaces pysyncobj's serializer before the first tick.
        """
        raise RuntimeError("snapshots are taken by SnapshotSerializer, not inline on the tick thread")

    # loading one ---------------------------------------------------------

    def deserialize(self, path: str) -> tuple[Any, Any, Any]:
        """``SyncObjConf.deserializer``: load the snapshot at ``path`` into the state machine."""
        # Our own snapshots and received ones alike were fsynced and renamed by us (SnapshotSerializer).
        try:
            opened = open_snapshot(path, self.keys, self._missing_key)
            self._load_state(opened.state_parts())
            return opened.last, opened.prev, opened.members
        except Exception as error:
            message = str(error) if isinstance(error, InvalidRecord) else f"{type(error).__name__}: {error}"
            self._on_fatal(f"snapshot {path} could not be loaded: {message}")
            raise

    def verify(self, path: str) -> None:
        """Open every record of the snapshot at ``path`` and keep nothing; raises if one does not open."""
        opened = open_snapshot(path, self.keys, self._missing_key)
        for _part in opened.state_parts():
            pass

    def serializer(
        self, inner: Any, backlog: Callable[[str], int], on_installed: Callable[[], None]
    ) -> "SnapshotSerializer":
        """What stands in for pysyncobj's serializer ``inner`` once Raft runs."""
        return SnapshotSerializer(inner, self, backlog, on_installed)


_REFUSAL_REPORT_SECONDS = 60.0


class SnapshotSerializer:
    """pysyncobj's ``Serializer``, replaced: snapshots taken in the background, sent with backpressure, received safely.

    - ``serialize`` / ``checkSerializing``: ``SealedSnapshots.start`` and
      ``check``; pysyncobj compacts its log only once the file is in place.
    - ``getTransmissionData``: pysyncobj's own (it reads the file a chunk at
      a time), except that no chunk goes out while more than
      ``SEND_BACKLOG_BYTES`` wait in that follower's connection, so a slow
      follower cannot make the leader buffer the whole snapshot.
    - ``setTransmissionData``: pysyncobj calls it per chunk on the tick
      thread and loads the file when it returns True. Its own would write
      with the umask's mode and rename over ours before anything checks it,
      without fsync. Here: a 0600 temporary file, fsync, every record opened
      with the keyring, rename, fsync the directory. A snapshot that does
      not open is refused and ours stays.
    - ``deserialize``: pysyncobj's, then ``on_installed`` (the owner holds
      off elections: loading a large snapshot takes longer than an
      election timeout, which must not depose a healthy leader).
    """

    def __init__(
        self,
        inner: Any,
        snapshots: SealedSnapshots,
        backlog: Callable[[str], int],
        on_installed: Callable[[], None],
    ) -> None:
        self._inner = inner
        self._snapshots = snapshots
        self._path = snapshots.path
        self._tmp = self._path.with_name(self._path.name + ".recv.tmp")
        self._verify = snapshots.verify
        self._log = snapshots.log
        self._backlog = backlog
        self._on_installed = on_installed
        self._fd: int | None = None
        self._id: int | None = None
        self._refused = 0
        self._reported_at = -_REFUSAL_REPORT_SECONDS

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def serialize(self, data: tuple[Any, Any, Any, Any], entry_id: int) -> None:  # pysyncobj's signature
        if self._id is not None:
            return  # one at a time
        _state, last, prev, cluster = data
        self._id = entry_id
        self._snapshots.start(last, prev, [(n.id, n.address) for n in cluster])

    def checkSerializing(self) -> tuple[int, int | None]:  # noqa: N802 (pysyncobj's name)
        if self._id is None:
            return SERIALIZER_STATE.NOT_SERIALIZING, None
        status, entry_id = self._snapshots.check(), self._id
        if status in (SERIALIZER_STATE.SUCCESS, SERIALIZER_STATE.FAILED):
            self._id = None
        return status, entry_id

    def getTransmissionData(self, node: Any) -> Any:  # noqa: N802 (pysyncobj's name)
        if self._backlog(node.id) > SEND_BACKLOG_BYTES:
            return None  # the follower has not taken what was sent; the next heartbeat tries again
        return self._inner.getTransmissionData(node)

    def deserialize(self) -> Any:
        try:
            loaded = self._inner.deserialize()
        finally:
            self._snapshots.installing = False
            self._snapshots.received_at = time.monotonic()
        self._on_installed()
        return loaded

    def setTransmissionData(self, data: Any) -> bool:  # noqa: N802 (pysyncobj's name)
        if data is None:
            return False
        chunk, is_first, is_last = data
        self._snapshots.received_at = time.monotonic()
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
            self._snapshots.installing = True  # until deserialize has loaded it
            self._verify(str(self._tmp))
        except Exception as error:  # disk or snapshot: either way ours stays, the leader will resend
            self._snapshots.installing = False
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
        fd, self._fd = self._fd, None
        discard_temporary(fd, self._tmp)
