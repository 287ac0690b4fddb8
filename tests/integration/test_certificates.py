"""Issue 4: renewal, expired renewal, CA rotation with a node down, token rotation, remote API over TLS, doctor."""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from raftstore.node._clock import OFFSET_FILE_ENV
from raftstore.tools._local_cluster import Cluster, Node, free_port, wait_until
from raftstore.net._tls import TlsIdentity, client_context
from raftstore.keyring import (
    CLIENT_ROLE,
    certificate_identity,
    create_root_ca,
    generate_private_key,
    issue_certificate,
    make_csr,
    new_id,
)

pytestmark = pytest.mark.integration


def cert_of(node: Node):
    return certificate_identity((node.data_dir / "certificates" / "swarm-node.crt").read_bytes())


def set_offset(path: Path, seconds: float) -> None:
    path.write_text(str(seconds))


def test_renewal_at_50_to_80_percent_of_a_short_lifetime(cluster: Cluster, tmp_path: Path) -> None:
    clock = tmp_path / "clock-offset"
    set_offset(clock, 0)
    env = {OFFSET_FILE_ENV: str(clock)}
    m1, m2, w1 = (cluster.add(n, env=env) for n in ("m1", "m2", "w1"))
    cluster.init(m1, "--cert-expiry", "1h")
    cluster.join(m2, m1, "manager")
    cluster.join(w1, m1, "worker")
    before = {n.name: cert_of(n) for n in (m1, m2, w1)}
    assert all(c.not_after - c.not_before == timedelta(hours=2) for c in before.values())  # 1h + 1h back-dating
    assert 0 < m1.info()["cert_expiry_seconds"] <= 3600

    set_offset(clock, 49 * 60)  # 49 minutes on: past 80% of (not_before .. not_after) for every node
    for node in (m1, m2, w1):
        wait_until(lambda n=node: cert_of(n).not_after > before[n.name].not_after, timeout=30,
                   what=f"{node.name} renewed")
        # The line is logged just after the new certificate is installed.
        wait_until(lambda n=node: "certificate renewed" in n.log(), timeout=10, what=f"{node.name} logged its renewal")
    # Nothing renews early: with the clock back, no node renews again.
    set_offset(clock, 0)
    renewed = {n.name: cert_of(n).not_after for n in (m1, m2, w1)}
    m1.run("kv", "put", "k", "v")
    assert {n.name: cert_of(n).not_after for n in (m1, m2, w1)} == renewed


def test_expired_certificate_is_renewed_when_a_manager_is_reachable(cluster: Cluster, tmp_path: Path) -> None:
    clock = tmp_path / "clock-offset"
    set_offset(clock, 0)
    m1 = cluster.add("m1", env={OFFSET_FILE_ENV: str(clock)})
    w1 = cluster.add("w1")
    cluster.init(m1, "--cert-expiry", "1h")
    set_offset(clock, -(3600 - 6))  # the manager issues a certificate that expires 6 s from (real) now
    cluster.join(w1, m1, "worker")
    w1.stop()
    set_offset(clock, 0)
    expires = cert_of(w1).not_after
    assert expires - datetime.now(timezone.utc) < timedelta(seconds=10)
    wait_until(lambda: datetime.now(timezone.utc) > expires + timedelta(seconds=1), timeout=20, what="expiry")
    w1.start()
    wait_until(lambda: cert_of(w1).not_after > datetime.now(timezone.utc) + timedelta(minutes=50), timeout=30,
               what="expired certificate renewed")
    assert "renewing the expired certificate of node" in m1.log()
    wait_until(lambda: w1.info()["error"] is None, what="worker heartbeats again")


def _tls_connect(node: Node, chain: bytes, key: bytes, roots: bytes) -> None:
    context = client_context(TlsIdentity(chain, key, roots), roots)
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as raw:
        with context.wrap_socket(raw) as sock:
            from raftstore.net._frames import read_frame, write_frame

            write_frame(sock, {"channel": "api"})
            read_frame(sock)


