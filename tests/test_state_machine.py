"""The replicated store's state machine, on its own (no Raft, no disk)."""

from __future__ import annotations

import os

import msgpack
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from raftstore.state._state_machine import RetiredKey, StateMachine

NOW = "2026-01-01T00:00:00.000000Z"


def apply(sm: StateMachine, index: int, *actions_per_proposal, key_id: int = 1, ids=None):
    proposals = [
        (ids[i] if ids else os.urandom(16), NOW, list(actions)) for i, actions in enumerate(actions_per_proposal)
    ]
    outcomes, effects = sm.apply_batch(index, key_id, proposals)
    return outcomes, effects


def test_put_get_and_versions() -> None:
    sm = StateMachine()
    [out], _ = apply(sm, 5, [{"op": "put", "key": "a", "value": b"1"}])
    assert out.ok and out.results == [{"key": "a", "version": 5}]
    apply(sm, 6, [{"op": "put", "key": "a", "value": b"2"}])
    record = sm.kv_get("a")
    assert record["value"] == b"2" and record["version"] == 6 and record["created_version"] == 5


def test_cas_by_version() -> None:
    sm = StateMachine()
    [out], _ = apply(sm, 2, [{"op": "cas", "key": "k", "value": b"x", "version": 0}])
    assert out.ok
    [out], _ = apply(sm, 3, [{"op": "cas", "key": "k", "value": b"y", "version": 0}])
    assert not out.ok and out.error_code == "UpdateOutOfSequence" and out.error_message == (
        "update out of sequence: expected version 0, the key is at version 2")
    [out], _ = apply(sm, 4, [{"op": "cas", "key": "k", "value": b"y", "version": 2}])
    assert out.ok and sm.kv_get("k")["value"] == b"y"


def test_transaction_is_all_or_nothing() -> None:
    sm = StateMachine()
    apply(sm, 2, [{"op": "put", "key": "a", "value": b"1"}])
    [out], _ = apply(
        sm,
        3,
        [
            {"op": "put", "key": "a", "value": b"changed"},
            {"op": "put", "key": "b", "value": b"new"},
            {"op": "cas", "key": "a", "value": b"z", "version": 99},
        ],
    )
    assert not out.ok
    assert sm.kv_get("a")["value"] == b"1"
    assert sm.kv_list() == [sm.kv_get("a")]


def test_duplicate_proposal_returns_first_outcome() -> None:
    sm = StateMachine()
    pid = os.urandom(16)
    [first], _ = apply(sm, 2, [{"op": "put", "key": "a", "value": b"1"}], ids=[pid])
    [again], _ = apply(sm, 3, [{"op": "put", "key": "a", "value": b"2"}], ids=[pid])
    assert again.to_wire() == first.to_wire()
    assert sm.kv_get("a")["value"] == b"1"


def test_object_names_unique_case_folded_and_update_sequence() -> None:
    sm = StateMachine()
    create = {"op": "create", "table": "configs", "id": "c1", "name": "Web", "spec": {"data": b"x"}}
    [out], _ = apply(sm, 2, [create])
    assert out.ok
    [out], _ = apply(sm, 3, [dict(create, id="c2", name="wEB")])
    assert out.error_code == "AlreadyExists"
    [out], _ = apply(sm, 4, [{"op": "update", "table": "configs", "id": "c1", "version": 1, "labels": {"a": "b"}}])
    assert out.error_message == "update out of sequence"
    [out], _ = apply(sm, 5, [{"op": "update", "table": "configs", "id": "c1", "version": 2, "spec": {"data": b"y"}}])
    assert out.error_message == "only updates to labels are allowed"
    [out], _ = apply(sm, 6, [{"op": "update", "table": "configs", "id": "c1", "version": 2, "labels": {"a": "b"}}])
    assert out.ok and sm.get("configs", "web")["labels"] == {"a": "b"} and sm.get("configs", "c1")["version"] == 6


def test_rename_frees_old_name_in_same_transaction() -> None:
    sm = StateMachine()
    apply(sm, 2, [{"op": "create", "table": "nodes", "id": "n1", "name": "a"}])
    [out], _ = apply(
        sm,
        3,
        [
            {"op": "delete", "table": "nodes", "id": "n1"},
            {"op": "create", "table": "nodes", "id": "n2", "name": "A"},
        ],
    )
    assert out.ok and sm.get("nodes", "a")["id"] == "n2"


