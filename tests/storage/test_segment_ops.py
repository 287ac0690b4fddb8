"""SegmentLog operations: group commit, truncation, dropping, reset, roll, disk errors."""

from __future__ import annotations

import errno
import os
import time
import threading
from pathlib import Path

import pytest

import raftstore.storage._segments as segments_mod
from raftstore.storage._segment_format import encode_frame, encode_segment_header
from raftstore.storage._segments import SegmentLog
from segment_chain import CHAIN
from raftstore.keyring import InvalidRecord, StorageError


def seg_files(directory: Path) -> list[Path]:
    return sorted(p for p in Path(directory).iterdir() if p.name.endswith(".seg"))


def open_log(directory: Path, lines: list[str] | None = None, **kw) -> SegmentLog:
    if lines is None:
        lines = []
    return SegmentLog.open(directory, chain=CHAIN, log=lines.append, **kw)


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
def fsyncs(monkeypatch):
    """Count os.fsync calls (file and directory alike) and directory fsyncs separately."""
    fsync = Counter(os.fsync)
    fsync_dir = Counter(segments_mod.fsync_directory)
    monkeypatch.setattr(segments_mod.os, "fsync", fsync)
    monkeypatch.setattr(segments_mod, "fsync_directory", fsync_dir)
    return fsync, fsync_dir


def test_sync_is_one_fsync_for_many_appends(tmp_path, fsyncs):
    fsync, fsync_dir = fsyncs
    log = open_log(tmp_path / "log")  # creates the directory (its parent is synced), no segment yet
    fsync.calls = fsync_dir.calls = 0
    assert log.sync() is False
    log.append(*ent(1))  # creates the first segment
    assert log.sync() is True  # the new segment file and its directory entry
    assert (fsync.calls, fsync_dir.calls) == (2, 1)
    fsync.calls = fsync_dir.calls = 0
    for i in range(2, 102):
        log.append(*ent(i))
    assert fsync.calls == 0  # append only writes
    assert log.sync() is True
    assert (fsync.calls, fsync_dir.calls) == (1, 0)  # one fsync, no file created or removed
    assert log.sync() is False
    assert log.sync() is False
    assert (fsync.calls, fsync_dir.calls) == (1, 0)
    log.close()


def test_sync_with_nothing_pending_makes_no_system_call(tmp_path, monkeypatch):
    log = filled(tmp_path / "log", 1, 5)
    log.close()
    log = open_log(tmp_path / "log")

    def forbidden(*args):
        raise AssertionError("no system call expected")

    for name in ("fsync", "fdatasync", "open", "write", "close", "stat", "fstat"):
        monkeypatch.setattr(segments_mod.os, name, forbidden)
    for _ in range(1000):
        assert log.sync() is False
    monkeypatch.undo()
    log.close()


def test_sync_after_reopen_costs_nothing(tmp_path, fsyncs):
    fsync, fsync_dir = fsyncs
    filled(tmp_path / "log", 1, 5).close()
    log = open_log(tmp_path / "log")
    fsync.calls = fsync_dir.calls = 0
    assert log.sync() is False
    assert (fsync.calls, fsync_dir.calls) == (0, 0)
    log.close()


def test_sync_from_another_thread(tmp_path):
    log = open_log(tmp_path / "log")
    stop = threading.Event()
    errors = []

    def syncer():
        try:
            while not stop.is_set():
                log.sync()
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    thread = threading.Thread(target=syncer)
    thread.start()
    try:
        for i in range(1, 2001):
            log.append(*ent(i))
            if i % 300 == 0:
                log.truncate_after(i - 50)
                log.append(*ent(i - 49, term=2))
                for j in range(i - 48, i + 1):
                    log.append(*ent(j, term=2))
    finally:
        stop.set()
        thread.join()
    assert errors == []
    log.close()
    entries = reopen_entries(tmp_path / "log")[0]
    assert [e[0] for e in entries] == list(range(1, 2001))


def test_roll_makes_both_files_durable_and_the_next_sync_fsyncs_the_directory(tmp_path, fsyncs):
    fsync, fsync_dir = fsyncs
    log = filled(tmp_path / "log", 1, 3)
    log.append(*ent(4))  # pending
    fsync.calls = fsync_dir.calls = 0
    log.roll()
    # the segment it leaves is durable; the next one appears with the next append
    assert (fsync.calls, fsync_dir.calls) == (1, 0)
    assert len(seg_files(tmp_path / "log")) == 1
    assert log.sync() is False
    log.append(*ent(5))
    assert len(seg_files(tmp_path / "log")) == 2
    assert log.sync() is True
    assert (fsync.calls, fsync_dir.calls) == (3, 1)  # the new file, and its directory entry
    assert log.sync() is False
    log.close()


