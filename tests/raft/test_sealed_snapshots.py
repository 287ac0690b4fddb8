"""Sealed snapshots in chunks, taken off the tick thread (raftstore/raft/_snapshot_format.py, _snapshots.py).

Played from the attacker's side: chunks reordered, dropped, repeated, cut at a
boundary or spliced from another snapshot must not open; and from the Raft
side: the tick thread only freezes the state, the writing happens elsewhere,
and a slow follower does not make the leader queue the whole file.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import pytest
from pysyncobj.config import SERIALIZER_STATE

from raftstore.keyring import DataKey, InvalidRecord, Keyring, RecordKind, seal, snapshot_context
from raftstore.raft._current_keyring import CurrentKeyring
from raftstore.raft._snapshot_format import open_snapshot, snapshot_key_id, write_snapshot_file
from raftstore.raft._snapshots import SEND_BACKLOG_BYTES, SealedSnapshots, SnapshotSerializer
from raftstore.state import StateMachine
from raftstore.storage._snapshot_file import SnapshotReader, SnapshotWriter, write_snapshot

CLUSTER = "c" * 25
KEYS = CurrentKeyring(Keyring((DataKey.generate(1),), 1), CLUSTER)
LAST = (b"\x01", 10, 2)
PREV = (b"\x01", 9, 2)
MEMBERS = [("m1", "127.0.0.1:1"), ("m2", "127.0.0.1:2")]


def _write(path: Path, parts: list[bytes], last: Any = LAST) -> None:
    write_snapshot_file(path, KEYS, last, (b"\x01", last[1] - 1, last[2]), MEMBERS, parts)


def _parts(path: Path) -> list[bytes]:
    opened = open_snapshot(path, KEYS)
    return list(opened.state_parts())


def _frames(path: Path) -> tuple[int, int, list[bytes]]:
    with SnapshotReader(path) as reader:
        return reader.index, reader.term, list(reader.payloads())


def _rewrite(path: Path, index: int, term: int, frames: list[bytes]) -> None:
    with SnapshotWriter(path, index, term) as writer:
        for frame in frames:
            writer.add(frame)
        writer.commit()


def test_round_trip_keeps_position_members_and_parts(tmp_path: Path) -> None:
    path = tmp_path / "snapshot"
    _write(path, [b"part one", b"part two", b""])
    opened = open_snapshot(path, KEYS)
    assert (opened.index, opened.term) == (10, 2)
    assert opened.last[1:] == (10, 2) and opened.prev[1:] == (9, 2)
    assert [(m.id, m.address) for m in opened.members] == MEMBERS
    assert list(opened.state_parts()) == [b"part one", b"part two", b""]
    assert snapshot_key_id(path) == 1
    assert snapshot_key_id(tmp_path / "none") is None


@pytest.mark.parametrize(
    "tamper",
    [
        lambda f: [f[0], f[2], f[1], f[3]],  # reordered
        lambda f: [f[0], f[1], f[3]],  # one dropped
        lambda f: f[:3],  # cut at a frame boundary (the final one gone)
        lambda f: [f[0], f[1], f[1], f[2], f[3]],  # one repeated
        lambda f: f + [f[3]],  # the final one repeated
    ],
    ids=["reordered", "dropped", "truncated", "repeated", "final-repeated"],
)
def test_chunks_moved_within_a_snapshot_do_not_open(tmp_path: Path, tamper: Callable[[list[bytes]], list[bytes]]) -> None:
    path = tmp_path / "snapshot"
    _write(path, [b"a", b"b", b"c"])
    index, term, frames = _frames(path)
    _rewrite(path, index, term, tamper(frames))
    with pytest.raises(InvalidRecord):
        _parts(path)


def test_a_chunk_spliced_from_another_snapshot_does_not_open(tmp_path: Path) -> None:
    one, other = tmp_path / "one", tmp_path / "other"
    _write(one, [b"a", b"b"])
    _write(other, [b"x", b"y"], last=(b"\x01", 11, 2))
    index, term, frames = _frames(one)
    _, _, foreign = _frames(other)
    _rewrite(one, index, term, [frames[0], foreign[1], frames[2]])
    with pytest.raises(InvalidRecord):
        _parts(one)
    # nor does the whole other snapshot under this one's position
    _rewrite(one, index, term, foreign)
    with pytest.raises(InvalidRecord):
        _parts(one)


def test_a_version_1_snapshot_still_opens(tmp_path: Path) -> None:
    import msgpack

    from raftstore.raft._envelope import EntryCodec

    codec = EntryCodec(KEYS)
    path = tmp_path / "snapshot"
    body = msgpack.packb(
        {
            "state": b"the whole state",
            "last": [codec.to_disk(b"\x01", 10), 10, 2],
            "prev": [codec.to_disk(b"\x01", 9), 9, 2],
            "members": MEMBERS,
        },
        use_bin_type=True,
    )
    write_snapshot(path, 10, 2, seal(KEYS.keyring.active, RecordKind.SNAPSHOT, CLUSTER, snapshot_context(10, 2), body))
    opened = open_snapshot(path, KEYS)
    assert opened.last[1:] == (10, 2)
    assert list(opened.state_parts()) == [b"the whole state"]


def test_a_real_state_round_trips_through_a_snapshot(tmp_path: Path) -> None:
    state = StateMachine()
    for i in range(1, 200):
        _put(state, i, f"k{i}", b"v" * i)
    path = tmp_path / "snapshot"
    write_snapshot_file(path, KEYS, LAST, PREV, MEMBERS, state.snapshot_view().parts(part_bytes=1000))
    assert len(_frames(path)[2]) > 10, "small parts: many chunks"
    loaded = StateMachine()
    loaded.load_parts(open_snapshot(path, KEYS).state_parts())
    assert loaded.digest() == state.digest()


# ------------------------------------------------------------ off the tick thread


class _Recorder:
    """A ``run_in_background`` that holds the job until the test runs it, and records the thread it ran on."""

    def __init__(self) -> None:
        self.jobs: list[Callable[[], None]] = []

    def __call__(self, job: Callable[[], None]) -> None:
        self.jobs.append(job)


def _snapshots(tmp_path: Path, state: StateMachine, runner: Any) -> SealedSnapshots:
    return SealedSnapshots(
        raft_dir=tmp_path,
        keys=KEYS,
        dump_state=state.snapshot_parts,
        load_state=state.load_parts,
        on_fatal=lambda message: None,
        missing_key=lambda key_id: False,
        log=lambda line: None,
        run_in_background=runner,
    )


def _put(state: StateMachine, index: int, key: str, value: bytes) -> None:
    from raftstore.state import put_action

    state.apply_batch(index, 1, [(index.to_bytes(16, "big"), "2026-11-30T00:00:00Z", [put_action(key, value)])])


def test_the_tick_thread_only_freezes_the_state_and_the_writer_sees_that_point(tmp_path: Path) -> None:
    state = StateMachine()
    _put(state, 1, "a", b"before")
    runner = _Recorder()
    snapshots = _snapshots(tmp_path, state, runner)
    serializer = SnapshotSerializer(SimpleNamespace(), snapshots, backlog=lambda node_id: 0, on_installed=lambda: None)
    cluster = [SimpleNamespace(id="m1", address="127.0.0.1:1")]
    serializer.serialize((None, (b"\x01", 1, 1), (b"\x01", 0, 1), cluster), 1)
    assert not (tmp_path / "snapshot").exists(), "nothing is written on the tick thread"
    assert serializer.checkSerializing() == (SERIALIZER_STATE.SERIALIZING, 1)
    serializer.serialize((None, (b"\x01", 1, 1), (b"\x01", 0, 1), cluster), 1)  # a second request waits its turn
    assert len(runner.jobs) == 1

    _put(state, 2, "a", b"after")  # applying goes on while the writer works
    _put(state, 3, "b", b"new")
    worker = threading.Thread(target=runner.jobs[0])
    worker.start()
    worker.join(10)
    assert serializer.checkSerializing() == (SERIALIZER_STATE.SUCCESS, 1)
    assert serializer.checkSerializing() == (SERIALIZER_STATE.NOT_SERIALIZING, None)

    loaded = StateMachine()
    loaded.load_parts(open_snapshot(tmp_path / "snapshot", KEYS).state_parts())
    assert loaded.kv_get("a")["value"] == b"before"
    assert loaded.applied_index == 1
    with pytest.raises(Exception):
        loaded.kv_get("b")


def test_a_failed_write_is_reported_once_and_keeps_the_old_snapshot(tmp_path: Path) -> None:
    state = StateMachine()
    _put(state, 1, "a", b"1")
    snapshots = _snapshots(tmp_path, state, lambda job: job())
    snapshots.start((b"\x01", 1, 1), (b"\x01", 0, 1), MEMBERS)
    assert snapshots.check() == SERIALIZER_STATE.SUCCESS
    good = (tmp_path / "snapshot").read_bytes()

    def broken() -> Any:
        yield b"\x81\xa6format\x02"
        raise OSError("disk went away")

    failing = SealedSnapshots(raft_dir=tmp_path, keys=KEYS, dump_state=broken, load_state=lambda parts: None,
                              on_fatal=lambda m: None, missing_key=lambda k: False, log=lambda line: None,
                              run_in_background=lambda job: job())
    failing.start((b"\x01", 2, 1), (b"\x01", 1, 1), MEMBERS)
    assert failing.check() == SERIALIZER_STATE.FAILED
    assert failing.check() == SERIALIZER_STATE.NOT_SERIALIZING
    assert (tmp_path / "snapshot").read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snapshot"]


def test_close_abandons_a_write_between_parts(tmp_path: Path) -> None:
    release = threading.Event()

    def slow_parts() -> Any:
        yield b"\x81\xa6format\x02"
        release.wait(10)
        yield b"more"

    snapshots = SealedSnapshots(raft_dir=tmp_path, keys=KEYS, dump_state=slow_parts, load_state=lambda parts: None,
                                on_fatal=lambda m: None, missing_key=lambda k: False, log=lambda line: None)
    snapshots.start((b"\x01", 2, 1), (b"\x01", 1, 1), MEMBERS)
    threading.Timer(0.2, release.set).start()
    snapshots.close(timeout=10)
    assert snapshots.check() == SERIALIZER_STATE.FAILED
    assert not list(tmp_path.iterdir()), "an abandoned snapshot left a file"


def test_no_chunk_goes_to_a_follower_whose_connection_is_full(tmp_path: Path) -> None:
    sent: list[Any] = []
    inner = SimpleNamespace(getTransmissionData=lambda node: sent.append(node.id) or (b"chunk", True, False))
    backlog = {"slow": SEND_BACKLOG_BYTES + 1, "fast": 0}
    serializer = SnapshotSerializer(inner, _snapshots(tmp_path, StateMachine(), _Recorder()),
                                    backlog=backlog.__getitem__, on_installed=lambda: None)
    assert serializer.getTransmissionData(SimpleNamespace(id="slow")) is None
    assert serializer.getTransmissionData(SimpleNamespace(id="fast")) == (b"chunk", True, False)
    assert sent == ["fast"]


def test_a_received_snapshot_counts_as_progress_until_it_is_loaded(tmp_path: Path) -> None:
    """What a joining manager's wait (Manager.wait_caught_up) reads: chunks arriving, then checking and loading."""
    source = tmp_path / "leader"
    source.mkdir()
    _write(source / "snapshot", [b"a"])
    data = (source / "snapshot").read_bytes()
    here = tmp_path / "follower"
    here.mkdir()
    snapshots = _snapshots(here, StateMachine(), _Recorder())
    installed: list[bool] = []
    inner = SimpleNamespace(deserialize=lambda: installed.append(snapshots.installing) or "loaded")
    serializer = SnapshotSerializer(inner, snapshots, backlog=lambda node_id: 0, on_installed=lambda: None)
    assert snapshots.receiving_idle() is None
    assert serializer.setTransmissionData((data[:10], True, False)) is False
    assert 0 <= snapshots.receiving_idle() < 5
    assert serializer.setTransmissionData((data[10:], False, True)) is True
    assert snapshots.receiving_idle() == 0.0, "checked and waiting to be loaded: in progress"
    assert serializer.deserialize() == "loaded" and installed == [True]
    assert not snapshots.installing and snapshots.receiving_idle() < 5

    # a snapshot that does not open is refused and is no longer in progress
    assert serializer.setTransmissionData((data[:-1] + bytes([data[-1] ^ 1]), True, True)) is False
    assert not snapshots.installing