def test_events_and_compaction_message() -> None:
    sm = StateMachine(event_history=3)
    for i in range(2, 8):
        apply(sm, i, [{"op": "put", "key": f"k{i}", "value": b"VALUE-BYTES"}])
    assert [e.version for e in sm.events_since(4)] == [5, 6, 7]
    with pytest.raises(Exception, match="has been compacted"):
        sm.events_since(1)
    assert all(b"VALUE-BYTES" not in msgpack.packb(e.to_dict()) for e in sm.events_since(4))


def test_rotation_retires_older_terms_deterministically() -> None:
    sm = StateMachine()
    [out], effects = apply(sm, 2, [{"op": "rotate_dek", "key_id": 2, "wrapped": b"sealed"}])
    assert out.ok and effects[0][0] == "dek_rotated"
    [out], _ = apply(sm, 3, [{"op": "put", "key": "a", "value": b"1"}], key_id=1)
    assert out.error_code == RetiredKey().code
    [out], _ = apply(sm, 4, [{"op": "put", "key": "a", "value": b"1"}], key_id=2)
    assert out.ok


def test_records_are_counted_per_dek_term_one_per_entry_and_survive_a_snapshot() -> None:
    sm = StateMachine()
    apply(sm, 2, [{"op": "put", "key": "a", "value": b"1"}], [{"op": "put", "key": "b", "value": b"2"}])
    apply(sm, 3, [{"op": "put", "key": "a", "value": b"3"}])
    assert sm.records_sealed(1) == 2  # a batch of proposals is one sealed record
    apply(sm, 4, [{"op": "rotate_dek", "key_id": 2, "wrapped": b"sealed"}])
    apply(sm, 5, [{"op": "put", "key": "a", "value": b"4"}], key_id=2)
    assert sm.records_sealed(1) == 0 and sm.records_sealed(2) == 1  # a retired term is forgotten
    copy = StateMachine()
    copy.load(msgpack.unpackb(sm.encode(), raw=False))
    assert copy.records_sealed(2) == 1 and copy.digest() == sm.digest()
    apply(copy, 6, [{"op": "put", "key": "a", "value": b"5"}], key_id=2)
    assert copy.records_sealed(2) == 2


def test_a_snapshot_without_counts_starts_from_an_upper_bound() -> None:
    sm = StateMachine()
    apply(sm, 9, [{"op": "put", "key": "a", "value": b"1"}])
    dump = msgpack.unpackb(sm.encode(), raw=False)
    del dump["keys"]["records"]
    copy = StateMachine()
    copy.load(dump)
    assert copy.records_sealed(1) == 9  # every entry up to the snapshot may have used term 1


def test_dump_load_round_trip_and_digest() -> None:
    sm = StateMachine()
    apply(sm, 2, [{"op": "put", "key": "a", "value": b"1"}], [{"op": "create", "table": "secrets", "id": "s", "name": "s"}])
    copy = StateMachine()
    copy.load(msgpack.unpackb(sm.encode(), raw=False))
    assert copy.digest() == sm.digest()
    assert copy.applied_index == 2


def test_snapshot_parts_are_cut_near_their_size_and_hold_everything() -> None:
    sm = StateMachine()
    for i in range(1, 101):
        apply(sm, i, [{"op": "put", "key": f"k{i:03}", "value": os.urandom(100)}])
    apply(sm, 101, [{"op": "create", "table": "configs", "id": "s", "name": "s", "spec": {"data": b"x"}}])
    parts = list(sm.snapshot_view().parts(part_bytes=1000))
    assert len(parts) > 10
    assert max(len(p) for p in parts) < 1000 + 200  # one record past the cut at most
    copy = StateMachine()
    copy.load_parts(parts)
    assert copy.digest() == sm.digest() and copy.applied_index == 101
    assert copy.get("configs", "s")["name"] == "s"


@pytest.mark.parametrize("parts", [[], [msgpack.packb([1, 2])], [msgpack.packb({"format": 9})]])
def test_parts_that_are_not_a_state_are_refused_and_change_nothing(parts: list[bytes]) -> None:
    from raftstore.keyring import InvalidArgument

    sm = StateMachine()
    apply(sm, 1, [{"op": "put", "key": "a", "value": b"1"}])
    before = sm.digest()
    with pytest.raises(InvalidArgument):
        sm.load_parts(parts)
    assert sm.digest() == before


