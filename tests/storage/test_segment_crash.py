"""Crash consistency of SegmentLog's file operations.

A recorder watches every system call the log makes in its directory and
rebuilds each state a crash at any moment could leave behind, under the
POSIX rules (no help from a journaling file system):

- a file created or deleted is durable only after a later fsync of the
  directory; before that, each creation or deletion may or may not be found,
  independently of the others;
- a file's content is durable after an fsync of that file; before that, any of
  the versions it had since (or since its creation) may be found. (Torn
  writes inside a version are covered by the torn-tail tests.)

Every such state must open -- never "damaged" -- and hold a log the caller
can accept.
"""

from __future__ import annotations

import itertools
import threading
import os
import sys
from pathlib import Path
from typing import Callable

import pytest

import raftstore.storage._segments as segments_mod
from raftstore.storage._segments import SegmentLog
from segment_chain import CHAIN

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="maps fds to paths via /proc")


def ent(i: int, term: int = 1) -> tuple[int, int, bytes]:
    return (i, term, b"entry-%d" % i)


class Recorder:
    def __init__(self, directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.dir = directory.resolve()
        self.initial = self._snap()
        self.state = dict(self.initial)
        self._lock = threading.Lock()
        self.events: list[tuple] = []
        real = {name: getattr(os, name) for name in ("open", "write", "unlink", "rename", "ftruncate", "fsync")}
        real_dirsync = segments_mod.fsync_directory

        def fd_path(fd: int) -> Path | None:
            try:
                return Path(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                return None

        def by_path(name: str) -> Callable:
            def wrapper(path, *args, **kw):
                result = real[name](path, *args, **kw)
                if Path(os.fsdecode(path)).resolve().parent == self.dir:
                    self._diff()
                return result

            return wrapper

        def by_fd(name: str) -> Callable:
            def wrapper(fd, *args):
                path = fd_path(fd)
                result = real[name](fd, *args)
                if path is not None and path.parent == self.dir:
                    self._diff()
                    if name == "fsync":
                        self.events.append(("fsync", path.name))
                return result

            return wrapper

        def dirsync(path) -> None:
            real_dirsync(path)
            if Path(path).resolve() == self.dir:
                self.events.append(("dirsync",))

        for name in ("open", "unlink", "rename"):  # a rename out of the log (drop_before) removes a segment
            monkeypatch.setattr(segments_mod.os, name, by_path(name))
        for name in ("write", "ftruncate", "fsync"):
            monkeypatch.setattr(segments_mod.os, name, by_fd(name))
        monkeypatch.setattr(segments_mod, "fsync_directory", dirsync)
        self._monkeypatch = monkeypatch

    def stop(self) -> None:
        self._monkeypatch.undo()

    def _snap(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in self.dir.iterdir() if p.name.endswith(".seg")}

    def _diff(self) -> None:
        with self._lock:  # the segment discarder unlinks on a thread of its own
            self._diff_locked()

    def _diff_locked(self) -> None:
        new = self._snap()
        for name in sorted(self.state.keys() - new.keys()):
            self.events.append(("remove", name))
        for name in sorted(new.keys() - self.state.keys()):
            self.events.append(("add", name, new[name]))
        for name in sorted(new.keys() & self.state.keys()):
            if new[name] != self.state[name]:
                self.events.append(("data", name, new[name]))
        self.state = new

    def crash_states(self, k: int) -> set[frozenset]:
        """Every directory a crash after the first ``k`` events may leave."""
        events = self.events[:k]
        last_dirsync = max((i for i, e in enumerate(events) if e[0] == "dirsync"), default=-1)
        optional = [i for i, e in enumerate(events) if e[0] in ("add", "remove") and i > last_dirsync]
        # the versions of each file a crash may show
        versions: dict[str, list[bytes]] = {name: [data] for name, data in self.initial.items()}
        durable_from: dict[str, int] = {name: 0 for name in self.initial}
        for e in events:
            if e[0] == "add":
                versions[e[1]] = [e[2]]
                durable_from[e[1]] = 0
            elif e[0] == "data":
                versions[e[1]].append(e[2])
            elif e[0] == "fsync":
                durable_from[e[1]] = len(versions[e[1]]) - 1
        states = set()
        for chosen in itertools.product((False, True), repeat=len(optional)):
            taken = {i for i, c in zip(optional, chosen) if c}
            names = set(self.initial)
            for i, e in enumerate(events):
                if e[0] in ("add", "remove") and (i <= last_dirsync or i in taken):
                    if e[0] == "add":
                        names.add(e[1])
                    else:
                        names.discard(e[1])
            ordered = sorted(names)
            for contents in itertools.product(*(versions[n][durable_from[n] :] for n in ordered)):
                states.add(frozenset(zip(ordered, contents)))
        return states

    def check(self, tmp: Path, accept: Callable[[list], bool], final: list | None = None) -> int:
        """Open every crash state; ``accept`` judges its entries. ``final``: the one state after the last event."""
        seen: dict[frozenset, list] = {}
        for k in range(len(self.events) + 1):
            for state in self.crash_states(k):
                if state in seen:
                    continue
                d = tmp / f"crash{len(seen)}"
                d.mkdir()
                for name, data in state:
                    (d / name).write_bytes(data)
                lines: list[str] = []
                log = SegmentLog.open(d, chain=CHAIN, log=lines.append)  # must not raise
                entries = log.entries()
                log.close()
                assert accept(entries), (k, sorted(n for n, _ in state), [e[0] for e in entries])
                seen[state] = entries
        if final is not None:
            assert [seen[s] for s in self.crash_states(len(self.events))] == [final]
        return len(seen)


def synced_log(d: Path, first: int, last: int, segment_bytes: int) -> tuple[SegmentLog, list]:
    log = SegmentLog.open(d, chain=CHAIN, segment_bytes=segment_bytes)
    entries = [ent(i) for i in range(first, last + 1)]
    for e in entries:
        log.append(*e)
    log.sync()
    return log, entries


def is_prefix(entries: list, of: list, at_least: int = 0) -> bool:
    return len(entries) >= at_least and entries == of[: len(entries)]


def is_suffix(entries: list, of: list) -> bool:
    return entries == of[len(of) - len(entries) :]


@pytest.mark.parametrize("after", [1, 4, 9, 13])
def test_truncate_after(tmp_path, monkeypatch, after):
    log, old = synced_log(tmp_path / "log", 1, 14, segment_bytes=100)
    assert len(log.segments()) >= 4
    rec = Recorder(tmp_path / "log", monkeypatch)
    log.truncate_after(after)
    log.append(*ent(after + 1, term=2))
    log.sync()
    rec.stop()
    log.close()
    new = old[:after] + [ent(after + 1, term=2)]
    states = rec.check(
        tmp_path,
        lambda e: is_prefix(e, old, at_least=after) or is_prefix(e, new, at_least=after),
        final=new,
    )
    assert states >= 3


@pytest.mark.parametrize("index", [3, 8, 14, 15, 100])
def test_drop_before(tmp_path, monkeypatch, index):
    log, old = synced_log(tmp_path / "log", 1, 14, segment_bytes=100)
    holder = next((s for s in log.segments() if s.last_index is not None and s.last_index >= index), None)
    rec = Recorder(tmp_path / "log", monkeypatch)
    log.drop_before(index)
    log.sync()
    rec.stop()
    log.close()
    kept = old[holder.first_index - 1 :] if holder is not None else []

    def accept(entries: list) -> bool:
        return is_suffix(entries, old) and len(entries) >= len(kept)

    rec.check(tmp_path, accept, final=kept)


@pytest.mark.parametrize("count", [0, 3])
def test_reset(tmp_path, monkeypatch, count):
    log, old = synced_log(tmp_path / "log", 1, 14, segment_bytes=100)
    new = [ent(i, term=5) for i in range(50, 50 + count)]
    rec = Recorder(tmp_path / "log", monkeypatch)
    log.reset(new)
    rec.stop()
    log.close()
    rec.check(tmp_path, lambda e: is_prefix(e, old) or is_prefix(e, new), final=new)


def test_appends_across_rolls(tmp_path, monkeypatch):
    log, old = synced_log(tmp_path / "log", 1, 3, segment_bytes=60)
    rec = Recorder(tmp_path / "log", monkeypatch)
    more = [ent(i) for i in range(4, 10)]
    for e in more:
        log.append(*e)  # rolls on the way: no segment but the last may ever be torn
    log.roll()
    log.append(*ent(10))
    log.sync()
    rec.stop()
    log.close()
    everything = old + more + [ent(10)]
    rec.check(tmp_path, lambda e: is_prefix(e, everything, at_least=len(old)), final=everything)


def test_the_recorder_catches_an_unordered_deletion(tmp_path, monkeypatch):
    """The checker has teeth: without the barrier between deletions, drop_before can leave a gap."""
    log, old = synced_log(tmp_path / "log", 1, 14, segment_bytes=100)
    monkeypatch.setattr(SegmentLog, "_ordered_discard", lambda self, path: (os.unlink(path), setattr(self, "_dir_pending", True)))
    rec = Recorder(tmp_path / "log", monkeypatch)
    log.drop_before(12)
    log.sync()
    rec.stop()
    log.close()
    with pytest.raises(Exception, match="damaged"):
        rec.check(tmp_path, lambda e: True)
