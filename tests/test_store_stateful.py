"""The whole store in one process: pysyncobj, the sealed journal, snapshots and restarts.

A hypothesis RuleBasedStateMachine drives a one-manager store (put, cas,
delete, transaction, snapshot, restart) and checks it against a plain dict
after every step. A restart builds a new Manager on the same data directory,
so every step after it runs on state rebuilt from the snapshot and the log.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from raftstore.node._bootstrap import bootstrap_actions, initialize_cluster
from raftstore.storage._keystore import KeyStore
from raftstore.manager._manager import Manager
from raftstore.storage._node_state import StatePaths
from raftstore.raft import RaftConfig
from raftstore.storage._snapshot_file import SnapshotReader
from raftstore.keyring import UpdateOutOfSequence
from raftstore.tools._local_cluster import free_port, wait_until

FAST_RAFT = RaftConfig(
    election_timeout_min=0.1,
    election_timeout_max=0.2,
    heartbeat_interval=0.02,
    leader_fallback_timeout=0.5,
    tick_period=0.01,
)


def stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class OneManager:
    """A manager built the way the daemon builds one, minus the sockets it does not need."""

    def __init__(self, root: Path) -> None:
        self.paths = StatePaths(root)
        self.paths.create()
        address = f"127.0.0.1:{free_port()}"
        init = initialize_cluster(
            self.paths, listen_addr=address, advertise_addr=address, autolock=False, now=datetime.now(timezone.utc)
        )
        self.node = init.node
        self.manager = self._start()
        self.manager.propose(bootstrap_actions(init))

    def _start(self) -> Manager:
        keystore = KeyStore(self.paths, self.node.cluster_id)
        keyring, kek = keystore.open_plain()
        manager = Manager(
            paths=self.paths,
            node=self.node,
            keystore=keystore,
            keyring=keyring,
            kek=kek,
            node_key_pem=keystore.read_node_key(None),
            clock=stamp,
            on_fatal=lambda message: None,
            raft_config=FAST_RAFT,
            event_log=lambda line: None,
        )
        manager.start()
        wait_until(lambda: manager.status().get("is_leader"), timeout=10, what="leader")
        return manager

    def restart(self) -> None:
        self.manager.stop()
        self.manager = self._start()

    def close(self) -> None:
        self.manager.stop()


keys = st.sampled_from(["a", "b", "c"])
values = st.binary(max_size=6)


def _snapshot_index(path: Path) -> int:
    """The index of the snapshot at ``path``, 0 without one."""
    if not path.exists():
        return 0
    with SnapshotReader(path) as reader:
        return reader.index


class StoreThroughRaft(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="raftstore-stateful-"))
        self.store = OneManager(self.root)
        self.model: dict[str, bytes] = {}
        self.versions: dict[str, int] = {}

    def teardown(self) -> None:
        if hasattr(self, "store"):
            self.store.close()
            shutil.rmtree(self.root, ignore_errors=True)

    @property
    def manager(self) -> Manager:
        return self.store.manager

    @rule(key=keys, value=values)
    def put(self, key: str, value: bytes) -> None:
        [result] = self.manager.propose([{"op": "put", "key": key, "value": value}])
        self.model[key] = value
        self.versions[key] = result["version"]

    @rule(key=keys, value=values, stale=st.booleans())
    def cas(self, key: str, value: bytes, stale: bool) -> None:
        version = self.versions.get(key, 0) + (7 if stale else 0)
        try:
            [result] = self.manager.propose([{"op": "cas", "key": key, "value": value, "version": version}])
        except UpdateOutOfSequence:
            assert stale
            return
        assert not stale
        self.model[key] = value
        self.versions[key] = result["version"]

    @rule(key=keys)
    def delete(self, key: str) -> None:
        try:
            self.manager.propose([{"op": "kv_delete", "key": key}])
        except Exception:
            assert key not in self.model
            return
        del self.model[key]
        del self.versions[key]

    @rule(writes=st.dictionaries(keys, values, min_size=1, max_size=3), fail=st.booleans())
    def transaction(self, writes: dict[str, bytes], fail: bool) -> None:
        actions = [{"op": "put", "key": k, "value": v} for k, v in writes.items()]
        if fail:
            actions.append({"op": "cas", "key": "never", "value": b"", "version": 99})
        try:
            results = self.manager.propose(actions)
        except UpdateOutOfSequence:
            assert fail
            return
        for (k, v), result in zip(writes.items(), results):
            self.model[k] = v
            self.versions[k] = result["version"]

    @rule()
    def snapshot(self) -> None:
        manager = self.manager
        path = self.store.paths.raft / "snapshot"
        before = _snapshot_index(path)
        manager.read_barrier()  # at least two applied entries since any earlier snapshot
        manager.read_barrier()
        manager.raft.force_snapshot()
        wait_until(
            lambda: _snapshot_index(path) > before,
            timeout=10,
            what="a new snapshot",
        )

    @precondition(lambda self: hasattr(self, "store"))
    @rule()
    def restart(self) -> None:
        self.store.restart()

    @invariant()
    def same_as_model(self) -> None:
        if not hasattr(self, "store"):
            return
        state = self.manager.read_barrier()
        assert {r["key"]: r["value"] for r in state.kv_list()} == self.model
        assert {r["key"]: r["version"] for r in state.kv_list()} == self.versions


TestStoreThroughRaft = StoreThroughRaft.TestCase
TestStoreThroughRaft.settings = settings(max_examples=8, stateful_step_count=15, deadline=None)


def test_restart_replays_log_after_snapshot(tmp_path: Path) -> None:
    store = OneManager(tmp_path / "n")
    try:
        for i in range(30):
            store.manager.propose([{"op": "put", "key": f"k{i}", "value": str(i).encode()}])
        store.manager.raft.force_snapshot()
        wait_until(lambda: (store.paths.raft / "snapshot").exists(), what="snapshot")
        for i in range(30, 40):
            store.manager.propose([{"op": "put", "key": f"k{i}", "value": str(i).encode()}])
        before = store.manager.read_barrier().kv_list()
        applied = store.manager.state.applied_index
        store.restart()
        wait_until(lambda: store.manager.state.applied_index >= applied, what="replay")
        assert store.manager.read_barrier().kv_list() == before  # values and versions
    finally:
        store.close()
