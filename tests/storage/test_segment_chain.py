"""The chain tags of the segment log: a record moved, swapped, replayed or re-keyed on disk is refused at open."""

from __future__ import annotations

import struct
from pathlib import Path

import crc32c
import pytest

from raftstore.storage._segment_format import FRAME_OVERHEAD, HEADER_SIZE, SEGMENT_HEADER_SIZE
from raftstore.storage._segments import SegmentLog
from raftstore.keyring import InvalidRecord, Keyring, LogChain

CLUSTER = "chain-test-cluster"


class Keys:
    """A keyring the test can rotate under an open log (as the manager does)."""

    def __init__(self) -> None:
        self.keyring = Keyring.generate()
        self.chain = LogChain(lambda: self.keyring, CLUSTER)


def open_log(d: Path, keys: Keys, **kw) -> SegmentLog:
    return SegmentLog.open(d, chain=keys.chain, log=lambda line: None, **kw)


def write(d: Path, keys: Keys, entries, **kw) -> None:
    log = open_log(d, keys, **kw)
    for entry in entries:
        log.append(*entry)
    log.close()


def frames(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, payload start, payload end) of each frame."""
    out, pos = [], SEGMENT_HEADER_SIZE
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        out.append((pos, pos + HEADER_SIZE, pos + HEADER_SIZE + length))
        pos += FRAME_OVERHEAD + length
    return out


def recrc(data: bytes) -> bytes:
    """Every frame's CRCs rewritten to hold, as an attacker without the key can."""
    out = bytearray(data)
    for offset, start, end in frames(data):
        head_crc = crc32c.crc32c(bytes(out[offset : start - 4]))
        out[start - 4 : start] = struct.pack(">I", head_crc)
        out[end + 16 : end + 20] = struct.pack(">I", crc32c.crc32c(bytes(out[start : end + 16]), value=head_crc))
    return bytes(out)


