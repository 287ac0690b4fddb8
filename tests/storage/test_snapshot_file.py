"""Snapshot files (raftstore/storage/_snapshot_file.py)."""

from __future__ import annotations

import errno
import os
import stat
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftstore.storage._snapshot_file import MAGIC, decode_snapshot, encode_snapshot, read_snapshot, write_snapshot
from raftstore.keyring import InvalidRecord, StorageError

u64 = st.integers(0, 2**64 - 1)


@settings(max_examples=200, deadline=None)
@given(index=u64, term=u64, payload=st.binary(max_size=2000))
def test_encode_decode_round_trip(index, term, payload):
    data = encode_snapshot(index, term, payload)
    assert data.startswith(MAGIC)
    assert len(data) == 8 + 24 + 4 + len(payload)
    # index and term are in clear (the record's AAD is rebuilt from them)
    assert struct.unpack_from(">QQ", data, 8) == (index, term)
    assert decode_snapshot(data, "src") == (index, term, payload)


@settings(max_examples=30, deadline=None)
@given(index=u64, term=u64, payload=st.binary(max_size=64), data=st.data())
def test_any_single_byte_change_is_detected(index, term, payload, data):
    encoded = encode_snapshot(index, term, payload)
    offset = data.draw(st.integers(0, len(encoded) - 1))
    mask = data.draw(st.integers(1, 255))
    damaged = bytearray(encoded)
    damaged[offset] ^= mask
    with pytest.raises(InvalidRecord, match="the-source"):
        decode_snapshot(bytes(damaged), "the-source")


@pytest.mark.parametrize("mask", [0xFF, 0x01])
def test_every_byte_tamper_is_detected(mask):
    encoded = encode_snapshot(42, 7, b"sealed snapshot payload bytes")
    for offset in range(len(encoded)):
        damaged = bytearray(encoded)
        damaged[offset] ^= mask
        with pytest.raises(InvalidRecord) as info:
            decode_snapshot(bytes(damaged), "/var/lib/x/snapshot")
        assert "/var/lib/x/snapshot" in str(info.value), offset
        assert "offset" in str(info.value), offset


def test_truncation_and_extension_are_detected():
    encoded = encode_snapshot(1, 2, b"payload!")
    for cut in range(len(encoded)):
        with pytest.raises(InvalidRecord, match="src"):
            decode_snapshot(encoded[:cut], "src")
    for extra in (b"\0", b"x" * 10):
        with pytest.raises(InvalidRecord, match="src"):
            decode_snapshot(encoded + extra, "src")


def test_empty_payload():
    assert decode_snapshot(encode_snapshot(0, 0, b""), "s") == (0, 0, b"")


@settings(max_examples=25, deadline=None)
@given(index=u64, term=u64, payload=st.binary(max_size=5000))
def test_write_read_round_trip(tmp_path_factory, index, term, payload):
    d = tmp_path_factory.mktemp("snap")
    path = d / "snapshot"
    write_snapshot(path, index, term, payload)
    assert read_snapshot(path) == (index, term, payload)
    assert os.listdir(d) == ["snapshot"]


def test_write_snapshot_is_atomic_and_private(tmp_path):
    path = tmp_path / "snapshot"
    write_snapshot(path, 1, 1, b"first")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_snapshot(path, 2, 3, b"second, longer")
    assert read_snapshot(path) == (2, 3, b"second, longer")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["snapshot"]  # no temporary file left


def test_write_snapshot_replaces_a_world_readable_file(tmp_path):
    path = tmp_path / "snapshot"
    path.write_bytes(b"old")
    path.chmod(0o644)
    write_snapshot(path, 5, 5, b"new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_snapshot(path) == (5, 5, b"new")


def test_read_snapshot_names_the_file(tmp_path):
    path = tmp_path / "snapshot"
    write_snapshot(path, 9, 9, b"payload")
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidRecord) as info:
        read_snapshot(path)
    assert str(path) in str(info.value) and "offset" in str(info.value)


CRASHING_WRITER = """
import os, sys
import raftstore.storage._fsutil as fsutil
from raftstore.storage._snapshot_file import write_snapshot

real_write = os.write

def write_half_then_die(fd, data):
    real_write(fd, bytes(data[: len(data) // 2]))
    os._exit(17)  # the machine stops here: no cleanup, no rename

fsutil.os.write = write_half_then_die
write_snapshot(sys.argv[1], 2, 2, b"the new snapshot" * 1000)
"""


def test_crash_mid_write_leaves_the_old_snapshot(tmp_path):
    path = tmp_path / "snapshot"
    write_snapshot(path, 1, 1, b"the old snapshot")
    proc = subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(path)], capture_output=True, timeout=60)
    assert proc.returncode == 17, proc.stderr.decode()
    leftovers = [p for p in tmp_path.iterdir() if p.name != "snapshot"]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".snapshot.tmp-")  # the half-written temp file
    assert 0 < leftovers[0].stat().st_size < len(encode_snapshot(2, 2, b"the new snapshot" * 1000))
    assert stat.S_IMODE(leftovers[0].stat().st_mode) == 0o600
    assert read_snapshot(path) == (1, 1, b"the old snapshot")
    # the next write is not disturbed by the leftover
    write_snapshot(path, 3, 3, b"newer")
    assert read_snapshot(path) == (3, 3, b"newer")


def test_failed_write_leaves_the_old_snapshot_and_no_temp_file(tmp_path, monkeypatch):
    import raftstore.storage._fsutil as fsutil

    path = tmp_path / "snapshot"
    write_snapshot(path, 1, 1, b"old")

    def enospc(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fsutil.os, "write", enospc)
    with pytest.raises(StorageError) as info:
        write_snapshot(path, 2, 2, b"new")
    monkeypatch.undo()
    assert str(info.value) == f"no space left on device writing {path}"
    assert read_snapshot(path) == (1, 1, b"old")
    assert os.listdir(tmp_path) == ["snapshot"]


def test_read_snapshot_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_snapshot(tmp_path / "snapshot")


def test_damage_messages_name_the_field():
    encoded = encode_snapshot(42, 7, b"payload")
    bad_length = bytearray(encoded)
    bad_length[31] ^= 1
    with pytest.raises(InvalidRecord, match="src at offset 24: the header says"):
        decode_snapshot(bytes(bad_length), "src")
    bad_index = bytearray(encoded)
    bad_index[9] ^= 1
    with pytest.raises(InvalidRecord, match="src at offset 32: checksum mismatch"):
        decode_snapshot(bytes(bad_index), "src")
    with pytest.raises(InvalidRecord, match="src at offset 0: not a raftstore snapshot"):
        decode_snapshot(b"RSSEG001" + encoded[8:], "src")
    with pytest.raises(InvalidRecord, match="src at offset 20: truncated"):
        decode_snapshot(encoded[:20], "src")


def test_out_of_range_fields_are_refused():
    with pytest.raises(ValueError):
        encode_snapshot(2**64, 0, b"")
    with pytest.raises(ValueError):
        encode_snapshot(0, -1, b"")