def test_ca_rotation_waits_for_a_down_node_then_completes(cluster: Cluster) -> None:
    m1, m2, m3, w1 = (cluster.add(n) for n in ("m1", "m2", "m3", "w1"))
    cluster.init(m1)
    cluster.join(m2, m1, "manager")
    cluster.join(m3, m1, "manager")
    cluster.join(w1, m1, "worker")
    old_worker_token = m1.run("join-token", "-q", "worker").stdout.strip()
    old_root = m1.run("ca").stdout
    certs = m2.data_dir / "certificates"
    old_identity = ((certs / "swarm-node.crt").read_bytes(), (certs / "swarm-node.key").read_bytes(),
                    (certs / "swarm-root-ca.crt").read_bytes())
    worker_id = w1.info()["node_id"]

    w1.kill(signal.SIGKILL)
    started = m1.run("ca", "--rotate", "--detach")
    assert "CA rotation started" in started.stderr
    wait_until(lambda: m1.run("ca", "--format", "json").json.get("converged") == 3, timeout=30,
               what="the three managers converged")
    status = m1.run("ca")
    assert status.stdout.strip() == old_root.strip()  # still the old root while it waits
    assert f"waiting for: {worker_id}" in status.stderr
    assert m1.info()["ca_rotation_in_progress"] is True
    wait_until(lambda: any(f["check"] == "ca-rotation" and f["severity"] == "warning" and worker_id in f["message"]
                           for f in m1.run("doctor", "--format", "json", check=False).json),
               timeout=30, what="doctor names the down node the rotation waits for")

    w1.start()
    wait_until(lambda: not m1.run("ca", "--format", "json").json["in_progress"], timeout=40, what="rotation done")
    new_root = m1.run("ca").stdout
    assert new_root != old_root
    for node in (m1, m2, m3, w1):
        wait_until(lambda n=node: (n.data_dir / "certificates" / "swarm-root-ca.crt").read_text().strip()
                   == new_root.strip(), what=f"{node.name} trusts only the new root")
    m2.run("kv", "put", "after-rotation", "ok")
    assert m3.run("kv", "get", "after-rotation").stdout == "ok\n"

    # The old join token names the old CA: refused. The new one differs.
    new_token = m1.run("join-token", "-q", "worker").stdout.strip()
    assert new_token.split("-")[2] != old_worker_token.split("-")[2]
    late = cluster.add("late")
    refused = late.run("join", "--token", old_worker_token, "--listen-addr", late.addr, m1.addr, check=False)
    assert refused.stderr.strip() == "Error: remote CA does not match fingerprint"
    # A certificate of the old root is refused at the handshake.
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        _tls_connect(m1, *old_identity)


def test_join_token_rotation(cluster: Cluster) -> None:
    m1, n1 = cluster.add("m1"), cluster.add("n1")
    cluster.init(m1)
    old = m1.run("join-token", "-q", "worker").stdout.strip()
    out = m1.run("join-token", "--rotate", "worker").stdout
    assert out.startswith("Successfully rotated worker join token.")
    new = m1.run("join-token", "-q", "worker").stdout.strip()
    assert new != old and new.split("-")[2] == old.split("-")[2]  # same CA digest
    refused = n1.run("join", "--token", old, "--listen-addr", n1.addr, m1.addr, check=False)
    assert refused.stderr.strip() == "Error: A valid join token is necessary to join this cluster"
    n1.run("join", "--token", new, "--listen-addr", n1.addr, m1.addr)

    short = m1.run("update", "--cert-expiry", "59m", check=False)
    assert (short.returncode, short.stderr.strip()) == (1, "Error: minimum certificate expiry time is: 1h0m0s")
    m1.run("update", "--cert-expiry", "720h")
    assert m1.info()["cluster_cert_expiry_seconds"] == 720 * 3600


def _client_args(port: int, directory: Path, with_cert: bool = True) -> list[str]:
    args = ["-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", str(directory / "ca.pem")]
    if with_cert:
        args += ["--tlscert", str(directory / "cert.pem"), "--tlskey", str(directory / "key.pem")]
    return args


