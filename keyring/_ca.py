"""The cluster's root CA (an ECDSA P-256 key made here, or an operator's own root).

Recipes only: create a root, load and check an operator's root (ECDSA
P-256/P-384 or RSA 2048-4096; its certificates are signed with the algorithm
its key calls for), read when a root expires, and fingerprint the root bundle
for join tokens. The certificates a root issues live in ``_certificates``; the
bridge between an old and a new root during a rotation in ``_cross_sign``.

Every input is PEM bytes and every output is PEM bytes: the caller owns the
files. Time is always a parameter (``now``); nothing here reads the clock.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ._chain import _may_sign_certificates, _signed_by
from ._errors import InvalidCertificate
from ._ids import to_base36
from ._keypairs import (
    _check_ca_public_key,
    _key_pem,
    _load_ca_key,
    _load_cert,
    _load_chain,
    _pem,
    _utc,
    private_key_matches_certificate,
    split_pem_chain,
)

__all__ = [
    "ROOT_CN",
    "CERT_BACKDATE",
    "ROOT_VALIDITY",
    "RootCA",
    "create_root_ca",
    "load_root_ca",
    "root_ca_not_after",
    "ca_digest",
]

ROOT_CN = "swarm-ca"

ROOT_VALIDITY = timedelta(days=365 * 20)

#: NotBefore is set this far before issuance, for clock skew between nodes.
CERT_BACKDATE = timedelta(hours=1)
_BACKDATE = CERT_BACKDATE


@dataclass(frozen=True)
class RootCA:
    """A root certificate and, on managers, its signing key (absent where a node only verifies)."""

    cert_pem: bytes
    key_pem: bytes | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return f"RootCA(cert_pem=<{len(self.cert_pem)} bytes>, key_pem={'<redacted>' if self.key_pem else None})"


def _ca_name() -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ROOT_CN)])


def _random_serial() -> int:
    return x509.random_serial_number()


def create_root_ca(now: datetime, validity: timedelta = ROOT_VALIDITY) -> RootCA:
    """A new cluster root: P-256 key, subject CN=swarm-ca, CA:true, back-dated one hour.

    The back-dating lets nodes whose clocks lag a little accept it at once.
    """
    now = _utc(now)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _ca_name()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_random_serial())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return RootCA(_pem(cert), _key_pem(key))


def load_root_ca(cert_pem: bytes, key_pem: bytes | None, now: datetime) -> RootCA:
    """An operator's own root (``--ca-cert`` [``--ca-key``]), checked before the cluster depends on it.

    It must be exactly one certificate, a self-signed CA allowed to sign
    certificates (keyCertSign, when it states a key usage, as OpenSSL reads
    it), currently valid, with an ECDSA P-256/P-384 or RSA 2048-4096 key; and
    the key, when given, unencrypted and matching. Without a key the root is
    an external CA's (the cluster never holds its key). TLS (``ssl``) would
    refuse much of this later, at a worse moment.

    Raises:
        InvalidCertificate: naming the first check that failed.
    """
    certs = split_pem_chain(cert_pem)
    if len(certs) != 1:
        raise InvalidCertificate(f"the CA certificate file must hold exactly one certificate, not {len(certs)}")
    cert = _load_cert(certs[0])
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise InvalidCertificate("the CA certificate is not a CA (no basic constraints)") from None
    except ValueError:
        raise InvalidCertificate("the CA certificate has malformed extensions") from None
    if not constraints.ca:
        raise InvalidCertificate("the CA certificate is not a CA (basic constraints say CA:FALSE)")
    if not _may_sign_certificates(cert):
        raise InvalidCertificate("the CA certificate may not sign certificates (its key usage lacks keyCertSign)")
    try:
        _check_ca_public_key(cert.public_key())
    except (ValueError, UnsupportedAlgorithm):
        raise InvalidCertificate("the CA certificate's public key is unreadable") from None
    if not _signed_by(cert, cert):
        raise InvalidCertificate("the CA certificate is not a root (it is not self-signed)")
    now = _utc(now)
    if now >= cert.not_valid_after_utc:
        raise InvalidCertificate("the CA certificate has expired")
    if now < cert.not_valid_before_utc:
        raise InvalidCertificate("the CA certificate is not valid yet")
    if key_pem is None:
        return RootCA(certs[0])
    key = _load_ca_key(key_pem)
    if not private_key_matches_certificate(key_pem, certs[0]):
        raise InvalidCertificate("the CA key does not match the CA certificate")
    return RootCA(certs[0], _key_pem(key))


def root_ca_not_after(cert_pem: bytes) -> datetime:
    """When the (first) certificate expires, in UTC.

    Raises:
        InvalidCertificate: not a PEM certificate.
    """
    return _load_chain(cert_pem)[0].not_valid_after_utc


def ca_digest(bundle_pem: bytes) -> str:
    """SHA-256 of the root CA bundle's PEM bytes, in base 36, left-padded to 50 characters."""
    return to_base36(int.from_bytes(hashlib.sha256(bundle_pem).digest(), "big"), 50)
