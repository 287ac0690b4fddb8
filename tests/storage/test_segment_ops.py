"""SegmentLog operations: group commit, truncation, dropping, reset, roll, disk errors."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import raftstore._segments as segments_mod
from raftstore._segments import MAGIC, SegmentLog, _frame
from raftstore.keyring import InvalidRecord, StorageError


def seg_files(directory: Path) -> list[Path]:
    return sorted(p for p in Path(directory).iterdir() if p.name.endswith(".seg"))


def open_log(directory: Path, lines: list[str] | None = None, **kw) -> SegmentLog:
    if lines is None:
        lines = []
    return SegmentLog.open(directory, log=lines.append, **kw)


def reopen_entries(directory: Path, **kw) -> tuple[list, int | None, int | None, list[str]]:
    lines: list[str] = []
    log = open_log(directory, lines, **kw)
    try:
        return log.entries(), log.first_index, log.last_index, lines
    finally:
        log.close()


def ent(i: int, term: int = 1) -> tuple[int, int, bytes]:
    return (i, term, f"payload-{i}".encode() * (i % 3 + 1))


def filled(directory: Path, first: int, last: int, **kw) -> SegmentLog:
    log = open_log(directory, **kw)
    for i in range(first, last + 1):
        log.append(*ent(i))
    log.sync()
    return log


class Counter:
    def __init__(self, real=None):
        self.calls = 0
        self.real = real

    def __call__(self, *args):
        self.calls += 1
        if self.real is not None:
            return self.real(*args)
        return None


# --------------------------------------------------------------------------- 5. group commit


@pytest.fixture
def sync_counters(monkeypatch):
    fdatasync = Counter(os.fdatasync)
    fsync = Counter(os.fsync)
    fsync_dir = Counter(segments_mod.fsync_directory)
    monkeypatch.setattr(segments_mod.os, "fdatasync", fdatasync)
    monkeypatch.setattr(segments_mod.os, "fsync", fsync)
    monkeypatch.setattr(segments_mod, "fsync_directory", fsync_dir)
    return fdatasync, fsync, fsync_dir


def test_sync_is_one_fdatasync_for_many_appends(tmp_path, sync_counters):
    fdatasync, fsync, fsync_dir = sync_counters
    log = open_log(tmp_path / "log")
    assert log.sync() is True  # the new segment file and its directory entry
    assert fdatasync.calls == 1 and fsync_dir.calls == 1
    fdatasync.calls = fsync.calls = fsync_dir.calls = 0
    for i in range(1, 101):
        log.append(*ent(i))
    assert fdatasync.calls == 0 and fsync.calls == 0  # append only writes
    assert log.sync() is True
    assert fdatasync.calls == 1
    assert fsync.calls == 0 and fsync_dir.calls == 0  # no file created or removed
    assert log.sync() is False
    assert log.sync() is False
    assert fdatasync.calls == 1 and fsync.calls == 0 and fsync_dir.calls == 0
    log.close()


def test_sync_after_reopen_costs_nothing(tmp_path, sync_counters):
    fdatasync, fsync, fsync_dir = sync_counters
    filled(tmp_path / "log", 1, 5).close()
    log = open_log(tmp_path / "log")
    fdatasync.calls = fsync.calls = fsync_dir.calls = 0
    assert log.sync() is False
    assert (fdatasync.calls, fsync.calls, fsync_dir.calls) == (0, 0, 0)
    log.close()


def test_roll_makes_next_sync_fsync_the_directory(tmp_path, sync_counters):
    fdatasync, fsync, fsync_dir = sync_counters
    log = filled(tmp_path / "log", 1, 3)
    assert log.sync() is False
    fsync_dir.calls = 0
    log.roll()
    assert len(seg_files(tmp_path / "log")) == 2
    assert fsync_dir.calls == 0  # not yet
    log.append(*ent(4))
    fdatasync.calls = 0
    assert log.sync() is True
    assert fsync_dir.calls == 1
    assert fdatasync.calls == 1
    assert log.sync() is False
    assert fsync_dir.calls == 1
    log.close()


def test_roll_syncs_the_segment_it_leaves(tmp_path, sync_counters):
    fdatasync, _, _ = sync_counters
    log = filled(tmp_path / "log", 1, 3)
    fdatasync.calls = 0
    log.append(*ent(4))
    log.roll()
    assert fdatasync.calls == 1  # an earlier segment never ends torn
    log.close()


def test_drop_before_makes_next_sync_fsync_the_directory(tmp_path, sync_counters):
    _, _, fsync_dir = sync_counters
    log = filled(tmp_path / "log", 1, 30, segment_bytes=100)
    log.sync()
    fsync_dir.calls = 0
    assert log.drop_before(10)
    assert log.sync() is True
    assert fsync_dir.calls == 1
    log.close()


def test_failed_directory_fsync_is_retried(tmp_path, monkeypatch):
    log = filled(tmp_path / "log", 1, 3)
    log.roll()
    calls = []

    def failing(path):
        calls.append(path)
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(segments_mod, "fsync_directory", failing)
    with pytest.raises(StorageError):
        log.sync()
    good = Counter()
    monkeypatch.setattr(segments_mod, "fsync_directory", good)
    assert log.sync() is True
    assert good.calls == 1  # the new file's directory entry is still owed
    log.close()


# --------------------------------------------------------------------------- 6. truncate / drop / reset / roll


def test_append_discontinuity_raises(tmp_path):
    log = filled(tmp_path / "log", 5, 7)
    for bad in (7, 9, 5, 0):
        with pytest.raises(ValueError):
            log.append(*ent(bad))
    log.append(*ent(8))
    log.sync()
    log.close()
    assert reopen_entries(tmp_path / "log")[0] == [ent(i) for i in range(5, 9)]


@pytest.mark.parametrize("segment_bytes", [1, 120, 400, 2**20])
@pytest.mark.parametrize("after", [0, 1, 4, 5, 6, 11, 12, 19, 20, 25])
def test_truncate_after(tmp_path, segment_bytes, after):
    d = tmp_path / "log"
    log = filled(d, 1, 20, segment_bytes=segment_bytes)
    log.truncate_after(after)
    kept = [ent(i) for i in range(1, min(after, 20) + 1)]
    assert log.last_index == (kept[-1][0] if kept else None)
    assert log.first_index == (1 if kept else None)
    log.sync()
    log.close()
    entries, first, last, lines = reopen_entries(d, segment_bytes=segment_bytes)
    assert entries == kept and lines == []
    assert (first, last) == ((1, kept[-1][0]) if kept else (None, None))
    # the log continues after the cut, with new terms
    log = open_log(d, segment_bytes=segment_bytes)
    nxt = (kept[-1][0] + 1) if kept else 1
    for i in range(nxt, nxt + 5):
        log.append(*ent(i, term=9))
    log.sync()
    log.close()
    entries, first, last, lines = reopen_entries(d, segment_bytes=segment_bytes)
    assert entries == kept + [ent(i, term=9) for i in range(nxt, nxt + 5)]
    assert lines == []


def test_truncate_after_with_empty_segments_behind(tmp_path):
    d = tmp_path / "log"
    log = filled(d, 1, 10, segment_bytes=150)
    log.roll()
    log.roll()
    log.truncate_after(3)
    log.append(*ent(4, term=2))
    log.sync()
    log.close()
    assert reopen_entries(d, segment_bytes=150)[0] == [ent(1), ent(2), ent(3), ent(4, term=2)]


@pytest.mark.parametrize("after", [0, 2, 7, 12, 15])
def test_truncate_after_is_crash_safe(tmp_path, monkeypatch, after):
    """Whatever step of truncate_after the machine dies before, the node starts again.

    Modelled by making the n-th destructive call (unlink / truncate) fail: the
    steps before it happened and were durable, it and those after did not.
    """
    step = 0
    while True:
        d = tmp_path / f"log{step}"
        log = filled(d, 1, 15, segment_bytes=150)
        assert len(seg_files(d)) >= 3
        calls = 0
        real_unlink, real_truncate = os.unlink, os.truncate

        def crash_at(real):
            def wrapped(*args):
                nonlocal calls
                calls += 1
                if calls > step:
                    raise OSError(errno.EIO, "simulated crash")
                return real(*args)

            return wrapped

        monkeypatch.setattr(segments_mod.os, "unlink", crash_at(real_unlink))
        monkeypatch.setattr(segments_mod.os, "truncate", crash_at(real_truncate))
        try:
            log.truncate_after(after)
            crashed = False
        except OSError:
            crashed = True
        finally:
            monkeypatch.setattr(segments_mod.os, "unlink", real_unlink)
            monkeypatch.setattr(segments_mod.os, "truncate", real_truncate)
        log.close()
        entries, _, _, _ = reopen_entries(d, segment_bytes=150)
        # either the old log or a shorter prefix of it that keeps entries up to `after`
        assert entries == [ent(i) for i in range(1, len(entries) + 1)], step
        assert len(entries) >= min(after, 15), step
        if not crashed:
            assert len(entries) == after
            break
        step += 1


def test_drop_before(tmp_path):
    d = tmp_path / "log"
    log = filled(d, 1, 30, segment_bytes=120)
    infos = log.segments()
    assert len(infos) > 3
    # dropping before the first index of the 3rd segment removes exactly the first two
    third_first = infos[2].first_index
    dropped = log.drop_before(third_first)
    assert dropped == [infos[0].path, infos[1].path]
    assert not infos[0].path.exists() and not infos[1].path.exists()
    assert log.first_index == third_first and log.last_index == 30
    # an index inside a segment keeps that segment
    assert log.drop_before(third_first + 1) == []
    log.sync()
    log.close()
    entries, first, last, lines = reopen_entries(d, segment_bytes=120)
    assert entries == [ent(i) for i in range(third_first, 31)]
    assert (first, last) == (third_first, 30) and lines == []


def test_drop_before_never_drops_the_active_segment(tmp_path):
    d = tmp_path / "log"
    log = filled(d, 1, 30, segment_bytes=120)
    log.drop_before(10**6)
    assert len(seg_files(d)) == 1
    active = log.segments()[-1]
    assert log.last_index == 30 and log.first_index == active.first_index
    log.append(*ent(31))
    log.sync()
    log.close()
    entries, first, last, _ = reopen_entries(d, segment_bytes=120)
    assert entries[-1] == ent(31) and first == active.first_index and last == 31
    assert entries == [ent(i) for i in range(first, 32)]


def test_reset(tmp_path, monkeypatch):
    d = tmp_path / "log"
    log = filled(d, 1, 30, segment_bytes=120)
    old = seg_files(d)
    fdatasync = Counter(os.fdatasync)
    monkeypatch.setattr(segments_mod.os, "fdatasync", fdatasync)
    new = [ent(i, term=4) for i in range(100, 106)]
    log.reset(new)
    assert fdatasync.calls >= 1  # durable on return
    assert log.sync() is False
    assert log.first_index == 100 and log.last_index == 105
    assert not any(p.exists() for p in old)
    log.append(*ent(106, term=4))
    log.sync()
    log.close()
    entries, first, last, lines = reopen_entries(d, segment_bytes=120)
    assert entries == new + [ent(106, term=4)] and (first, last) == (100, 106) and lines == []


def test_reset_to_empty(tmp_path):
    d = tmp_path / "log"
    log = filled(d, 1, 10, segment_bytes=120)
    log.reset([])
    assert log.first_index is None and log.last_index is None
    assert len(seg_files(d)) == 1
    log.append(*ent(50))
    log.sync()
    log.close()
    assert reopen_entries(d)[0] == [ent(50)]


def test_roll(tmp_path):
    d = tmp_path / "log"
    log = filled(d, 1, 3)
    log.roll()
    files = seg_files(d)
    assert len(files) == 2
    assert files[-1].name == f"{2:016x}-{4:016x}.seg"
    assert files[-1].read_bytes() == MAGIC
    log.append(*ent(4))
    log.append(*ent(5))
    log.sync()
    assert [s.first_index for s in log.segments()] == [1, 4]
    assert [s.last_index for s in log.segments()] == [3, 5]
    log.close()
    entries, first, last, lines = reopen_entries(d)
    assert entries == [ent(i) for i in range(1, 6)] and (first, last) == (1, 5) and lines == []


def test_index_gap_between_segments_is_refused(tmp_path):
    d = tmp_path / "log"
    filled(d, 1, 3).close()
    # a second segment that starts at 5 instead of 4
    second = d / f"{2:016x}-{5:016x}.seg"
    second.write_bytes(MAGIC + _frame(5, 1, b"five") + _frame(6, 1, b"six"))
    with pytest.raises(InvalidRecord) as info:
        open_log(d)
    assert str(second) in str(info.value) and "offset" in str(info.value)
    # and an overlap (4 follows 3, then 3 again) as well
    second.write_bytes(MAGIC + _frame(3, 1, b"three"))
    with pytest.raises(InvalidRecord, match="offset"):
        open_log(d)
    second.write_bytes(MAGIC + _frame(4, 1, b"four"))
    assert [e[0] for e in reopen_entries(d)[0]] == [1, 2, 3, 4]


def test_index_gap_by_renaming_segments_is_refused(tmp_path):
    d = tmp_path / "log"
    filled(d, 1, 12, segment_bytes=100).close()
    files = seg_files(d)
    assert len(files) >= 3
    # remove a middle segment: the next one no longer follows
    files[1].unlink()
    with pytest.raises(InvalidRecord, match="offset"):
        open_log(d, segment_bytes=100)


def test_index_gap_inside_segment_is_refused(tmp_path):
    d = tmp_path / "log"
    d.mkdir()
    path = d / f"{1:016x}-{1:016x}.seg"
    path.write_bytes(MAGIC + _frame(1, 1, b"a") + _frame(3, 1, b"c"))
    with pytest.raises(InvalidRecord, match="offset"):
        open_log(d)


# --------------------------------------------------------------------------- 9. full disk on append


def enospc(*args):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_append_enospc(tmp_path, monkeypatch):
    d = tmp_path / "log"
    log = filled(d, 1, 3)
    (path,) = seg_files(d)
    before = path.read_bytes()
    monkeypatch.setattr(segments_mod.os, "write", enospc)
    with pytest.raises(StorageError) as info:
        log.append(*ent(4))
    assert "no space left" in str(info.value) and str(path) in str(info.value)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert log.last_index == 3
    log.close()
    entries, _, last, lines = reopen_entries(d)
    assert entries == [ent(i) for i in range(1, 4)] and last == 3 and lines == []


def test_append_enospc_after_partial_write(tmp_path, monkeypatch):
    d = tmp_path / "log"
    log = filled(d, 1, 3)
    (path,) = seg_files(d)
    before = path.read_bytes()
    real_write = os.write
    state = {"n": 0}

    def half_then_full(fd, data):
        state["n"] += 1
        if state["n"] == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(segments_mod.os, "write", half_then_full)
    with pytest.raises(StorageError, match="no space left"):
        log.append(*ent(4))
    monkeypatch.undo()
    assert path.read_bytes() == before
    # the log is still usable once space is back
    log.append(*ent(4))
    log.sync()
    log.close()
    entries, _, _, lines = reopen_entries(d)
    assert entries == [ent(i) for i in range(1, 5)] and lines == []


def test_append_enospc_while_rolling(tmp_path, monkeypatch):
    d = tmp_path / "log"
    log = filled(d, 1, 3, segment_bytes=1)
    before = {p: p.read_bytes() for p in seg_files(d)}
    monkeypatch.setattr(segments_mod.os, "write", enospc)
    with pytest.raises(StorageError, match="no space left"):
        log.append(*ent(4))  # needs a new segment first
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in seg_files(d)} == before
    # once space is back the log goes on
    log.append(*ent(4))
    log.sync()
    log.close()
    entries, _, _, lines = reopen_entries(d, segment_bytes=1)
    assert entries == [ent(i) for i in range(1, 5)] and lines == []
