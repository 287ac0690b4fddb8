"""The seams we use in pysyncobj: if an upgrade moves one, these fail loudly.

``raftstore.raft._seams`` replaces pysyncobj's journal factory, its pickle
module and its apply step, drives ``doTick`` itself and reads a few private
attributes. Each is checked here against the installed pysyncobj.
"""

from __future__ import annotations

import inspect
from pathlib import Path
import re

import pysyncobj
import pysyncobj.poller
import pysyncobj.syncobj as syncobj_module
from pysyncobj import SyncObj

from raftstore.raft import _append_rule as append_rule
from raftstore.raft import _envelope as envelope
from raftstore.raft import _raft_transport as transport
from raftstore.raft import _seams as seams


def test_pinned_version() -> None:
    from pysyncobj.version import VERSION

    assert VERSION == "0.3.17", "re-check every seam in raftstore/raft/_seams.py before moving the pin"


def test_journal_factory_seam() -> None:
    source = inspect.getsource(SyncObj.__init__)
    assert "createJournal(self.__conf.journalFile)" in source
    assert syncobj_module.createJournal is seams._create_journal


def test_pickle_is_replaced_and_only_dumps_loads_are_used() -> None:
    assert syncobj_module.pickle is seams.MsgpackCodec
    source = inspect.getsource(syncobj_module)
    used = set(re.findall(r"\bpickle\.(\w+)", source))
    assert used <= {"dumps", "loads"}, used


def test_apply_hook_and_private_attributes_exist() -> None:
    assert hasattr(SyncObj, "_SyncObj__doApplyCommand")
    source = inspect.getsource(SyncObj)
    for attribute in ("__raftElectionDeadline", "__transport", "__raftLastApplied"):
        assert f"self.{attribute}" in source, attribute
    apply_source = inspect.getsource(SyncObj._SyncObj__applyLogEntries)
    assert "self.__doApplyCommand(entry[0])" in apply_source
    assert "self.__raftLastApplied += 1" in apply_source


def test_builder_and_commit_notice_seams() -> None:
    """``RaftCore.submit_later`` feeds pysyncobj's command queue; the commit notice is its next-append time."""
    check_source = inspect.getsource(SyncObj._checkCommandsToApply)
    assert "self.__commandsQueue.get_nowait()" in check_source
    apply_source = inspect.getsource(SyncObj._applyCommand)
    assert "self.__commandsQueue.put_nowait((_bchr(commandType) + command, callback))" in apply_source
    tick_source = inspect.getsource(SyncObj._onTick)
    assert "needSendAppendEntries = self.__applyLogEntries()" in tick_source
    assert "monotonicTime() > self.__newAppendEntriesTime or needSendAppendEntries" in tick_source
    assert tick_source.index("self.__applyLogEntries()") < tick_source.index("self._checkCommandsToApply()")
    send_source = inspect.getsource(SyncObj._SyncObj__sendAppendEntries)
    assert "self.__newAppendEntriesTime = monotonicTime() + self.__conf.appendEntriesPeriod" in send_source
    assert "'commit_index': self.__raftCommitIndex" in send_source


def test_unknown_command_type_is_skipped_by_pysyncobj() -> None:
    # Our ENTRY_TYPE must be one pysyncobj would not interpret itself.
    source = inspect.getsource(syncobj_module._COMMAND_TYPE)
    values = {int(v) for v in re.findall(r"=\s*(\d+)", source)}
    assert envelope.ENTRY_TYPE not in values


def test_poller_contract() -> None:
    events = pysyncobj.poller.POLL_EVENT_TYPE
    assert (events.READ, events.WRITE, events.ERROR) == (transport.POLL_READ, transport.POLL_WRITE, transport.POLL_ERROR)


def test_serializer_hooks_signature() -> None:
    source = inspect.getsource(pysyncobj.serializer.Serializer.serialize)
    assert "self.__serializer(tmpFile, data[1:])" in source
    assert "(None,) + self.__deserializer(self.__fileName)" in inspect.getsource(
        pysyncobj.serializer.Serializer.deserialize
    )


def test_membership_codec_round_trip() -> None:
    member = seams.RaftMember("n1", "127.0.0.1:1")
    decoded = seams.MsgpackCodec.loads(seams.MsgpackCodec.dumps(["add", "n1", member]))
    assert decoded[0] == "add" and decoded[2] == member and decoded[2].address == "127.0.0.1:1"


