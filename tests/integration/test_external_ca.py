"""Issue 14: an external CA (a real `cfssl serve`) signs every node certificate; the cluster never holds its key."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from cfssl_server import CFSSL, PROFILES, SKIP_REASON, CfsslServer
from raftstore.tools._local_cluster import Cluster, Node, free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.skipif(CFSSL is None, reason=SKIP_REASON)]


@pytest.fixture
def cfssl(tmp_path: Path) -> Iterator[CfsslServer]:
    server = CfsslServer(tmp_path / "cfssl")
    server.start()
    yield server
    server.stop()


def leaf(node: Node) -> x509.Certificate:
    return x509.load_pem_x509_certificate((node.data_dir / "certificates" / "swarm-node.crt").read_bytes())


def usages(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def assert_no_file_holds_the_key(server: CfsslServer, nodes: list[Node]) -> None:
    key = serialization.load_pem_private_key(server.root_key_pem, None)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    scalar = key.private_numbers().private_value.to_bytes(32, "big")  # type: ignore[union-attr]
    body = b"".join(server.root_key_pem.splitlines()[1:-1])[48:88]  # past the PKCS#8 header every P-256 key shares
    for node in nodes:
        for path in node.data_dir.rglob("*"):
            if path.is_file() and not path.is_socket():
                data = path.read_bytes()
                assert der not in data and scalar not in data and body not in data.replace(b"\n", b""), path


def join_line(node: Node, via: Node, role: str) -> str:
    token = via.run("join-token", "-q", role).stdout.strip()
    return node.run("join", "--token", token, "--listen-addr", node.addr, via.addr, check=False).stderr


def test_cluster_signed_by_a_real_cfssl(cluster: Cluster, cfssl: CfsslServer, tmp_path: Path) -> None:
    """The acceptance test: init with --ca-cert alone and --external-ca; joins, failover, the service stopping."""
    root = tmp_path / "root.pem"
    root.write_bytes(cfssl.root_pem)
    dead_port = free_port()
    dead = f"protocol=cfssl,url=https://127.0.0.1:{dead_port},cacert={cfssl.directory / 'tls-ca.pem'}"
    m1, m2, w1, w2 = (cluster.add(n) for n in ("m1", "m2", "w1", "w2"))
    # The first URL answers nothing: every signing fails over to the second, in order.
    cluster.init(m1, "--ca-cert", str(root), "--external-ca", dead, "--external-ca", cfssl.option())
    cluster.join(m2, m1, "manager")
    cluster.join(w1, m1, "worker")
    root_cert = x509.load_pem_x509_certificate(cfssl.root_pem)
    for node, role in ((m1, "swarm-manager"), (m2, "swarm-manager"), (w1, "swarm-worker")):
        cert = leaf(node)
        assert cert.issuer == root_cert.subject and cert.verify_directly_issued_by(root_cert) is None
        assert cert.subject.rfc4514_string() == f"CN={node.info()['node_id']},OU={role},O={m1.info()['cluster_id']}"
        assert usages(cert) == ({ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
                                if role == "swarm-manager" else {ExtendedKeyUsageOID.CLIENT_AUTH})
    m2.run("kv", "put", "signed-by", "cfssl")
    assert m1.run("kv", "get", "signed-by").stdout == "cfssl\n"
    assert m1.run("ca").stdout.encode() == cfssl.root_pem
    info = m1.info()["external_cas"]
    assert [ca["answers"] for ca in info] == [False, True] and info[1]["url"] == f"{cfssl.url}/api/v1/cfssl/sign"
    text = m1.run("info").stdout
    assert f"cfssl: {cfssl.url}/api/v1/cfssl/sign (answers and signs with the cluster root)" in text
    # So is an API client's certificate (profile swarm-client).
    m1.run("ca", "issue-client", "--out", str(tmp_path / "client"))
    client = x509.load_pem_x509_certificate((tmp_path / "client" / "cert.pem").read_bytes())
    assert client.issuer == root_cert.subject and usages(client) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    # A role change is a new certificate from the service too.
    m1.run("node", "promote", w1.info()["node_id"])
    wait_until(lambda: usages(leaf(w1)) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH},
               timeout=30, what="the promoted worker's manager certificate")

    cfssl.stop()
    line = join_line(w2, m1, "worker")
    assert line == (f"Error: no external CA issued a swarm-worker certificate: https://127.0.0.1:"
                    f"{dead_port}/api/v1/cfssl/sign: connection refused (is the signing "
                    f"service running?); {cfssl.url}/api/v1/cfssl/sign: connection refused (is the signing service "
                    "running?)\n"), line
    assert not (w2.data_dir / "state.json").exists()
    doctor = m1.run("doctor", "--format", "json", check=False).json
    assert any(f["check"] == "external-ca" and f["severity"] == "critical" for f in doctor), doctor
    cfssl.start()
    cluster.join(w2, m1, "worker")
    assert leaf(w2).issuer == root_cert.subject
    assert_no_file_holds_the_key(cfssl, [m1, m2, w1, w2])


def test_wrong_answers_are_refused_and_update_adds_and_removes(cluster: Cluster, cfssl: CfsslServer,
                                                               tmp_path: Path) -> None:
    """A service whose worker profile grants server auth, or that signs with another root, is refused."""
    lax = CfsslServer(tmp_path / "lax", {**PROFILES, "swarm-worker": PROFILES["swarm-manager"]})
    (tmp_path / "lax" / "root.pem").write_bytes(cfssl.root_pem)  # the cluster's root, but a lax profile
    (tmp_path / "lax" / "root-key.pem").write_bytes(cfssl.root_key_pem)
    stranger = CfsslServer(tmp_path / "stranger")  # another root altogether
    lax.start()
    stranger.start()
    try:
        root = tmp_path / "root.pem"
        root.write_bytes(cfssl.root_pem)
        m1, w1 = cluster.add("m1"), cluster.add("w1")
        cluster.init(m1, "--ca-cert", str(root), "--external-ca", lax.option())
        line = join_line(w1, m1, "worker")
        assert line.count("\n") == 1 and "states the usages client auth, server auth; it must state exactly " \
            "client auth (its CFSSL profile 'swarm-worker')" in line, line
        refused = m1.run("update", "--external-ca", stranger.option(), check=False)
        assert refused.stderr == (f"Error: external CA {stranger.url}/api/v1/cfssl/sign: answers, but signs with "
                                  "another root than the one it is configured for\n")
        m1.run("update", "--external-ca", cfssl.option())
        last = m1.run("update", "--external-ca-rm", cfssl.url, "--external-ca-rm", lax.url, check=False)
        assert "removing its last external CA" in last.stderr
        m1.run("update", "--external-ca-rm", lax.url)
        assert [ca["url"] for ca in m1.info()["external_cas"]] == [f"{cfssl.url}/api/v1/cfssl/sign"]
        cluster.join(w1, m1, "worker")
        assert usages(leaf(w1)) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    finally:
        lax.stop()
        stranger.stop()


def test_refusals_before_anything_is_created(cluster: Cluster, cfssl: CfsslServer, tmp_path: Path) -> None:
    root, key = tmp_path / "root.pem", tmp_path / "root.key"
    root.write_bytes(cfssl.root_pem)
    key.write_bytes(cfssl.root_key_pem)
    m1 = cluster.add("m1")
    cases = {
        ("--ca-cert", str(root)): "Error: --ca-cert needs --ca-key, or --external-ca when the key stays with your CA\n",
        ("--external-ca", cfssl.option()):
            "Error: --external-ca needs --ca-cert: the root certificate the external CA signs with\n",
        ("--ca-cert", str(root), "--ca-key", str(key), "--external-ca", cfssl.option()):
            "Error: give --ca-key or --external-ca, not both: with the key the cluster signs itself\n",
        ("--ca-cert", str(root), "--external-ca", "protocol=acme,url=https://x"):
            "Error: external CA protocol 'acme' is not supported: use protocol=cfssl\n",
        ("--ca-cert", str(root), "--external-ca", "protocol=cfssl,url=http://127.0.0.1:1"):
            "Error: external CA url 'http://127.0.0.1:1': give https://HOST[:PORT][/api/v1/cfssl/sign]\n",
    }
    for flags, expected in cases.items():
        assert m1.run("init", "--listen-addr", m1.addr, *flags, check=False).stderr == expected
    usage = m1.run("init", "--external-ca", "url=https://x", check=False)
    assert usage.returncode == 2 and "needs protocol=cfssl and url=URL" in usage.stderr
    # The service's TLS certificate is not signed by the pinned CA (the default pin is the root itself).
    pinned_wrong = m1.run("init", "--listen-addr", m1.addr, "--ca-cert", str(root), "--external-ca",
                          f"protocol=cfssl,url={cfssl.url}", check=False)
    assert pinned_wrong.stderr.startswith("Error: no external CA issued a swarm-manager certificate: ")
    assert "does not verify against the pinned CA" in pinned_wrong.stderr and pinned_wrong.stderr.count("\n") == 1
    assert not (m1.data_dir / "state.json").exists()
    cluster.init(m1)
    assert "holds its root key" in m1.run("update", "--external-ca", cfssl.option(), check=False).stderr


def test_rotation_to_an_external_root_and_back(cluster: Cluster, cfssl: CfsslServer, tmp_path: Path) -> None:
    """Swarm's flow: the cluster's own key cross-signs the external root; then the external CA cross-signs a new one."""
    root = tmp_path / "root.pem"
    root.write_bytes(cfssl.root_pem)
    m1, m2, w1 = cluster.add("m1"), cluster.add("m2"), cluster.add("w1")
    cluster.init(m1)
    cluster.join(m2, m1, "manager")
    cluster.join(w1, m1, "worker")
    m1.run("ca", "--rotate", "--ca-cert", str(root), "--external-ca", cfssl.option(), "-q", timeout=120)
    assert m1.run("ca").stdout.encode() == cfssl.root_pem
    external = x509.load_pem_x509_certificate(cfssl.root_pem)
    for node in (m1, m2, w1):
        wait_until(lambda n=node: leaf(n).issuer == external.subject and
                   (n.data_dir / "certificates" / "swarm-root-ca.crt").read_bytes() == cfssl.root_pem,
                   timeout=60, what=f"{node.name} converged on the external root")
    m1.run("kv", "put", "after", "external")
    assert m2.run("kv", "get", "after").stdout == "external\n"
    # Away from the external root: its CFSSL cross-signs the new root (profile swarm-cross-sign).
    m1.run("ca", "--rotate", "-q", timeout=120)
    new_root = m1.run("ca").stdout.encode()
    assert new_root != cfssl.root_pem
    for node in (m1, m2, w1):
        wait_until(lambda n=node: (n.data_dir / "certificates" / "swarm-root-ca.crt").read_bytes() == new_root,
                   timeout=60, what=f"{node.name} converged on the new root")
    assert m1.info()["external_cas"] == []
    m2.run("kv", "put", "after", "internal")
    assert m1.run("kv", "get", "after").stdout == "internal\n"


def test_the_first_transaction_holds_no_root_key(cfssl: CfsslServer, tmp_path: Path) -> None:
    """What init proposes to the replicated store: the root certificate and the services, never a key."""
    import msgpack

    from raftstore.node._bootstrap import bootstrap_actions, initialize_cluster
    from raftstore.storage._node_state import StatePaths

    paths = StatePaths(tmp_path / "data")
    paths.create()
    cacert = (cfssl.directory / "tls-ca.pem").read_bytes()
    result = initialize_cluster(paths, listen_addr="127.0.0.1:1", advertise_addr="127.0.0.1:1", autolock=False,
                                ca_cert_pem=cfssl.root_pem,
                                external_cas=[{"protocol": "cfssl", "url": cfssl.url, "cacert_pem": cacert}],
                                now=datetime.now(timezone.utc))
    spec = bootstrap_actions(result)[0]["spec"]
    assert spec["root_ca"] == {"cert_pem": cfssl.root_pem, "key_pem": None}
    assert [(e["url"], e["cacert_pem"]) for e in spec["external_cas"]] == [(f"{cfssl.url}/api/v1/cfssl/sign", cacert)]
    key = serialization.load_pem_private_key(cfssl.root_key_pem, None)
    scalar = key.private_numbers().private_value.to_bytes(32, "big")  # type: ignore[union-attr]
    assert scalar not in msgpack.packb(bootstrap_actions(result), use_bin_type=True)


def test_a_silent_service_costs_one_timeout_then_the_next_signs(cfssl: CfsslServer,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A service that accepts connections and never answers: failover after SIGN_TIMEOUT, all within SIGN_BUDGET
    (shortened here; a joining node waits 15 s for the answer, which must be the error line, not its own timeout)."""
    import socket
    import time

    from raftstore.manager import _external_ca
    from raftstore.manager._external_ca import external_ca_entry, sign_with_external_ca
    from raftstore.keyring import WORKER_ROLE, Unavailable, generate_private_key, make_csr, new_id

    assert _external_ca.SIGN_BUDGET < 15
    monkeypatch.setattr(_external_ca, "SIGN_TIMEOUT", 1.0)
    monkeypatch.setattr(_external_ca, "SIGN_BUDGET", 2.5)
    cacert = (cfssl.directory / "tls-ca.pem").read_bytes()
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        mute = external_ca_entry({"protocol": "cfssl", "url": f"https://127.0.0.1:{silent.getsockname()[1]}",
                                  "cacert_pem": cacert}, cfssl.root_pem)
        good = external_ca_entry({"protocol": "cfssl", "url": cfssl.url, "cacert_pem": cacert}, cfssl.root_pem)
        csr, cluster_id, now = make_csr(generate_private_key()), new_id(), datetime.now(timezone.utc)
        started = time.monotonic()
        chain = sign_with_external_ca([mute, good], cfssl.root_pem, csr, node_id="n1", cluster_id=cluster_id,
                                      role=WORKER_ROLE, now=now)
        assert b"BEGIN CERTIFICATE" in chain and time.monotonic() - started < 2.5
        started = time.monotonic()
        with pytest.raises(Unavailable, match="no answer within 1.0 s") as caught:
            sign_with_external_ca([mute, mute, mute], cfssl.root_pem, csr, node_id="n1", cluster_id=cluster_id,
                                  role=WORKER_ROLE, now=now)
        assert time.monotonic() - started < 3.0 and str(caught.value).endswith("not tried (out of time)")
        assert "\n" not in str(caught.value)
