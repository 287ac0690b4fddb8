"""The seams we use in pysyncobj: if an upgrade moves one, these fail loudly.

``raftstore._pysyncobj_adapter`` replaces pysyncobj's journal factory, its
pickle module and its apply step, drives ``doTick`` itself and reads a few
private attributes. Each is checked here against the installed pysyncobj.
"""

from __future__ import annotations

import inspect
import re

import pysyncobj
import pysyncobj.poller
import pysyncobj.syncobj as syncobj_module
from pysyncobj import SyncObj

from raftstore import _pysyncobj_adapter as adapter
from raftstore import _raft_transport as transport


def test_pinned_version() -> None:
    from pysyncobj.version import VERSION

    assert VERSION == "0.3.17", "re-check every seam in _pysyncobj_adapter before moving the pin"


def test_journal_factory_seam() -> None:
    source = inspect.getsource(SyncObj.__init__)
    assert "createJournal(self.__conf.journalFile)" in source
    assert syncobj_module.createJournal is adapter._create_journal


def test_pickle_is_replaced_and_only_dumps_loads_are_used() -> None:
    assert syncobj_module.pickle is adapter._MsgpackCodec
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


def test_unknown_command_type_is_skipped_by_pysyncobj() -> None:
    # Our ENTRY_TYPE must be one pysyncobj would not interpret itself.
    source = inspect.getsource(syncobj_module._COMMAND_TYPE)
    values = {int(v) for v in re.findall(r"=\s*(\d+)", source)}
    assert adapter.ENTRY_TYPE not in values


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
    member = adapter.RaftMember("n1", "127.0.0.1:1")
    decoded = adapter._MsgpackCodec.loads(adapter._MsgpackCodec.dumps(["add", "n1", member]))
    assert decoded[0] == "add" and decoded[2] == member and decoded[2].address == "127.0.0.1:1"


def test_snapshot_receive_seam() -> None:
    # _SnapshotReceiver replaces the serializer instance that receives a leader's snapshot.
    source = inspect.getsource(SyncObj)
    assert "self.__serializer = Serializer(" in source
    assert "if self.__serializer.setTransmissionData(serialized):\n                    self.__loadDumpFile(clearJournal=True)" in source
    assert hasattr(pysyncobj.serializer.Serializer, "setTransmissionData")
