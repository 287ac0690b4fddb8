"""An operator's RSA-4096 root, built with openssl as seed 004 builds one, runs a cluster; a weak one is refused."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import SignatureAlgorithmOID

from raftstore.net._frames import STRANGER_FRAME_BYTES
from raftstore.tools._local_cluster import Cluster

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=120)


def seed_004_root(directory: Path, bits: int) -> tuple[Path, Path]:
    """Seed 004's two commands (genrsa -aes256; req -new -x509 -days 730 -sha256), non-interactive."""
    openssl("genrsa", "-aes256", "-passout", "pass:seed004", "-out", "ca-key.pem", str(bits), cwd=directory)
    openssl("req", "-new", "-x509", "-days", "730", "-key", "ca-key.pem", "-passin", "pass:seed004", "-sha256",
            "-subj", "/CN=operator-ca", "-out", "ca.pem", cwd=directory)
    return directory / "ca.pem", directory / "ca-key.pem"


def test_rsa_4096_root_forms_a_working_cluster(cluster: Cluster, tmp_path: Path) -> None:
    cert, encrypted_key = seed_004_root(tmp_path, 4096)
    m1, m2, w1 = cluster.add(), cluster.add(), cluster.add()
    # The seed's key is encrypted: refused with one line saying so, and nothing is created.
    refused = m1.run("init", "--listen-addr", m1.addr, "--ca-cert", str(cert), "--ca-key", str(encrypted_key),
                     check=False)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "unencrypted" in refused.stderr
    assert not (m1.data_dir / "state.json").exists()
    key = tmp_path / "ca-key-plain.pem"
    openssl("rsa", "-in", "ca-key.pem", "-passin", "pass:seed004", "-out", key.name, cwd=tmp_path)
    cluster.init(m1, "--ca-cert", str(cert), "--ca-key", str(key))
    cluster.join(m2, m1, "manager")
    cluster.join(w1, m1, "worker")
    m1.run("kv", "put", "answer", "42")
    assert m2.run("kv", "get", "answer").stdout == "42\n"
    assert m1.run("ca").stdout.encode() == cert.read_bytes()
    for node in (m1, m2, w1):
        leaf = x509.load_pem_x509_certificate((node.data_dir / "certificates" / "swarm-node.crt").read_bytes())
        assert leaf.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA256
        assert leaf.issuer == x509.load_pem_x509_certificate(cert.read_bytes()).subject
    # A node that has not joined reads the root as a stranger; two RSA-4096 roots (a rotation) fit too.
    assert 2 * len(cert.read_bytes()) + 1024 < STRANGER_FRAME_BYTES


def test_rsa_1024_root_is_refused_with_one_line(cluster: Cluster, tmp_path: Path) -> None:
    openssl("genrsa", "-out", "weak.key", "1024", cwd=tmp_path)
    openssl("req", "-new", "-x509", "-days", "730", "-key", "weak.key", "-sha256", "-subj", "/CN=weak",
            "-out", "weak.pem", cwd=tmp_path)
    node = cluster.add()
    result = node.run("init", "--listen-addr", node.addr, "--ca-cert", str(tmp_path / "weak.pem"),
                      "--ca-key", str(tmp_path / "weak.key"), check=False)
    assert result.returncode == 1
    assert result.stderr == "Error: the CA key is RSA 1024 bits: too weak (RSA needs 2048 to 4096 bits)\n"
    assert not (node.data_dir / "state.json").exists()
