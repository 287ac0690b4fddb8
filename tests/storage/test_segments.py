"""Contract tests for the on-disk Raft log (raftstore/storage/_segments.py, _segment_format.py)."""

from __future__ import annotations

import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftstore.storage._segment_format import FRAME_OVERHEAD, HEADER_SIZE, MAGIC, SEGMENT_HEADER_SIZE
from raftstore.storage._segments import SegmentLog
from segment_chain import CHAIN
from raftstore.keyring import InvalidRecord

HYPO = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def seg_files(directory: Path) -> list[Path]:
    return sorted(p for p in Path(directory).iterdir() if p.name.endswith(".seg"))


def open_log(directory: Path, lines: list[str] | None = None, **kw) -> SegmentLog:
    if lines is None:
        lines = []
    return SegmentLog.open(directory, chain=CHAIN, log=lines.append, **kw)


def write_entries(directory: Path, entries, **kw) -> None:
    log = open_log(directory, **kw)
    for entry in entries:
        log.append(*entry)
    log.sync()
    log.close()


THREE = [(1, 1, b"alpha"), (2, 1, b"bravo-bravo"), (3, 2, b"charlie!")]


@pytest.fixture
def three_frames(tmp_path: Path) -> tuple[Path, Path, bytes, int]:
    """A log directory with one segment holding 3 frames; returns dir, file, bytes, offset of the last frame."""
    d = tmp_path / "log"
    log = open_log(d)
    log.append(*THREE[0])
    log.append(*THREE[1])
    last_offset = log.segments()[-1].size_bytes
    log.append(*THREE[2])
    log.sync()
    log.close()
    (path,) = seg_files(d)
    return d, path, path.read_bytes(), last_offset


# --------------------------------------------------------------------------- 1. round trip


entry_payloads = st.lists(st.tuples(st.integers(0, 2**40), st.binary(max_size=300)), min_size=0, max_size=40)


@HYPO
@given(start=st.integers(0, 2**40), items=entry_payloads, segment_bytes=st.integers(1, 700))
def test_round_trip_across_rolls_and_reopen(tmp_path, start, items, segment_bytes):
    with tempfile.TemporaryDirectory(dir=tmp_path) as raw:
        d = Path(raw) / "log"
        entries = [(start + i, term, payload) for i, (term, payload) in enumerate(items)]
        lines: list[str] = []
        write_entries(d, entries, segment_bytes=segment_bytes)
        log = open_log(d, lines, segment_bytes=segment_bytes)
        assert log.entries() == entries
        assert log.entries() == []  # handed over once
        assert lines == []
        if entries:
            assert log.first_index == entries[0][0]
            assert log.last_index == entries[-1][0]
            # several rolls happened when the entries do not fit one segment
            total = sum(len(p) + FRAME_OVERHEAD for _, _, p in entries)
            if total > segment_bytes + FRAME_OVERHEAD + 300:
                assert len(seg_files(d)) > 1
        else:
            assert log.first_index is None and log.last_index is None
        # appending after reopen continues the log
        nxt = (entries[-1][0] + 1) if entries else start
        log.append(nxt, 7, b"more")
        log.sync()
        log.close()
        assert open_log(d, segment_bytes=segment_bytes).entries() == entries + [(nxt, 7, b"more")]


