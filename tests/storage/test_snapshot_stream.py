"""Version 2 snapshot files: frames written and read one at a time (raftstore/storage/_snapshot_file.py)."""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftstore.keyring import InvalidRecord
from raftstore.storage._snapshot_file import (
    MAGIC_V2,
    MAX_CHUNK_BYTES,
    SnapshotReader,
    SnapshotWriter,
    write_snapshot,
)

u64 = st.integers(0, 2**64 - 1)


def _write(path: Path, index: int, term: int, payloads: list[bytes]) -> None:
    with SnapshotWriter(path, index, term) as writer:
        for payload in payloads:
            writer.add(payload)
        writer.commit()


def _read(path: Path) -> tuple[int, int, list[bytes]]:
    with SnapshotReader(path) as reader:
        return reader.index, reader.term, list(reader.payloads())


@settings(max_examples=50, deadline=None)
@given(index=u64, term=u64, payloads=st.lists(st.binary(max_size=300), max_size=6))
def test_round_trip(tmp_path_factory, index, term, payloads):
    path = tmp_path_factory.mktemp("snap") / "snapshot"
    _write(path, index, term, payloads)
    assert path.read_bytes().startswith(MAGIC_V2)
    assert _read(path) == (index, term, payloads)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_version_1_files_are_still_read(tmp_path):
    path = tmp_path / "snapshot"
    write_snapshot(path, 7, 3, b"one sealed record")
    with SnapshotReader(path) as reader:
        assert (reader.version, reader.index, reader.term) == (1, 7, 3)
        assert list(reader.payloads()) == [b"one sealed record"]


def test_abort_and_leaving_the_block_keep_the_old_snapshot(tmp_path):
    path = tmp_path / "snapshot"
    _write(path, 1, 1, [b"old"])
    with SnapshotWriter(path, 2, 2) as writer:
        writer.add(b"new, never committed")
    with pytest.raises(RuntimeError):
        with SnapshotWriter(path, 3, 3) as writer:
            writer.add(b"newer")
            raise RuntimeError("the writer's thread failed")
    assert _read(path) == (1, 1, [b"old"])
    assert os.listdir(tmp_path) == ["snapshot"], "a temporary file was left behind"


def test_a_frame_over_the_limit_is_refused_before_it_is_read(tmp_path):
    """A hostile length field must not make the reader allocate gigabytes."""
    path = tmp_path / "snapshot"
    _write(path, 1, 1, [b"fine"])
    data = bytearray(path.read_bytes())
    struct.pack_into(">I", data, 28, MAX_CHUNK_BYTES + 1)
    path.write_bytes(bytes(data))
    with SnapshotReader(path) as reader:
        with pytest.raises(InvalidRecord, match="over the .*limit"):
            list(reader.payloads())
    with pytest.raises(ValueError):
        with SnapshotWriter(tmp_path / "other", 1, 1) as writer:
            writer.add(b"\0" * (MAX_CHUNK_BYTES + 1))


def test_damage_names_the_file_and_the_offset(tmp_path):
    path = tmp_path / "snapshot"
    _write(path, 5, 5, [b"first frame", b"second frame"])
    good = path.read_bytes()
    second = 28 + 8 + len(b"first frame")
    for offset, message in ((0, "bad magic"), (9, "header checksum"), (second + 9, "frame checksum")):
        damaged = bytearray(good)
        damaged[offset] ^= 1
        path.write_bytes(bytes(damaged))
        with pytest.raises(InvalidRecord, match=message) as caught:
            _read(path)
        assert str(path) in str(caught.value)
    for cut in (20, second + 3, len(good) - 1):
        path.write_bytes(good[:cut])
        with pytest.raises(InvalidRecord, match="truncated"):
            _read(path)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_garbage_raises_only_invalid_record(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "snapshot"
    for candidate in (data, MAGIC_V2 + data):
        path.write_bytes(candidate)
        try:
            _read(path)
        except InvalidRecord:
            pass
