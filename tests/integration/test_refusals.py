"""What the cluster refuses: bad join tokens and certificates that do not belong on the port."""

from __future__ import annotations

import socket
import ssl
from datetime import datetime, timedelta, timezone

import pytest

from raftstore.net._frames import read_frame, write_frame
from raftstore.tools._local_cluster import Cluster, Node
from raftstore.net._tls import TlsIdentity, client_context
from raftstore.keyring import (
    MANAGER_ROLE,
    JoinToken,
    create_root_ca,
    generate_private_key,
    issue_certificate,
    make_csr,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def formed(cluster: Cluster) -> tuple[Cluster, Node, Node, Node]:
    m1, w1, outsider = cluster.add("m1"), cluster.add("w1"), cluster.add("outsider")
    cluster.init(m1)
    cluster.join(w1, m1, "worker")
    return cluster, m1, w1, outsider


def snapshot_of(m1: Node) -> tuple[list[str], int]:
    info = m1.info()
    return sorted(m1.run("node", "ls", "-q").stdout.split()), len(info["raft"]["members"])


def test_bad_join_tokens_are_refused(formed: tuple[Cluster, Node, Node, Node]) -> None:
    cluster, m1, _, outsider = formed
    before = snapshot_of(m1)
    good = JoinToken.parse(m1.run("join-token", "-q", "manager").stdout)
    other_ca = create_root_ca(datetime.now(timezone.utc))
    cases = {
        str(JoinToken(JoinToken.generate(other_ca.cert_pem).ca_digest, good.secret)): "Error: remote CA does not match fingerprint",
        str(good.rotated()): "Error: A valid join token is necessary to join this cluster",
        "SWMTKN-1-garbage": "Error: invalid join token",
        str(good)[:-1]: "Error: invalid join token",
    }
    for token, message in cases.items():
        result = outsider.run("join", "--token", token, "--listen-addr", outsider.addr, m1.addr, check=False)
        assert (result.returncode, result.stderr.strip()) == (1, message), token
        assert "Traceback" not in result.stderr
        assert outsider.info()["state"] == "inactive"
    assert snapshot_of(m1) == before


def _tls(m1: Node, identity: TlsIdentity | None, verify_server: bool = True) -> ssl.SSLSocket:
    roots = (m1.data_dir / "certificates" / "swarm-root-ca.crt").read_bytes() if verify_server else None
    context = client_context(identity, roots)
    raw = socket.create_connection(("127.0.0.1", m1.port), timeout=10)
    return context.wrap_socket(raw)


def _node_identity(node: Node) -> TlsIdentity:
    certs = node.data_dir / "certificates"
    return TlsIdentity(
        (certs / "swarm-node.crt").read_bytes(), (certs / "swarm-node.key").read_bytes(), (certs / "swarm-root-ca.crt").read_bytes()
    )


def _channel(sock: ssl.SSLSocket, channel: str) -> dict:
    write_frame(sock, {"channel": channel})
    return read_frame(sock)


def test_worker_certificate_is_refused_on_the_raft_channel(formed: tuple[Cluster, Node, Node, Node]) -> None:
    _, m1, w1, _ = formed
    before = snapshot_of(m1)
    with _tls(m1, _node_identity(w1)) as sock:
        reply = _channel(sock, "raft")
    assert reply == {"ok": False, "error": "permission denied: only managers may do this, not a swarm-worker"}
    assert snapshot_of(m1) == before


def test_client_without_certificate_gets_only_the_ca_and_join(formed: tuple[Cluster, Node, Node, Node]) -> None:
    _, m1, _, _ = formed
    with _tls(m1, None, verify_server=False) as sock:
        assert _channel(sock, "raft") == {"ok": False, "error": "a manager certificate is required"}
    with _tls(m1, None) as sock:
        assert _channel(sock, "api")["ok"]
        write_frame(sock, {"method": "ca.get", "params": {}})
        assert read_frame(sock)["ok"]
        for method in ("keyring.fetch", "raft.join", "node.renew", "node.heartbeat", "raft.remove"):
            write_frame(sock, {"method": method, "params": {}})
            reply = read_frame(sock)
            assert not reply["ok"] and reply["error"]["code"] == "PermissionDenied", (method, reply)


def test_worker_cannot_fetch_keys_or_change_raft(formed: tuple[Cluster, Node, Node, Node]) -> None:
    _, m1, w1, _ = formed
    with _tls(m1, _node_identity(w1)) as sock:
        _channel(sock, "api")
        for method in ("keyring.fetch", "raft.join", "raft.remove", "raft.step_down"):
            write_frame(sock, {"method": method, "params": {"node_id": "x"}})
            reply = read_frame(sock)
            assert not reply["ok"] and reply["error"]["code"] == "PermissionDenied", (method, reply)


def test_certificate_of_another_cluster_fails_the_handshake(formed: tuple[Cluster, Node, Node, Node]) -> None:
    _, m1, _, _ = formed
    before = snapshot_of(m1)
    now = datetime.now(timezone.utc)
    other = create_root_ca(now)
    key = generate_private_key()
    info = m1.info()
    # Same cluster id and node id as a real manager, but signed by another CA.
    forged = issue_certificate(other, make_csr(key), node_id=info["node_id"], cluster_id=info["cluster_id"],
                               role=MANAGER_ROLE, now=now, validity=timedelta(hours=2))
    identity = TlsIdentity(forged, key, (m1.data_dir / "certificates" / "swarm-root-ca.crt").read_bytes())
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        with _tls(m1, identity) as sock:
            _channel(sock, "raft")
    assert snapshot_of(m1) == before


def test_a_data_dir_too_deep_for_a_unix_socket_is_one_line(tmp_path_factory: pytest.TempPathFactory) -> None:
    import subprocess

    from raftstore.tools._local_cluster import RAFTSTORE

    deep = tmp_path_factory.mktemp("deep") / ("d" * 120)
    result = subprocess.run(RAFTSTORE + ["daemon", "--data-dir", str(deep)], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: the control socket path {deep}/raftstore.sock is longer than the 107 bytes a unix socket allows: "
        "use a shorter --data-dir")