def test_round_trip_many_segments(tmp_path):
    d = tmp_path / "log"
    entries = [(i, i // 5, bytes([i % 256]) * (i % 37)) for i in range(1, 201)]
    write_entries(d, entries, segment_bytes=256)
    assert len(seg_files(d)) > 10
    for p in seg_files(d):
        assert p.read_bytes().startswith(MAGIC)
        assert (p.stat().st_mode & 0o777) == 0o600
    log = open_log(d, segment_bytes=256)
    assert log.entries() == entries
    infos = log.segments()
    assert infos[0].first_index == 1 and infos[-1].last_index == 200
    # file names of rolled segments carry their first index
    for info in infos[1:]:
        if info.first_index is not None:
            assert info.path.name.endswith(f"-{info.first_index:016x}.seg")
    log.close()


def test_fresh_directory_is_private_and_gets_its_first_segment_with_the_first_append(tmp_path):
    d = tmp_path / "a" / "b"
    log = open_log(d)
    assert d.is_dir()
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    assert seg_files(d) == [] and log.segments() == []
    assert log.entries() == [] and log.first_index is None and log.last_index is None
    log.append(7, 1, b"first")
    (p,) = seg_files(d)
    assert p.name == f"{1:016x}-{7:016x}.seg"
    assert p.read_bytes().startswith(MAGIC)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    log.close()


# --------------------------------------------------------------------------- 2. every byte flip is refused


@pytest.mark.parametrize("mask", [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xFF])
def test_every_single_byte_flip_is_refused(three_frames, mask):
    """Every offset, the last frame included: a flipped byte is damage, never a "torn" tail.

    No single-byte change can give the file a torn shape: a changed length
    (which could make the last frame seem to run past the end of the file)
    fails the header checksum first, and no frame is one byte away from
    being all zeros. So every flip must refuse start-up, and none may be
    repaired (no log line, nothing cut).
    """
    d, path, original, last_offset = three_frames
    for offset in range(len(original)):
        damaged = bytearray(original)
        damaged[offset] ^= mask
        path.write_bytes(bytes(damaged))
        lines: list[str] = []
        with pytest.raises(InvalidRecord) as info:
            open_log(d, lines)
        message = str(info.value)
        assert message.startswith(f"raft log damaged: {path} at offset "), (offset, message)
        assert lines == [], (offset, lines)  # not taken for a torn write
        assert path.read_bytes() == bytes(damaged), offset  # nothing was cut
        assert seg_files(d) == [path]
        if offset >= last_offset + HEADER_SIZE:
            assert f"offset {last_offset}: payload checksum mismatch" in message
        elif offset >= last_offset:
            assert f"offset {last_offset}: frame header checksum mismatch" in message
    path.write_bytes(original)
    assert open_log(d).entries() == THREE


def test_refusal_names_the_frame_offset(three_frames):
    d, path, original, last_offset = three_frames
    damaged = bytearray(original)
    damaged[-1] ^= 0xFF  # payload CRC of the last complete frame
    path.write_bytes(bytes(damaged))
    with pytest.raises(InvalidRecord, match=f"offset {last_offset}"):
        open_log(d)


# --------------------------------------------------------------------------- 3. torn tail is repaired


def test_truncation_inside_last_frame_is_repaired(three_frames):
    d, path, original, last_offset = three_frames
    for cut in range(last_offset + 1, len(original)):
        path.write_bytes(original[:cut])
        lines: list[str] = []
        log = open_log(d, lines)
        assert log.entries() == THREE[:2], cut
        assert log.last_index == 2
        assert len(lines) == 1 and str(path) in lines[0], (cut, lines)
        assert f"at offset {last_offset}" in lines[0] and f"of {cut - last_offset} bytes" in lines[0], lines
        assert path.read_bytes() == original[:last_offset]
        log.append(3, 5, b"replacement")
        log.sync()
        log.close()
        again: list[str] = []
        assert open_log(d, again).entries() == THREE[:2] + [(3, 5, b"replacement")]
        assert again == []


def test_truncation_at_frame_boundary_is_not_a_repair(three_frames):
    d, path, original, last_offset = three_frames
    path.write_bytes(original[:last_offset])
    lines: list[str] = []
    assert open_log(d, lines).entries() == THREE[:2]
    assert lines == []


def test_last_frame_zeroed_is_a_torn_write(three_frames):
    """Size grew but the data never reached the disk: the last frame reads as zeros."""
    d, path, original, last_offset = three_frames
    path.write_bytes(original[:last_offset] + b"\0" * (len(original) - last_offset))
    lines: list[str] = []
    assert open_log(d, lines).entries() == THREE[:2]
    assert len(lines) == 1 and f"{path} at offset {last_offset}" in lines[0]
    assert path.read_bytes() == original[:last_offset]


def test_zeroed_payload_behind_a_valid_header_is_damage(three_frames):
    """A complete header with a payload that fails its checksum is damage, even in the last frame."""
    d, path, original, last_offset = three_frames
    damaged = original[: last_offset + HEADER_SIZE] + b"\0" * (len(original) - last_offset - HEADER_SIZE)
    path.write_bytes(damaged)
    with pytest.raises(InvalidRecord, match=f"offset {last_offset}: payload checksum mismatch"):
        open_log(d)
    assert path.read_bytes() == damaged


@pytest.mark.parametrize("zeros", range(1, 65))
def test_zero_tail_is_repaired(three_frames, zeros):
    d, path, original, _ = three_frames
    path.write_bytes(original + b"\0" * zeros)
    lines: list[str] = []
    log = open_log(d, lines)
    assert log.entries() == THREE
    assert len(lines) == 1 and str(path) in lines[0]
    assert path.read_bytes() == original
    log.append(4, 2, b"delta")
    log.sync()
    log.close()
    again: list[str] = []
    assert open_log(d, again).entries() == THREE + [(4, 2, b"delta")]
    assert again == []


def test_torn_header_of_last_segment_is_repaired(tmp_path):
    d = tmp_path / "log"
    write_entries(d, [(1, 1, b"a"), (2, 1, b"b")], segment_bytes=1)
    files = seg_files(d)
    assert len(files) >= 2
    header = files[-1].read_bytes()[:SEGMENT_HEADER_SIZE]  # chained to entry 1
    for n in range(SEGMENT_HEADER_SIZE):
        files[-1].write_bytes(header[:n])
        lines: list[str] = []
        log = open_log(d, lines, segment_bytes=1)
        assert log.entries() == [(1, 1, b"a")]
        assert len(lines) == 1 and str(files[-1]) in lines[0]
        assert files[-1].read_bytes() == header
        log.append(2, 1, b"b")  # the repaired segment continues the chain
        log.close()
        assert open_log(d, segment_bytes=1).entries() == [(1, 1, b"a"), (2, 1, b"b")]


# --------------------------------------------------------------------------- 4. torn non-last segment


def test_torn_frame_in_earlier_segment_is_refused(tmp_path):
    d = tmp_path / "log"
    entries = [(i, 1, b"x" * 20) for i in range(1, 7)]
    write_entries(d, entries, segment_bytes=100)
    files = seg_files(d)
    assert len(files) >= 2
    first = files[0]
    data = first.read_bytes()
    for cut in (len(data) - 1, len(data) - 10, len(data) - 30):
        first.write_bytes(data[:cut])
        with pytest.raises(InvalidRecord) as info:
            open_log(d, segment_bytes=100)
        assert str(first) in str(info.value) and "offset" in str(info.value)
        assert first.read_bytes() == data[:cut]
    # a zero tail in an earlier segment is not cut either
    first.write_bytes(data + b"\0" * 30)
    with pytest.raises(InvalidRecord, match="offset"):
        open_log(d, segment_bytes=100)
    first.write_bytes(data)
    assert open_log(d, segment_bytes=100).entries() == entries


def test_torn_magic_of_earlier_segment_is_refused(tmp_path):
    d = tmp_path / "log"
    write_entries(d, [(1, 1, b"a"), (2, 1, b"b")], segment_bytes=1)
    files = seg_files(d)
    files[0].write_bytes(MAGIC[:3])
    with pytest.raises(InvalidRecord, match="bad magic"):
        open_log(d, segment_bytes=1)


def test_bad_segment_name_is_refused(tmp_path):
    d = tmp_path / "log"
    write_entries(d, [(1, 1, b"a")])
    (d / "junk.seg").write_bytes(MAGIC)
    with pytest.raises(InvalidRecord, match="junk.seg"):
        open_log(d)


def test_non_segment_files_are_ignored(tmp_path):
    d = tmp_path / "log"
    write_entries(d, [(1, 1, b"a")])
    (d / ".tmp-whatever").write_bytes(b"garbage")
    assert open_log(d).entries() == [(1, 1, b"a")]


def test_two_segments_with_one_sequence_number_are_refused(tmp_path):
    d = tmp_path / "log"
    write_entries(d, [(1, 1, b"a")])
    (first,) = seg_files(d)
    twin = d / f"{1:016x}-{9:016x}.seg"
    twin.write_bytes(MAGIC)
    with pytest.raises(InvalidRecord, match="sequence number 1"):
        open_log(d)


def test_repair_goes_to_the_logging_module_without_a_log_callable(three_frames, caplog):
    d, path, original, last_offset = three_frames
    path.write_bytes(original[:-3])
    with caplog.at_level("WARNING", logger="raftstore.segments"):
        log = SegmentLog.open(d, chain=CHAIN)
    assert log.entries() == THREE[:2]
    assert any(str(path) in r.getMessage() and "cut a torn write" in r.getMessage() for r in caplog.records)
    log.close()


def test_segment_info(tmp_path):
    d = tmp_path / "log"
    frame = FRAME_OVERHEAD + 30
    log = open_log(d, segment_bytes=SEGMENT_HEADER_SIZE + 2 * frame)  # room for two frames
    for i in range(1, 8):
        log.append(i, 1, b"x" * 30)
    infos = log.segments()
    assert [(s.first_index, s.last_index) for s in infos] == [(1, 2), (3, 4), (5, 6), (7, 7)]
    two, one = SEGMENT_HEADER_SIZE + 2 * frame, SEGMENT_HEADER_SIZE + frame
    assert [s.size_bytes for s in infos] == [two, two, two, one]
    assert [s.path for s in infos] == seg_files(d)
    assert all(s.path.stat().st_size == s.size_bytes for s in infos)
    log.close()
