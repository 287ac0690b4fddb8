"""Every parser that takes outside bytes raises its own error for bad input, and nothing else."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftstore import InvalidArgument, InvalidCertificate, InvalidRecord, ProtocolError
from raftstore.manager._backup import read_backup
from raftstore.net._frames import FrameBuffer, decode_payload
from raftstore.net._addresses import split_host_port
from raftstore.state._objects import validate_name
from raftstore.storage._segment_format import MAGIC
from raftstore.storage._segments import SegmentLog
from segment_chain import CHAIN
from raftstore.storage._snapshot_file import decode_snapshot, encode_snapshot
from raftstore.state._state_machine import StateMachine
from raftstore.keyring import JoinToken, UnlockKey, create_root_ca, issue_certificate

NOW = datetime(2026, 11, 23, tzinfo=timezone.utc)
ROOT = create_root_ca(NOW)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@given(st.binary(max_size=4096))
@FUZZ
def test_frames(data: bytes) -> None:
    buffer = FrameBuffer(max_bytes=1024)
    buffer.feed(data)
    try:
        for frame in buffer.frames():
            assert frame is not None or frame is None
    except ProtocolError:
        pass
    try:
        decode_payload(data)
    except ProtocolError:
        pass


@given(st.binary(max_size=2048))
@FUZZ
def test_csrs(data: bytes) -> None:
    for candidate in (data, b"-----BEGIN CERTIFICATE REQUEST-----\n" + data + b"\n-----END CERTIFICATE REQUEST-----\n"):
        try:
            issue_certificate(ROOT, candidate, node_id="n" * 25, cluster_id="c" * 25, role="swarm-worker",
                              now=NOW, validity=timedelta(hours=2))
        except InvalidCertificate:
            pass


@given(st.one_of(st.text(max_size=100), st.binary(max_size=100)))
@FUZZ
def test_tokens_and_unlock_keys(value: object) -> None:
    for parse, error in ((JoinToken.parse, Exception), (UnlockKey.parse, Exception)):
        try:
            parse(value)
        except error as caught:
            assert type(caught).__name__ in ("InvalidJoinToken", "InvalidUnlockKey")


@given(st.text(max_size=80))
@FUZZ
def test_names_and_addresses(text: str) -> None:
    for parse in (validate_name, split_host_port):
        try:
            parse(text)
        except InvalidArgument:
            pass


@given(st.binary(max_size=2048))
@FUZZ
def test_snapshot_and_backup_files(data: bytes) -> None:
    for candidate in (data, encode_snapshot(3, 1, data), b"RSSNAP01" + data):
        try:
            decode_snapshot(candidate, "fuzz")
        except InvalidRecord:
            pass
        try:
            read_backup(candidate, "fuzz")
        except InvalidRecord:
            pass


@given(st.binary(max_size=1024))
@settings(max_examples=150, deadline=None)
def test_segment_files(tmp_path_factory, data: bytes) -> None:  # type: ignore[no-untyped-def]
    directory: Path = tmp_path_factory.mktemp("seg")
    (directory / "0000000000000001-0000000000000001.seg").write_bytes(MAGIC + data)
    try:
        log = SegmentLog.open(directory, chain=CHAIN, log=lambda line: None)
        log.close()
    except InvalidRecord:
        pass


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.binary(max_size=8),
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
                    max_leaves=20))
@FUZZ
def test_state_machine_actions_never_crash_it(action: object) -> None:
    sm = StateMachine()
    before = sm.digest()
    [outcome], _ = sm.apply_batch(2, 1, [(b"\x01" * 16, "now", [action])])
    if not outcome.ok:
        assert sm.kv_list() == [] and all(not sm.list(t) for t in ("nodes", "secrets", "configs"))
    assert isinstance(msgpack.packb(sm.dump()), bytes)
    del before
