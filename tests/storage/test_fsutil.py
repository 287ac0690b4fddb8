"""Durable writes (raftstore/storage/_fsutil.py)."""

from __future__ import annotations

import errno
import os
import stat
import threading

import pytest

import raftstore.storage._fsutil as fsutil
from raftstore.storage._fsutil import atomic_write, fsync_directory, fsync_file, storage_error
from raftstore.keyring import StorageError


def test_atomic_write_creates_private_file(tmp_path):
    path = tmp_path / "f"
    atomic_write(path, b"hello")
    assert path.read_bytes() == b"hello"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["f"]


def test_atomic_write_replaces_content(tmp_path):
    path = tmp_path / "f"
    atomic_write(path, b"a much longer first version" * 100)
    atomic_write(path, b"short")
    assert path.read_bytes() == b"short"
    atomic_write(path, b"")
    assert path.read_bytes() == b""
    assert os.listdir(tmp_path) == ["f"]


def test_atomic_write_mode(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"old")
    path.chmod(0o666)
    atomic_write(path, b"new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    atomic_write(tmp_path / "g", b"x", mode=0o400)
    assert stat.S_IMODE((tmp_path / "g").stat().st_mode) == 0o400


def test_atomic_write_large_and_short_writes(tmp_path, monkeypatch):
    real_write = os.write

    def short_write(fd, data):
        return real_write(fd, bytes(data[:1000]))

    monkeypatch.setattr(fsutil.os, "write", short_write)
    data = os.urandom(10_000)
    atomic_write(tmp_path / "f", data)
    monkeypatch.undo()
    assert (tmp_path / "f").read_bytes() == data


def test_atomic_write_fsyncs_file_and_directory(tmp_path, monkeypatch):
    fsyncs = []
    dirs = []
    real_fsync = os.fsync
    real_dir = fsutil.fsync_directory
    monkeypatch.setattr(fsutil.os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd))[1])
    monkeypatch.setattr(fsutil, "fsync_directory", lambda p: (dirs.append(p), real_dir(p))[1])
    atomic_write(tmp_path / "f", b"x")
    monkeypatch.undo()
    assert len(fsyncs) >= 1
    assert [os.fspath(p) for p in dirs] == [os.fspath(tmp_path)]


@pytest.mark.parametrize(
    "code, words",
    [(errno.ENOSPC, "no space left"), (errno.EDQUOT, "disk quota exceeded"), (errno.EROFS, "read-only file system")],
)
def test_atomic_write_disk_errors(tmp_path, monkeypatch, code, words):
    path = tmp_path / "f"
    atomic_write(path, b"old content")

    def failing_write(fd, data):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fsutil.os, "write", failing_write)
    with pytest.raises(StorageError) as info:
        atomic_write(path, b"new content that will not fit")
    monkeypatch.undo()
    message = str(info.value)
    assert words in message and str(path) in message
    assert "\n" not in message
    assert info.value.__cause__ is None
    assert path.read_bytes() == b"old content"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["f"]  # the temporary file is gone


def test_atomic_write_enospc_on_fsync(tmp_path, monkeypatch):
    path = tmp_path / "f"
    atomic_write(path, b"old")

    def failing_fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fsutil.os, "fsync", failing_fsync)
    with pytest.raises(StorageError, match="no space left"):
        atomic_write(path, b"new")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f"]


def test_atomic_write_into_missing_directory(tmp_path):
    path = tmp_path / "missing" / "f"
    with pytest.raises(StorageError) as info:
        atomic_write(path, b"x")
    assert str(path) in str(info.value)


def test_leftover_temp_file_of_a_crashed_write_does_not_interfere(tmp_path):
    path = tmp_path / "f"
    atomic_write(path, b"old")
    stale = tmp_path / ".f.tmp-deadbeef0000"
    stale.write_bytes(b"half of a new version: the writer died before the rename")
    assert path.read_bytes() == b"old"
    atomic_write(path, b"fresh")
    assert path.read_bytes() == b"fresh"
    assert stale.exists()  # never someone else's to delete: it may be a live writer's


def test_crash_before_rename_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "f"
    atomic_write(path, b"old")

    def crash(src, dst):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(fsutil.os, "replace", crash)
    with pytest.raises(StorageError, match="Input/output error writing"):
        atomic_write(path, b"new")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f"]


def test_temp_file_is_never_wider_than_mode(tmp_path, monkeypatch):
    seen = []
    real_write = os.write

    def spy(fd, data):
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_write(fd, data)

    monkeypatch.setattr(fsutil.os, "write", spy)
    old = os.umask(0)
    try:
        atomic_write(tmp_path / "f", b"secret")
    finally:
        os.umask(old)
        monkeypatch.undo()
    assert seen and all(mode == 0o600 for mode in seen)


def test_mode_is_exact_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        atomic_write(tmp_path / "cert.pem", b"x", mode=0o644)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "cert.pem").stat().st_mode) == 0o644


def test_concurrent_writers_of_one_path(tmp_path):
    path = tmp_path / "f"
    errors = []

    def writer(n):
        try:
            for i in range(30):
                atomic_write(path, (b"%d-%d|" % (n, i)) * 100)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    data = path.read_bytes()
    assert data == data[: data.index(b"|") + 1] * 100  # one whole version
    assert os.listdir(tmp_path) == ["f"]


def test_storage_error_messages(tmp_path):
    e = storage_error(OSError(errno.ENOSPC, "No space left on device"), tmp_path / "x", "appending to")
    assert isinstance(e, StorageError)
    assert str(e) == f"no space left on device appending to {tmp_path / 'x'}"
    e = storage_error(OSError(errno.EIO, "Input/output error"), "/p")
    assert str(e) == "Input/output error writing /p"


def test_fsync_helpers(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"x")
    fsync_file(f)
    fsync_directory(tmp_path)
    with pytest.raises(StorageError, match=str(f)):
        fsync_directory(f)  # not a directory
    with pytest.raises(StorageError, match="missing"):
        fsync_file(tmp_path / "missing")