ENTRIES = [(i, 1 + i // 4, b"record-%02d" % i) for i in range(1, 11)]


@pytest.fixture
def written(tmp_path: Path) -> tuple[Path, Keys, Path, bytes]:
    d, keys = tmp_path / "log", Keys()
    write(d, keys, ENTRIES)
    (path,) = sorted(d.glob("*.seg"))
    return d, keys, path, path.read_bytes()


def test_a_clean_log_opens(written) -> None:
    d, keys, _, _ = written
    assert open_log(d, keys).entries() == ENTRIES


def test_swapped_payloads_are_refused_at_the_first_one(written) -> None:
    d, keys, path, data = written
    f = frames(data)
    (a_off, a0, a1), (_, b0, b1) = f[2], f[6]  # same sizes: the swap keeps every offset
    swapped = bytearray(data)
    swapped[a0:a1], swapped[b0:b1] = data[b0:b1], data[a0:a1]
    path.write_bytes(recrc(bytes(swapped)))
    with pytest.raises(InvalidRecord, match=f"raft log damaged: {path} at offset {a_off}: entry 3: chain MAC mismatch"):
        open_log(d, keys)
    assert path.read_bytes() == recrc(bytes(swapped))  # nothing cut


def test_swapped_payloads_with_their_tags_are_refused(written) -> None:
    d, keys, path, data = written
    f = frames(data)
    (a_off, a0, a1), (_, b0, b1) = f[2], f[6]
    swapped = bytearray(data)
    swapped[a0 : a1 + 16], swapped[b0 : b1 + 16] = data[b0 : b1 + 16], data[a0 : a1 + 16]
    path.write_bytes(recrc(bytes(swapped)))
    with pytest.raises(InvalidRecord, match=f"at offset {a_off}: entry 3: chain MAC mismatch"):
        open_log(d, keys)


def test_a_replayed_record_is_refused(written) -> None:
    """Entry 9's payload and tag replaced by entry 8's: a valid record of this log, in the wrong place."""
    d, keys, path, data = written
    f = frames(data)
    (_, a0, a1), (b_off, b0, b1) = f[7], f[8]
    replayed = bytearray(data)
    replayed[b0 : b1 + 16] = data[a0 : a1 + 16]
    path.write_bytes(recrc(bytes(replayed)))
    with pytest.raises(InvalidRecord, match=f"at offset {b_off}: entry 9: chain MAC mismatch"):
        open_log(d, keys)


def test_a_changed_term_is_refused(written) -> None:
    d, keys, path, data = written
    off = frames(data)[4][0]
    changed = bytearray(data)
    changed[off + 12 : off + 20] = struct.pack(">Q", 99)
    path.write_bytes(recrc(bytes(changed)))
    with pytest.raises(InvalidRecord, match=f"at offset {off}: entry 5: chain MAC mismatch"):
        open_log(d, keys)


def test_segments_swapped_by_name_are_refused(tmp_path: Path) -> None:
    """Two segments of equal index ranges from two logs: the anchor gives the foreign one away."""
    keys = Keys()
    a, b = tmp_path / "a", tmp_path / "b"
    entries_b = [(i, t, p.upper()) for i, t, p in ENTRIES]
    write(a, keys, ENTRIES, segment_bytes=200)
    write(b, keys, entries_b, segment_bytes=200)
    files_a, files_b = sorted(a.glob("*.seg")), sorted(b.glob("*.seg"))
    assert len(files_a) >= 3 and [p.name for p in files_a] == [p.name for p in files_b]
    files_a[1].write_bytes(files_b[1].read_bytes())
    with pytest.raises(InvalidRecord, match=f"{files_a[1]} at offset 0: the chain anchor"):
        open_log(a, keys, segment_bytes=200)


def test_rotation_chains_under_the_new_term_and_needs_every_term_on_disk(tmp_path: Path) -> None:
    d, keys = tmp_path / "log", Keys()
    log = open_log(d, keys)
    log.append(1, 1, b"under term 1")
    keys.keyring = keys.keyring.rotated()
    log.append(2, 1, b"under term 2")
    assert log.chain_key_ids() == {1, 2}
    log.close()
    assert open_log(d, keys).entries() == [(1, 1, b"under term 1"), (2, 1, b"under term 2")]
    keys.keyring = keys.keyring.without([1])
    (path,) = sorted(d.glob("*.seg"))
    with pytest.raises(InvalidRecord, match=f"{path} at offset {SEGMENT_HEADER_SIZE}: entry 1: chained under unknown key id 1"):
        open_log(d, keys)


def test_compaction_truncation_and_reset_keep_a_chain_that_opens(tmp_path: Path) -> None:
    d, keys = tmp_path / "log", Keys()
    log = open_log(d, keys, segment_bytes=200)
    for entry in ENTRIES:
        log.append(*entry)
    first_segments = len(log.segments())
    assert first_segments >= 3
    log.drop_before(6)  # compaction: the chain restarts at the first segment left
    log.truncate_after(7)  # Raft conflict: re-append after entry 7
    log.append(8, 9, b"new eight")
    log.close()
    expected = [e for e in ENTRIES if e[0] >= log.segments()[0].first_index and e[0] <= 7] + [(8, 9, b"new eight")]
    log = open_log(d, keys, segment_bytes=200)
    assert log.entries() == expected
    log.reset([(20, 9, b"after a snapshot"), (21, 9, b"next")])
    log.close()
    assert open_log(d, keys, segment_bytes=200).entries() == [(20, 9, b"after a snapshot"), (21, 9, b"next")]


def test_another_clusters_key_does_not_open_the_log(written) -> None:
    d, keys, path, _ = written
    other = LogChain(lambda: keys.keyring, "another-cluster")
    with pytest.raises(InvalidRecord, match=f"{path} at offset {SEGMENT_HEADER_SIZE}: entry 1: chain MAC mismatch"):
        SegmentLog.open(d, chain=other)


def test_a_format_1_segment_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    d = tmp_path / "log"
    d.mkdir()
    body = struct.pack(">IQQ", 1, 1, 1)
    head_crc = crc32c.crc32c(body)
    frame = body + struct.pack(">I", head_crc) + b"a" + struct.pack(">I", crc32c.crc32c(b"a", value=head_crc))
    path = d / f"{1:016x}-{1:016x}.seg"
    path.write_bytes(b"RSSEG001" + frame)
    with pytest.raises(InvalidRecord, match=f"{path} at offset 0: a format 1 segment .* is refused; join this manager"):
        open_log(d, Keys())
    assert path.read_bytes() == b"RSSEG001" + frame