def test_roll_after_an_unsynced_roll_fsyncs_the_directory_first(tmp_path, fsyncs):
    fsync, fsync_dir = fsyncs
    log = filled(tmp_path / "log", 1, 3)
    log.roll()
    log.append(*ent(4))
    fsync_dir.calls = 0
    log.roll()  # segment 2's directory entry must be durable before segment 3 exists
    assert fsync_dir.calls == 1
    log.close()


def test_append_rolls_when_the_segment_is_full(tmp_path):
    log = open_log(tmp_path / "log", segment_bytes=200)
    for i in range(1, 21):
        log.append(*ent(i))
    infos = log.segments()
    assert len(infos) > 3
    for info in infos:
        assert info.size_bytes <= 200
        assert info.first_index is not None
    # a frame larger than segment_bytes still gets a segment of its own
    log.append(21, 1, b"x" * 500)
    log.append(22, 1, b"y")
    infos = log.segments()
    assert infos[-2].first_index == infos[-2].last_index == 21
    assert infos[-1].first_index == 22
    log.close()
    assert [e[0] for e in reopen_entries(tmp_path / "log", segment_bytes=200)[0]] == list(range(1, 23))


def test_no_empty_segments_pile_up_with_tiny_segment_bytes(tmp_path):
    log = open_log(tmp_path / "log", segment_bytes=1)
    for i in range(1, 6):
        log.append(*ent(i))
    assert [(s.first_index, s.last_index) for s in log.segments()] == [(i, i) for i in range(1, 6)]
    log.close()


