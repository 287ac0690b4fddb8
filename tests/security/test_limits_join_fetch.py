"""A joining node fetches the root CA from a server it cannot verify yet: that server must not feed it 64 MiB.

Finding 10 of issue 11: the CA fetch at join read a reply of up to 64 MiB from
an unauthenticated server. A root CA bundle is a few KiB; the reply is now
capped at ``STRANGER_FRAME_BYTES`` and refused from its length prefix.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from raftstore.net._frames import read_frame, write_frame
from raftstore.tools._local_cluster import Cluster
from raftstore.keyring import JoinToken, create_root_ca

pytestmark = pytest.mark.integration

HUGE = 64 * 2**20 - 16  # just under the old limit


class _HugeReplyServer:
    """Answers the API hello, then replies to the first request with one huge frame; counts what it got out."""

    def __init__(self, directory: Path) -> None:
        root = create_root_ca(datetime.now(timezone.utc))
        (directory / "fake.crt").write_bytes(root.cert_pem)
        (directory / "fake.key").write_bytes(root.key_pem)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(directory / "fake.crt"), str(directory / "fake.key"))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(30)
        self.sent = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.listener.getsockname()[1]}"

    def _serve(self) -> None:
        try:
            raw, _ = self.listener.accept()
        except OSError:
            return
        raw.settimeout(20)
        try:
            with self.context.wrap_socket(raw, server_side=True) as sock:
                read_frame(sock, 4096)
                write_frame(sock, {"ok": True})
                read_frame(sock, 4096)
                sock.sendall(struct.pack(">I", HUGE + 5) + b"\xc6" + struct.pack(">I", HUGE))
                chunk = b"\0" * 2**20
                while self.sent < HUGE:
                    sock.sendall(chunk[: HUGE - self.sent])
                    self.sent += min(len(chunk), HUGE - self.sent)
        except (OSError, ssl.SSLError, ConnectionError):
            pass

    def close(self) -> None:
        self.listener.close()
        self.thread.join(30)


def test_the_ca_fetch_at_join_refuses_a_huge_reply(cluster: Cluster, tmp_path: Path) -> None:
    node = cluster.add("n1")
    fake = _HugeReplyServer(tmp_path)
    token = str(JoinToken.generate(b"any CA"))
    try:
        result = node.run("join", "--token", token, "--listen-addr", node.addr, fake.addr, check=False, timeout=60)
    finally:
        fake.close()
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert fake.sent < 16 * 2**20, f"the joining node read {fake.sent / 2**20:.0f} MiB of the fake CA reply"
    assert node.info()["cluster_id"] in (None, "")
