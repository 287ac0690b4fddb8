"""SegmentLog against a plain-list model: random appends, rolls, truncations, drops, resets and reopens."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from raftstore.storage._segments import SegmentLog
from segment_chain import CHAIN


class SegmentLogModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="segmodel-"))
        self.segment_bytes = 120
        self.lines: list[str] = []
        self.log = SegmentLog.open(self.dir, chain=CHAIN, segment_bytes=self.segment_bytes, log=self.lines.append)
        self.model: list[tuple[int, int, bytes]] = []
        self.next_index = 1

    def teardown(self) -> None:
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(term=st.integers(0, 5), payload=st.binary(max_size=60), count=st.integers(1, 4))
    def append(self, term, payload, count):
        for _ in range(count):
            index = self.model[-1][0] + 1 if self.model else self.next_index
            self.log.append(index, term, payload)
            self.model.append((index, term, payload))

    @rule()
    def roll(self):
        self.log.roll()

    @rule()
    def sync(self):
        self.log.sync()
        assert self.log.sync() is False

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def truncate_after(self, data):
        first = self.model[0][0]
        index = data.draw(st.integers(first - 1, self.model[-1][0] + 1))
        self.log.truncate_after(index)
        self.model = [e for e in self.model if e[0] <= index]
        if not self.model:
            self.next_index = index + 1

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def drop_before(self, data):
        index = data.draw(st.integers(self.model[0][0], self.model[-1][0] + 2))
        before = self.log.segments()
        dropped = self.log.drop_before(index)
        # whole segments only, oldest first, each holding only entries before `index`
        assert dropped == [s.path for s in before[: len(dropped)]]
        assert all(s.last_index is None or s.last_index < index for s in before[: len(dropped)])
        if index > self.model[-1][0]:
            assert self.log.first_index is None  # every segment with entries went
            self.next_index = self.model[-1][0] + 1
            self.model = []
            return
        first = self.log.first_index
        assert first is not None and first <= index
        assert first == before[len(dropped)].first_index or before[len(dropped)].first_index is None
        self.model = [e for e in self.model if e[0] >= first]

    @rule(start=st.integers(1, 500), count=st.integers(0, 5), term=st.integers(0, 9))
    def reset(self, start, count, term):
        entries = [(start + i, term, b"r%d" % i) for i in range(count)]
        self.log.reset(entries)
        self.model = entries
        self.next_index = start

    @rule()
    def reopen(self):
        self.log.sync()
        self.log.close()
        self.log = SegmentLog.open(self.dir, chain=CHAIN, segment_bytes=self.segment_bytes, log=self.lines.append)
        assert self.log.entries() == self.model
        assert self.lines == []

    @invariant()
    def bounds(self):
        if self.model:
            assert (self.log.first_index, self.log.last_index) == (self.model[0][0], self.model[-1][0])
        else:
            assert self.log.last_index is None


SegmentLogModel.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestSegmentLogModel = SegmentLogModel.TestCase