def _raftstore(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "raftstore", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_remote_api_over_mutual_tls(cluster: Cluster, tmp_path: Path) -> None:
    m1 = cluster.add("m1")
    cluster.init(m1)
    server, client = tmp_path / "server", tmp_path / "client"
    m1.run("ca", "issue-server", "--san", "127.0.0.1", "--out", str(server))
    m1.run("ca", "issue-client", "--out", str(client), "--name", "operator")
    assert (client / "key.pem").stat().st_mode & 0o777 == 0o600
    assert certificate_identity((client / "cert.pem").read_bytes()).role == CLIENT_ROLE
    port = free_port()
    m1.stop()
    m1.start(["-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", str(server / "ca.pem"),
              "--tlscert", str(server / "cert.pem"), "--tlskey", str(server / "key.pem")])

    ok = _raftstore(*_client_args(port, client), "info", "--format", "json")
    assert ok.returncode == 0, ok.stderr
    assert '"role": "manager"' in ok.stdout
    via_env = _raftstore("info", env={"RAFTSTORE_HOST": f"tcp://127.0.0.1:{port}", "RAFTSTORE_TLS_VERIFY": "1",
                                      "RAFTSTORE_CERT_PATH": str(client)})
    assert via_env.returncode == 0, via_env.stderr

    # No client certificate.
    none = _raftstore(*_client_args(port, client, with_cert=False), "info")
    assert none.returncode == 1 and none.stderr.startswith("Error: ")
    # A self-signed certificate, and one from another cluster's CA.
    now = datetime.now(timezone.utc)
    for name, ca in (("self-signed", None), ("other-cluster", create_root_ca(now))):
        directory = tmp_path / name
        directory.mkdir()
        key = generate_private_key()
        if ca is None:
            ca = create_root_ca(now)
            chain = ca.cert_pem
            key = ca.key_pem
        else:
            chain = issue_certificate(ca, make_csr(key), node_id=new_id(), cluster_id=new_id(), role=CLIENT_ROLE,
                                      now=now, validity=timedelta(hours=2))
        (directory / "ca.pem").write_bytes((server / "ca.pem").read_bytes())
        (directory / "cert.pem").write_bytes(chain)
        (directory / "key.pem").write_bytes(key)
        refused = _raftstore(*_client_args(port, directory), "info")
        assert refused.returncode == 1 and refused.stderr.startswith("Error: "), (name, refused.stderr)
        assert "Traceback" not in refused.stderr


def test_plain_tcp_only_on_loopback(tmp_path: Path) -> None:
    result = _raftstore("daemon", "--data-dir", str(tmp_path / "d"), "-H", "tcp://0.0.0.0:2375", "--insecure")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("Error: refusing to serve the control API in plain text on 0.0.0.0:2375")


def test_doctor_findings(cluster: Cluster, tmp_path: Path) -> None:
    clock = tmp_path / "clock-offset"
    set_offset(clock, 0)
    m1 = cluster.add("m1", extra=["-H", f"tcp://127.0.0.1:{free_port()}", "--insecure"])
    cluster.init(m1, "--cert-expiry", "1h")
    checks = {f["check"]: f for f in m1.run("doctor", "--format", "json", check=False).json}
    assert checks["autolock"]["severity"] == "warning"
    assert checks["managers"]["message"].startswith("this cluster has a single manager")
    assert checks["remote-api"]["severity"] == "critical"
    assert "file-permissions" not in checks
    assert m1.run("doctor", check=False).returncode == 1  # a critical finding

    (m1.data_dir / "certificates" / "swarm-node.key").chmod(0o644)
    checks = {f["check"]: f for f in m1.run("doctor", "--format", "json", check=False).json}
    assert checks["file-permissions"]["fix"].startswith("chmod 600")

    m2 = cluster.add("m2")
    cluster.join(m2, m1, "manager")
    checks = {f["check"]: f for f in m1.run("doctor", "--format", "json", check=False).json}
    assert "even number" in checks["managers"]["message"]

    # A worker that cannot reach a manager while its certificate runs out.
    w1 = cluster.add("w1", env={OFFSET_FILE_ENV: str(clock)})
    cluster.join(w1, m1, "worker")
    m1.stop()
    m2.stop()
    set_offset(clock, 55 * 60)
    wait_until(lambda: any(f["check"] == "certificate" for f in w1.run("doctor", "--format", "json", check=False).json),
               what="near-expiry finding")
    finding = next(f for f in w1.run("doctor", "--format", "json", check=False).json if f["check"] == "certificate")
    assert finding["severity"] == "warning" and "expires in" in finding["message"]
