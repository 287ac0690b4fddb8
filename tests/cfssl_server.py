"""A real CFSSL signing service (`cfssl serve`, Debian's golang-cfssl) on 127.0.0.1, for external-CA tests.

It signs with a root generated here, serves HTTPS with its own TLS certificate (from a separate
TLS CA, which the cluster pins with ``cacert=``), and uses the profiles docs/guide.md tells operators
to configure: ``swarm-manager`` (server auth + client auth), ``swarm-worker`` and ``swarm-client``
(client auth), ``swarm-cross-sign`` (a CA, for a rotation away from this root).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from raftstore.tools._local_cluster import free_port, wait_until

CFSSL = shutil.which("cfssl")
SKIP_REASON = "cfssl is not installed (apt-get install golang-cfssl; .ci/run installs it)"

PROFILES: dict[str, Any] = {
    "swarm-manager": {"expiry": "2160h", "usages": ["signing", "key encipherment", "server auth", "client auth"]},
    "swarm-worker": {"expiry": "2160h", "usages": ["signing", "key encipherment", "client auth"]},
    "swarm-client": {"expiry": "2160h", "usages": ["signing", "key encipherment", "client auth"]},
    "swarm-cross-sign": {"expiry": "8760h", "usages": ["cert sign", "crl sign"],
                         "ca_constraint": {"is_ca": True, "max_path_len": 0, "max_path_len_zero": True}},
}


def _pem_key(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,  # type: ignore[no-any-return]
                             serialization.NoEncryption())


def _certificate(subject: str, key: Any, issuer: tuple[x509.Name, Any] | None = None, *, ca: bool,
                 server_ip: str | None = None) -> bytes:
    now = datetime.now(timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer or (name, key)
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True)
    if server_ip:
        import ipaddress

        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(server_ip))]), critical=False
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


class CfsslServer:
    """`cfssl serve` in ``directory``: ``root.pem`` (the root it signs with), ``tls-ca.pem`` (pin this)."""

    def __init__(self, directory: Path, profiles: dict[str, Any] | None = None, name: str = "cfssl") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        root_key = ec.generate_private_key(ec.SECP256R1())
        self.root_pem = _certificate("operator-root", root_key, ca=True)
        self.root_key_pem = _pem_key(root_key)
        tls_ca_key, tls_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        tls_ca = _certificate("cfssl-tls-ca", tls_ca_key, ca=True)
        tls_ca_name = x509.load_pem_x509_certificate(tls_ca).subject
        files = {
            "root.pem": self.root_pem,
            "root-key.pem": self.root_key_pem,
            "tls-ca.pem": tls_ca,
            "tls.pem": _certificate(name, tls_key, (tls_ca_name, tls_ca_key), ca=False, server_ip="127.0.0.1"),
            "tls-key.pem": _pem_key(tls_key),
            "config.json": json.dumps({"signing": {"default": PROFILES["swarm-worker"],
                                                   "profiles": profiles or PROFILES}}).encode(),
        }
        for filename, data in files.items():
            (directory / filename).write_bytes(data)
        (directory / "root-key.pem").chmod(0o600)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def option(self) -> str:
        """The ``--external-ca`` value for this service."""
        return f"protocol=cfssl,url={self.url},cacert={self.directory / 'tls-ca.pem'}"

    def start(self) -> None:
        assert CFSSL is not None, SKIP_REASON
        d = self.directory
        log = open(d / "serve.log", "ab")
        self.process = subprocess.Popen(
            [CFSSL, "serve", "-address", "127.0.0.1", "-port", str(self.port), "-ca", str(d / "root.pem"),
             "-ca-key", str(d / "root-key.pem"), "-config", str(d / "config.json"), "-tls-cert", str(d / "tls.pem"),
             "-tls-key", str(d / "tls-key.pem"), "-loglevel", "2"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(self._listening, timeout=15, what=f"cfssl serve on port {self.port}")

    def _listening(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"cfssl serve exited: {(self.directory / 'serve.log').read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)
        self.process = None
