"""Finding 8: an attacker who can write a manager's disk swaps two sealed records in a segment.

No key is needed: the attacker finds the two frames by their sizes, swaps
what follows each frame header, and rewrites every checksum so that the CRCs
hold. Start-up must refuse with the file and the offset; it must never serve
the swapped value.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import crc32c
import pytest

from raftstore.tools._local_cluster import Cluster, Node, wait_until

pytestmark = pytest.mark.integration

# The frame layout, as an attacker reads it off the disk (raftstore/storage/_segment_format.py's docstring).
SEGMENT_HEADER = 8 + 16 + 4  # magic, chain anchor, CRC
FRAME_HEADER = struct.Struct(">IQQII")  # payload length, index, term, MAC key id, header CRC
MAC_SIZE = 16


def _frames(data: bytes) -> list[tuple[int, int, bytes]]:
    """(offset, index, body) of every frame; body = payload and MAC, what the attacker moves."""
    frames = []
    pos = SEGMENT_HEADER
    while pos < len(data):
        length, index, _term, _key_id, _crc = FRAME_HEADER.unpack_from(data, pos)
        body_start = pos + FRAME_HEADER.size
        frames.append((pos, index, data[body_start : body_start + length + MAC_SIZE]))
        pos = body_start + length + MAC_SIZE + 4
    return frames


def _rebuild(data: bytes, bodies: dict[int, bytes]) -> bytes:
    """The segment with the bodies of some frames replaced (by offset) and every CRC made to hold."""
    out = bytearray(data[:SEGMENT_HEADER])
    for offset, _index, body in _frames(data):
        _, index, term, key_id, _ = FRAME_HEADER.unpack_from(data, offset)
        body = bodies.get(offset, body)
        head = struct.pack(">IQQI", len(body) - MAC_SIZE, index, term, key_id)
        head_crc = crc32c.crc32c(head)
        out += head + struct.pack(">I", head_crc) + body + struct.pack(">I", crc32c.crc32c(body, value=head_crc))
    return bytes(out)


def _start_fails(node: Node) -> str:
    """Start the daemon on the damaged disk: it must exit 1 with one error line, serving nothing."""
    log = open(node.log_path, "ab")
    node.process = subprocess.Popen(
        [sys.executable, "-m", "raftstore", "daemon", "--data-dir", str(node.data_dir), "--listen-addr", node.addr],
        stdout=log,
        stderr=subprocess.PIPE,
    )
    log.close()
    served = wait_until(
        lambda: node.process.poll() is not None or node.run("kv", "get", "balance", check=False).returncode == 0,
        timeout=30,
        what="the daemon to exit or serve",
    )
    if node.process.poll() is None:
        value = node.run("kv", "get", "balance").stdout.strip()
        node.kill()
        pytest.fail(f"the daemon started on a log with swapped records and serves balance={value[:1]}*{len(value)}")
    assert served
    stderr = node.process.stderr.read().decode()
    assert node.process.returncode == 1, stderr
    assert "Traceback" not in stderr
    return stderr.strip().splitlines()[-1]


def test_swapped_sealed_records_refuse_start_with_file_and_offset(cluster: Cluster) -> None:
    node = cluster.add("m1")
    cluster.init(node)
    old, new = "o" * 300, "n" * 3000
    node.run("kv", "put", "balance", old)
    node.run("kv", "put", "balance", new)
    node.stop()

    (segment,) = sorted((node.data_dir / "raft" / "log").glob("*.seg"))
    data = segment.read_bytes()
    frames = _frames(data)
    # The two puts are the frames whose sealed records have the values' sizes.
    small = next(f for f in frames if 300 < len(f[2]) < 600)
    large = next(f for f in frames if 3000 < len(f[2]) < 3300)
    assert small[1] < large[1]
    swapped = _rebuild(data, {small[0]: large[2], large[0]: small[2]})
    assert _frames(swapped)[0][0] == frames[0][0] and swapped != data
    segment.write_bytes(swapped)

    message = _start_fails(node)
    assert message.startswith("Error: raft log damaged: "), message
    assert f"{segment} at offset {small[0]}" in message, message
    assert segment.read_bytes() == swapped  # nothing was "repaired" away

    segment.write_bytes(data)
    node.start()
    assert node.run("kv", "get", "balance").stdout == new + "\n"
