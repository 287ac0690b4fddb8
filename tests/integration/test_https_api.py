"""The HTTPS/JSON API on the remote control port, from the outside: curl, and raw TLS sockets for the attacks.

A real daemon serves ``-H tcp://127.0.0.1:P --tlsverify`` with a server
certificate from ``ca issue-server``. The operator's curl, with the
certificate from ``ca issue-client``, can put, get, compare-and-set, run a
transaction and watch. A node's certificate is refused (403) and a peer
without a certificate gets no HTTP at all; oversized heads and bodies are
refused before the request is decoded or authorized, and a client that
trickles is cut at the stranger's deadline. ``/healthz`` says 503 while the
manager is locked and 200 once it is unlocked over the same API, and the
msgpack protocol keeps working on the same port.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from raftstore.tools._local_cluster import RAFTSTORE, Cluster, Node, free_port, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed"),
]


def _tls_manager(cluster: Cluster, tmp_path: Path) -> tuple[Node, int, Path, Path]:
    """A manager serving mutual TLS on a TCP port: (node, port, admin client files, server files)."""
    m1 = cluster.add("m1")
    cluster.init(m1)
    admin, server = tmp_path / "admin", tmp_path / "server"
    m1.run("ca", "issue-client", "--out", str(admin))
    m1.run("ca", "issue-server", "--san", "127.0.0.1", "--out", str(server))
    port = free_port()
    m1.stop()
    m1.start(_tls_flags(port, server))
    return m1, port, admin, server


def _tls_flags(port: int, server: Path) -> list[str]:
    return ["-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", str(server / "ca.pem"),
            "--tlscert", str(server / "cert.pem"), "--tlskey", str(server / "key.pem")]


def curl(port: int, path: str, *args: str, cert: tuple[Path, Path] | None, cacert: Path) -> tuple[int, Any]:
    """(HTTP status, parsed JSON body); status 0 when no HTTP answer came at all."""
    command = ["curl", "-sS", "--max-time", "20", "--cacert", str(cacert), "-w", "\n%{http_code}"]
    if cert is not None:
        command += ["--cert", str(cert[0]), "--key", str(cert[1])]
    proc = subprocess.run(command + [*args, f"https://127.0.0.1:{port}{path}"], capture_output=True, timeout=30)
    body, _, status = proc.stdout.decode().rpartition("\n")
    return int(status or 0), (json.loads(body) if body.strip() else None)


def _raw(port: int, cert: tuple[Path, Path], cacert: Path) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(cacert))
    context.load_cert_chain(str(cert[0]), str(cert[1]))
    return context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30), server_hostname="127.0.0.1")


def _answer(sock: ssl.SSLSocket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (OSError, ssl.SSLError):
        pass
    return data


def test_curl_puts_gets_and_watches_and_other_certificates_get_nothing(cluster: Cluster, tmp_path: Path) -> None:
    m1, port, admin, server = _tls_manager(cluster, tmp_path)
    me = (admin / "cert.pem", admin / "key.pem")
    ca = admin / "ca.pem"

    # (1) put with curl -d, then get it back, as text and base64
    status, body = curl(port, "/v1/kv/greeting", "-X", "PUT", "--data-binary", "hello world", cert=me, cacert=ca)
    assert status == 200, body
    status, body = curl(port, "/v1/kv/greeting", cert=me, cacert=ca)
    assert status == 200 and body["value"] == "hello world" and body["value_base64"] == "aGVsbG8gd29ybGQ=", body
    version = body["version"]
    # compare-and-set: a stale version is 409 and says the current one; the right one passes
    status, body = curl(port, f"/v1/kv/greeting?version={version + 100}", "-X", "PUT", "--data-binary", "x",
                        cert=me, cacert=ca)
    assert status == 409 and body["error"] == "UpdateOutOfSequence", body
    status, body = curl(port, "/v1/kv/greeting", "-X", "PUT", "-H", "Content-Type: application/json",
                        "-d", json.dumps({"value_base64": "AAEC", "version": version}), cert=me, cacert=ca)
    assert status == 200, body
    assert curl(port, "/v1/kv/greeting", cert=me, cacert=ca)[1]["value_base64"] == "AAEC"
    # a transaction: all or nothing, the shape of kv.txn
    txn = {"compares": [{"key": "t/a", "version": 0}],
           "operations": [{"op": "put", "key": "t/a", "value": "1"}, {"op": "put", "key": "t/b", "value": "2"}]}
    status, body = curl(port, "/v1/txn", "-X", "POST", "-H", "Content-Type: application/json", "-d", json.dumps(txn),
                        cert=me, cacert=ca)
    assert status == 200 and body["succeeded"] is True, body
    status, body = curl(port, "/v1/kv?prefix=t/", cert=me, cacert=ca)
    assert status == 200 and [(r["key"], r["value"]) for r in body] == [("t/a", "1"), ("t/b", "2")], body
    status, body = curl(port, "/v1/kv/t/b", "-X", "DELETE", cert=me, cacert=ca)
    assert status == 200, body
    assert curl(port, "/v1/kv/t/b", cert=me, cacert=ca)[0] == 404
    assert curl(port, "/v1/nonexistent", cert=me, cacert=ca)[0] == 404
    status, body = curl(port, "/v1/info", cert=me, cacert=ca)
    assert status == 200 and body["role"] == "manager" and body["locked"] is False, body
    status, body = curl(port, "/v1/nodes", cert=me, cacert=ca)
    assert status == 200 and len(body) == 1, body
    for path in ("/v1/secrets", "/v1/configs"):
        assert curl(port, path, cert=me, cacert=ca) == (200, [])
    assert curl(port, "/healthz", cert=me, cacert=ca)[0] == 200

    # (4) a watch streams an event written after it started
    since = curl(port, "/v1/info", cert=me, cacert=ca)[1]["raft"]["applied_index"]
    watch = subprocess.Popen(["curl", "-sS", "-N", "--max-time", "30", "--cacert", str(ca), "--cert", str(me[0]),
                              "--key", str(me[1]), f"https://127.0.0.1:{port}/v1/watch?prefix=w/&since={since}"],
                             stdout=subprocess.PIPE)
    try:
        time.sleep(1.0)
        assert curl(port, "/v1/kv/w/one", "-X", "PUT", "--data-binary", "fresh", cert=me, cacert=ca)[0] == 200
        assert watch.stdout is not None
        event = json.loads(watch.stdout.readline())
        assert event["name"] == "w/one" and event["table"] == "kv", event
    finally:
        watch.kill()
        watch.wait()

    # (2) a node certificate is refused with 403 and changes nothing; no certificate gets no HTTP at all
    certs = m1.data_dir / "certificates"
    node_cert = (certs / "swarm-node.crt", certs / "swarm-node.key")
    status, body = curl(port, "/v1/kv/owned", "-X", "PUT", "--data-binary", "x", cert=node_cert, cacert=ca)
    assert status == 403 and body["error"] == "PermissionDenied", body
    assert curl(port, "/v1/kv/owned", cert=node_cert, cacert=ca)[0] == 403
    assert curl(port, "/v1/kv/owned", cert=None, cacert=ca)[0] == 0
    assert curl(port, "/v1/kv/owned", cert=me, cacert=ca)[0] == 404

    # (6) the msgpack protocol still works on the same port
    env = {**os.environ, "RAFTSTORE_CERT_PATH": str(admin), "RAFTSTORE_TLS_VERIFY": "1"}
    out = subprocess.run(RAFTSTORE + ["-H", f"tcp://127.0.0.1:{port}", "kv", "get", "w/one"], env=env,
                         capture_output=True, timeout=60)
    assert out.returncode == 0 and out.stdout == b"fresh\n", out.stderr


def test_limits_before_identity_apply_to_http(cluster: Cluster, tmp_path: Path) -> None:
    m1, port, admin, server = _tls_manager(cluster, tmp_path)
    me = (admin / "cert.pem", admin / "key.pem")
    certs = m1.data_dir / "certificates"
    node_cert = (certs / "swarm-node.crt", certs / "swarm-node.key")
    ca = admin / "ca.pem"

    # A head over 16 KiB: 431, whoever sends it.
    with _raw(port, me, ca) as sock:
        sock.sendall(b"GET /v1/info HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n")
        assert _answer(sock).startswith(b"HTTP/1.1 431 "), "an oversized head must be refused"
    # A stranger's body over 16 KiB: 413, before authorization would have said 403.
    status, body = curl(port, "/v1/kv/big", "-X", "PUT", "--data-binary", "x" * 20000, cert=node_cert, cacert=ca)
    assert status == 413, body
    # An admin's body over its limit is refused from Content-Length alone, before a byte of it is sent.
    with _raw(port, me, ca) as sock:
        sock.sendall(b"PUT /v1/kv/big HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n")
        assert _answer(sock).startswith(b"HTTP/1.1 413 ")
    assert curl(port, "/v1/kv/big", cert=me, cacert=ca)[0] == 404
    # A body within the limit that the client holds back for "Expect: 100-continue" is asked for.
    with _raw(port, me, ca) as sock:
        sock.sendall(b"PUT /v1/kv/expect HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 ")
        sock.sendall(b"hello")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    assert curl(port, "/v1/kv/expect", cert=me, cacert=ca)[1]["value"] == "hello"

    # A client that trickles its request is cut at the stranger's deadline (10 s from accept).
    started = time.monotonic()
    with _raw(port, node_cert, ca) as sock:
        sock.settimeout(30)
        cut = None
        for byte in b"GET /v1/info HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100:
            try:
                sock.sendall(bytes([byte]))
                time.sleep(0.5)
                sock.settimeout(0.01)
                if sock.recv(1) == b"":
                    cut = time.monotonic() - started
                    break
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            except (OSError, ssl.SSLError):
                cut = time.monotonic() - started
                break
    assert cut is not None and cut < 15, cut
    # and the listener still serves
    assert curl(port, "/v1/info", cert=me, cacert=ca)[0] == 200


def test_healthz_is_503_while_locked_and_200_after_unlock_over_https(cluster: Cluster, tmp_path: Path) -> None:
    m1, port, admin, server = _tls_manager(cluster, tmp_path)
    me = (admin / "cert.pem", admin / "key.pem")
    ca = admin / "ca.pem"
    m1.run("update", "--autolock=true")
    key = m1.run("unlock-key", "-q").stdout.strip()
    m1.stop()
    m1.start(_tls_flags(port, server))

    status, body = curl(port, "/healthz", cert=me, cacert=ca)
    assert status == 503 and body["reason"] == "locked", body
    status, body = curl(port, "/v1/kv/k", cert=me, cacert=ca)
    assert status in (403, 423), body  # the revocation list is sealed: a locked manager admits no store request
    status, body = curl(port, "/v1/unlock", "-X", "POST", "--data-binary", "SWMKEY-1-wrong", cert=me, cacert=ca)
    assert status == 400 and body["error"] == "InvalidUnlockKey", body
    status, body = curl(port, "/v1/unlock", "-X", "POST", "-H", "Content-Type: application/json",
                        "-d", json.dumps({"key": key}), cert=me, cacert=ca)
    assert status == 200, body
    wait_until(lambda: curl(port, "/healthz", cert=me, cacert=ca)[0] == 200, timeout=20, what="healthy after unlock")