def test_failed_fsync_poisons_the_log(tmp_path, monkeypatch):
    log = filled(tmp_path / "log", 1, 3)
    log.append(*ent(4))

    def eio(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(segments_mod.os, "fsync", eio)
    with pytest.raises(StorageError) as first:
        log.sync()
    assert "Input/output error" in str(first.value) and "reopened" in str(first.value)
    monkeypatch.undo()
    # a retry must not report success: the kernel may have dropped the pages
    with pytest.raises(StorageError):
        log.sync()
    with pytest.raises(StorageError):
        log.append(*ent(5))
    log.close()  # closes without trying again
    assert [e[0] for e in reopen_entries(tmp_path / "log")[0]] == [1, 2, 3, 4]


def test_failed_directory_fsync_poisons_the_log(tmp_path, monkeypatch):
    log = filled(tmp_path / "log", 1, 3)
    log.roll()
    log.append(*ent(4))  # a new segment: its directory entry is pending

    def failing(path):
        raise StorageError(f"Input/output error syncing directory {path}")

    monkeypatch.setattr(segments_mod, "fsync_directory", failing)
    with pytest.raises(StorageError):
        log.sync()
    monkeypatch.undo()
    with pytest.raises(StorageError):
        log.sync()
    log.close()


def test_use_after_close(tmp_path):
    log = filled(tmp_path / "log", 1, 3)
    log.append(*ent(4))
    log.close()  # syncs what is pending
    log.close()
    assert log.sync() is False
    with pytest.raises(ValueError, match="closed"):
        log.append(*ent(5))
    assert [e[0] for e in reopen_entries(tmp_path / "log")[0]] == [1, 2, 3, 4]


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


def test_truncate_after_makes_the_holding_segment_active(tmp_path):
    d = tmp_path / "log"
    log = filled(d, 1, 30, segment_bytes=300)
    infos = log.segments()
    assert len(infos) >= 4
    target = infos[1]
    log.truncate_after(target.first_index)
    assert [s.path for s in log.segments()] == [infos[0].path, target.path]
    assert log.segments()[-1].last_index == target.first_index
    log.append(*ent(target.first_index + 1, term=3))  # goes into the cut segment
    assert log.segments()[-1].path == target.path
    log.close()
    entries = reopen_entries(d, segment_bytes=300)[0]
    assert entries == [ent(i) for i in range(1, target.first_index + 1)] + [ent(target.first_index + 1, term=3)]


def test_truncate_after_everything_deletes_every_segment(tmp_path):
    d = tmp_path / "log"
    log = filled(d, 10, 30, segment_bytes=150)
    next_seq = len(log.segments()) + 1
    log.truncate_after(3)
    assert log.first_index is None and log.last_index is None
    assert seg_files(d) == [] and log.segments() == []
    log.append(*ent(4, term=2))  # an empty log takes any index
    assert [p.name for p in seg_files(d)] == [f"{next_seq:016x}-{4:016x}.seg"]
    log.close()
    assert reopen_entries(d)[0] == [ent(4, term=2)]


def test_truncate_after_is_pending_until_sync(tmp_path, monkeypatch):
    d = tmp_path / "log"
    log = filled(d, 1, 10)
    assert log.sync() is False
    fsync = Counter(os.fsync)
    monkeypatch.setattr(segments_mod.os, "fsync", fsync)
    log.truncate_after(5)
    assert fsync.calls == 0  # within one segment: nothing synced yet
    assert log.sync() is True and fsync.calls == 1
    log.close()


def test_failed_truncate_poisons_the_log_and_leaves_a_log_that_opens(tmp_path, monkeypatch):
    d = tmp_path / "log"
    log = filled(d, 1, 30, segment_bytes=150)
    real_unlink = os.unlink
    calls = []

    def unlink_once(path):
        calls.append(path)
        if len(calls) > 1:
            raise OSError(errno.EIO, "Input/output error")
        real_unlink(path)

    monkeypatch.setattr(segments_mod.os, "unlink", unlink_once)
    with pytest.raises(StorageError, match="Input/output error"):
        log.truncate_after(2)
    monkeypatch.undo()
    with pytest.raises(StorageError):
        log.append(*ent(31))
    log.close()
    entries = reopen_entries(d, segment_bytes=150)[0]
    assert entries == [ent(i) for i in range(1, len(entries) + 1)] and len(entries) >= 2


def test_drop_before(tmp_path):
    d = tmp_path / "log"
    log = filled(d, 1, 30, segment_bytes=260)
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
    entries, first, last, lines = reopen_entries(d, segment_bytes=260)
    assert entries == [ent(i) for i in range(third_first, 31)]
    assert (first, last) == (third_first, 30) and lines == []


def test_drop_before_everything_deletes_the_active_segment_too(tmp_path):
    d = tmp_path / "log"
    log = filled(d, 1, 30, segment_bytes=120)
    old = log.segments()
    dropped = log.drop_before(31)
    assert dropped == [s.path for s in old]
    assert seg_files(d) == [] and log.segments() == []
    assert log.first_index is None and log.last_index is None
    log.append(*ent(31))
    (only,) = seg_files(d)
    assert only.name.endswith(f"-{31:016x}.seg")
    log.close()
    assert reopen_entries(d, segment_bytes=120)[0] == [ent(31)]


def test_drop_before_keeps_the_active_segment_that_holds_index(tmp_path):
    d = tmp_path / "log"
    log = filled(d, 1, 30, segment_bytes=120)
    active = log.segments()[-1]
    dropped = log.drop_before(30)
    assert active.path not in dropped and seg_files(d) == [active.path]
    assert log.first_index == active.first_index and log.last_index == 30
    log.close()


def test_drop_before_after_roll(tmp_path):
    d = tmp_path / "log"
    log = filled(d, 1, 10, segment_bytes=120)
    log.roll()  # e.g. before a snapshot that retires the DEK of every entry so far
    before = seg_files(d)
    assert len(before) > 1
    assert log.drop_before(11) == before
    assert seg_files(d) == []
    assert log.drop_before(100) == []
    log.append(*ent(11))
    log.close()
    assert reopen_entries(d)[0] == [ent(11)]


def test_drop_before_deletions_are_ordered(tmp_path, monkeypatch):
    """Segments leave the log by a rename (cheap, on the tick thread), oldest first, each durable before the next."""
    d = tmp_path / "log"
    log = filled(d, 1, 30, segment_bytes=100)
    order = []
    real_rename, real_dir = os.rename, segments_mod.fsync_directory
    monkeypatch.setattr(segments_mod.os, "rename", lambda p, q: (order.append(("out", Path(p).name)), real_rename(p, q))[1])
    monkeypatch.setattr(segments_mod, "fsync_directory", lambda p: (order.append(("dirsync",)), real_dir(p))[1])
    infos = log.segments()
    dropped = log.drop_before(infos[3].first_index)
    assert [p.name for p in dropped] == [i.path.name for i in infos[:3]]
    # oldest first, each deletion durable before the next; the last one at the next sync
    assert order == [
        ("out", infos[0].path.name),
        ("dirsync",),
        ("out", infos[1].path.name),
        ("dirsync",),
        ("out", infos[2].path.name),
    ]
    assert log.sync() is True
    assert order[-1] == ("dirsync",)
    # the renamed files are unlinked on the discarder's thread
    deadline = time.monotonic() + 10
    while list(d.glob("*.dropped")) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not list(d.glob("*.dropped"))
    log.close()


def test_a_dropped_segment_left_by_a_crash_is_removed_at_open(tmp_path):
    d = tmp_path / "log"
    log = filled(d, 1, 30, segment_bytes=100)
    first, second = log.segments()[0], log.segments()[1]
    log.close()
    os.rename(first.path, first.path.with_name(first.path.name + ".dropped"))  # a crash before the unlink
    reopened = open_log(d)
    assert not list(d.glob("*.dropped"))
    assert reopened.entries()[0][0] == second.first_index
    reopened.close()


def test_reset(tmp_path, monkeypatch):
    d = tmp_path / "log"
    log = filled(d, 1, 30, segment_bytes=120)
    old = seg_files(d)
    fsync = Counter(os.fsync)
    monkeypatch.setattr(segments_mod.os, "fsync", fsync)
    new = [ent(i, term=4) for i in range(100, 106)]
    log.reset(new)
    assert fsync.calls >= 2  # durable on return: the file and the directory
    assert log.sync() is False
    assert log.first_index == 100 and log.last_index == 105
    assert not any(p.exists() for p in old)
    log.append(*ent(106, term=4))
    log.sync()
    log.close()
    entries, first, last, lines = reopen_entries(d, segment_bytes=120)
    assert entries == new + [ent(106, term=4)] and (first, last) == (100, 106) and lines == []


def test_reset_refuses_a_gap(tmp_path):
    log = filled(tmp_path / "log", 1, 3)
    with pytest.raises(ValueError):
        log.reset([ent(5), ent(7)])
    assert log.last_index == 3  # nothing changed
    log.close()


def test_reset_to_empty(tmp_path):
    d = tmp_path / "log"
    log = filled(d, 1, 10, segment_bytes=120)
    log.reset([])
    assert log.first_index is None and log.last_index is None
    assert seg_files(d) == []
    log.append(*ent(50))
    log.sync()
    log.close()
    assert reopen_entries(d)[0] == [ent(50)]


def test_roll(tmp_path):
    d = tmp_path / "log"
    log = filled(d, 1, 3)
    log.roll()
    log.roll()  # no entry since the last roll: nothing to do
    assert len(seg_files(d)) == 1
    log.append(*ent(4))
    files = seg_files(d)
    assert len(files) == 2
    assert files[-1].name == f"{2:016x}-{4:016x}.seg"
    log.append(*ent(5))
    log.sync()
    assert [s.first_index for s in log.segments()] == [1, 4]
    assert [s.last_index for s in log.segments()] == [3, 5]
    log.close()
    entries, first, last, lines = reopen_entries(d)
    assert entries == [ent(i) for i in range(1, 6)] and (first, last) == (1, 5) and lines == []


def chained_segment(anchor: bytes, entries) -> bytes:
    """A whole segment file, built as SegmentLog writes one: header with ``anchor``, then chained frames."""
    out, tag = encode_segment_header(anchor), anchor
    for index, term, payload in entries:
        key_id, tag = CHAIN.sign(index, term, tag, payload)
        out += encode_frame(index, term, key_id, payload, tag)
    return out


def test_index_gap_between_segments_is_refused(tmp_path):
    d = tmp_path / "log"
    filled(d, 1, 3).close()
    (first,) = seg_files(d)
    anchor = first.read_bytes()[-20:-4]  # the tag of entry 3
    # a second segment that starts at 5 instead of 4
    second = d / f"{2:016x}-{5:016x}.seg"
    second.write_bytes(chained_segment(anchor, [(5, 1, b"five"), (6, 1, b"six")]))
    with pytest.raises(InvalidRecord) as info:
        open_log(d)
    assert str(second) in str(info.value) and "offset" in str(info.value)
    # and an overlap (4 follows 3, then 3 again) as well
    second.write_bytes(chained_segment(anchor, [(3, 1, b"three")]))
    with pytest.raises(InvalidRecord, match="offset"):
        open_log(d)
    second.write_bytes(chained_segment(anchor, [(4, 1, b"four")]))
    assert [e[0] for e in reopen_entries(d)[0]] == [1, 2, 3, 4]
    # the same entry 4, chained to anything but entry 3, is refused
    second.write_bytes(chained_segment(bytes(16), [(4, 1, b"four")]))
    with pytest.raises(InvalidRecord, match=f"{second} at offset 0: the chain anchor"):
        open_log(d)


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
    path.write_bytes(chained_segment(bytes(16), [(1, 1, b"a"), (3, 1, b"c")]))
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