def test_snapshot_receive_seam() -> None:
    # SnapshotReceiver (installed by RaftCore.receive_snapshots_with) replaces the serializer instance that receives a leader's snapshot.
    source = inspect.getsource(SyncObj)
    assert "self.__serializer = Serializer(" in source
    assert "if self.__serializer.setTransmissionData(serialized):\n                    self.__loadDumpFile(clearJournal=True)" in source
    assert hasattr(pysyncobj.serializer.Serializer, "setTransmissionData")


def test_append_entries_seam() -> None:
    # RaftCore rewrites a follower's append-entries before pysyncobj's handler
    # runs, relying on exactly these steps of it (see _append_rule.rewrite_append_entries).
    assert "setOnMessageReceivedCallback(self.__onMessageReceived)" in inspect.getsource(SyncObj.__init__)
    source = inspect.getsource(SyncObj._SyncObj__onMessageReceived)
    for line in (
        "prevEntries = self.__getEntries(prevLogIdx)",
        "if len(prevEntries) > 1:",
        "self.__deleteEntriesFrom(prevLogIdx + 1)",
        "nextNodeIdx = prevLogIdx + 1",
        "nextNodeIdx = newEntries[-1][1] + 1",
        "self.__sendNextNodeIdx(node, nextNodeIdx=nextNodeIdx, success=True)",
        "self.__raftCommitIndex = min(leaderCommitIndex, self.__getCurrentLogIndex())",
        "elif serialized is not None:",  # a snapshot chunk reaches the same commit step (_snapshot_chunk_rule)
    ):
        assert line in source, line
    for name in ("_SyncObj__onMessageReceived", "_SyncObj__sendNextNodeIdx"):
        assert hasattr(SyncObj, name) and name in vars(seams.RaftCore), name


def _plan(ours: dict[int, int], prev: int, entries: list[tuple[int, int]]) -> append_rule.AppendPlan:
    return append_rule.plan_append(
        ours.__getitem__, max(ours), prev, ours[prev], [(b"", index, term) for index, term in entries]
    )


def test_append_rule_skips_entries_already_held_and_keeps_the_tail() -> None:
    ours = {1: 1, 2: 1, 3: 1, 4: 2, 5: 2}
    plan = _plan(ours, 2, [(3, 1), (4, 2)])  # a late duplicate: nothing to write, nothing to cut
    assert (plan.prev_index, plan.prev_term, plan.entries, plan.conflict, plan.verified) == (5, 2, [], None, 4)
    plan = _plan(ours, 3, [(4, 2), (5, 2), (6, 2)])  # the new entry only, after our last
    assert (plan.prev_index, plan.prev_term, [e[1] for e in plan.entries], plan.conflict, plan.verified) == (
        5, 2, [6], None, 6,
    )
    plan = _plan(ours, 5, [])  # a heartbeat
    assert (plan.prev_index, plan.entries, plan.verified) == (5, [], 5)
    plan = _plan(ours, 3, [])  # a heartbeat behind our last proves nothing past its prev
    assert (plan.prev_index, plan.entries, plan.verified) == (5, [], 3)


def test_append_rule_cuts_only_from_the_first_conflict() -> None:
    ours = {1: 1, 2: 1, 3: 1, 4: 2, 5: 2}
    plan = _plan(ours, 2, [(3, 1), (4, 3), (5, 3)])
    assert (plan.prev_index, plan.prev_term, [e[1] for e in plan.entries], plan.conflict, plan.verified) == (
        3, 1, [4, 5], 4, 5,
    )


def test_a_stopped_manager_leaves_no_descriptor_behind(tmp_path: Path) -> None:
    """pysyncobj never closes its wake-up pipe; a daemon locked and unlocked many times ran out of descriptors."""
    import os
    import shutil

    from test_store_stateful import OneManager

    def open_descriptors() -> int:
        """Open pipes (what pysyncobj leaked); sockets of earlier tests may close meanwhile and are not counted."""
        pipes = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                pipes += os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")
            except OSError:
                pass
        return pipes

    store = OneManager(tmp_path / "m")
    store.restart()
    before = open_descriptors()
    for _ in range(5):
        store.restart()
    after = open_descriptors()
    store.close()
    shutil.rmtree(tmp_path / "m", ignore_errors=True)
    assert after <= before, f"{after - before} pipe descriptors leaked over 5 restarts"