def test_a_bad_part_after_a_good_header_is_refused_with_the_old_state_already_gone() -> None:
    """The old state goes before the new one is built (no two copies); the node then stops and reloads from disk."""
    from raftstore.keyring import InvalidArgument

    sm = StateMachine()
    apply(sm, 1, [{"op": "put", "key": "a", "value": b"1"}])
    header = msgpack.packb({"format": 2, "applied_index": 1, "keys": {"active": 1, "retired_below": 0}})
    with pytest.raises(InvalidArgument):
        sm.load_parts([header, msgpack.packb(["nope", None, []])])
    assert sm.kv_list() == []


def test_malformed_actions_are_outcomes_not_crashes() -> None:
    sm = StateMachine()
    for actions in ([{"op": "nope"}], [{"op": "put"}], "not a list", [{"op": "create", "table": "bogus", "id": "x", "name": "x"}]):
        [out], _ = apply(sm, sm.applied_index + 1, actions)
        assert not out.ok


# --------------------------------------------------------------------- stateful

keys = st.sampled_from(["a", "b", "c", "d"])
values = st.binary(min_size=0, max_size=8)


class StoreModel(RuleBasedStateMachine):
    """The store (put, cas, delete, transaction, snapshot, restart) against a dict."""

    @initialize()
    def setup(self) -> None:
        self.sm = StateMachine()
        self.model: dict[str, tuple[bytes, int]] = {}
        self.index = 1
        self.snapshot: bytes | None = None
        self.log: list[tuple[int, list]] = []  # entries after the snapshot, for "restart"

    def _apply(self, actions: list) -> bool:
        self.index += 1
        proposal = (os.urandom(16), NOW, actions)
        [out], _ = self.sm.apply_batch(self.index, 1, [proposal])
        self.log.append((self.index, [proposal]))
        return out.ok

    @rule(key=keys, value=values)
    def put(self, key: str, value: bytes) -> None:
        assert self._apply([{"op": "put", "key": key, "value": value}])
        self.model[key] = (value, self.index)

    @rule(key=keys, value=values, stale=st.booleans())
    def cas(self, key: str, value: bytes, stale: bool) -> None:
        current = self.model.get(key, (b"", 0))[1]
        expected = current + 1 if stale else current
        ok = self._apply([{"op": "cas", "key": key, "value": value, "version": expected}])
        assert ok == (not stale)
        if ok:
            self.model[key] = (value, self.index)

    @rule(key=keys)
    def delete(self, key: str) -> None:
        ok = self._apply([{"op": "kv_delete", "key": key}])
        assert ok == (key in self.model)
        self.model.pop(key, None)

    @rule(writes=st.lists(st.tuples(keys, values), min_size=1, max_size=3), fail=st.booleans())
    def transaction(self, writes: list, fail: bool) -> None:
        actions = [{"op": "put", "key": k, "value": v} for k, v in writes]
        if fail:
            actions.append({"op": "cas", "key": "zzz", "value": b"", "version": 12345})
        ok = self._apply(actions)
        assert ok == (not fail)
        if ok:
            for k, v in writes:
                self.model[k] = (v, self.index)

    @rule()
    def snapshot_now(self) -> None:
        """Freeze a view now; it is packed only at restart, after later writes (as the snapshot thread does)."""
        self.snapshot = self.sm.snapshot_view()
        self.log = []

    @precondition(lambda self: self.snapshot is not None)
    @rule(whole=st.booleans(), part_bytes=st.sampled_from([1, 16, 4096]))
    def restart(self, whole: bool, part_bytes: int) -> None:
        """Rebuild from the last snapshot plus the entries after it, as a manager does (format 1 or 2)."""
        fresh = StateMachine()
        if whole:
            fresh.load(msgpack.unpackb(msgpack.packb(self.snapshot.dump(), use_bin_type=True), raw=False))
        else:
            fresh.load_parts(list(self.snapshot.parts(part_bytes=part_bytes)))
        for index, proposals in self.log:
            fresh.apply_batch(index, 1, proposals)
        assert fresh.digest() == self.sm.digest()
        self.sm = fresh

    @invariant()
    def matches_model(self) -> None:
        if not hasattr(self, "sm"):
            return
        actual = {r["key"]: (r["value"], r["version"]) for r in self.sm.kv_list()}
        assert actual == self.model


TestStoreModel = StoreModel.TestCase
TestStoreModel.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
