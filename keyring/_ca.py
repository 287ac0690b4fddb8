"""The cluster's root CA and node certificates (ECDSA P-256, as Swarm issues them).

Recipes only: create a root, issue a node certificate from a CSR, cross-sign a
new root during rotation, read the identity in a certificate, verify a chain.
A node certificate names its holder in its subject: O = cluster id, OU = role
(swarm-manager or swarm-worker), CN = node id. Only the public key is taken
from a CSR; everything else in it is ignored.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ._errors import InvalidArgument, InvalidCertificate
from ._ids import to_base36

__all__ = [
    "ROOT_CN",
    "MANAGER_ROLE",
    "WORKER_ROLE",
    "CLIENT_ROLE",
    "MIN_CERT_VALIDITY",
    "DEFAULT_CERT_VALIDITY",
    "ROOT_VALIDITY",
    "RootCA",
    "CertificateIdentity",
    "create_root_ca",
    "load_root_ca",
    "root_ca_not_after",
    "generate_private_key",
    "public_key_fingerprint",
    "make_csr",
    "issue_certificate",
    "certificate_identity",
    "cross_sign",
    "verify_certificate_chain",
    "ca_digest",
    "private_key_matches_certificate",
    "split_pem_chain",
    "sign_possession",
    "verify_possession",
    "certificate_fingerprint",
]

ROOT_CN = "swarm-ca"
MANAGER_ROLE = "swarm-manager"
WORKER_ROLE = "swarm-worker"
#: Operators' clients of the remote control API (``ca issue-client``).
CLIENT_ROLE = "swarm-client"
MIN_CERT_VALIDITY = timedelta(hours=1)
DEFAULT_CERT_VALIDITY = timedelta(hours=2160)
ROOT_VALIDITY = timedelta(days=365 * 20)
_BACKDATE = timedelta(hours=1)
_PEM_END = b"-----END CERTIFICATE-----"


@dataclass(frozen=True)
class RootCA:
    cert_pem: bytes
    key_pem: bytes | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return f"RootCA(cert_pem=<{len(self.cert_pem)} bytes>, key_pem={'<redacted>' if self.key_pem else None})"


@dataclass(frozen=True)
class CertificateIdentity:
    node_id: str
    cluster_id: str
    role: str
    not_before: datetime
    not_after: datetime


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def split_pem_chain(pem: bytes) -> list[bytes]:
    """The certificates of a PEM bundle, in order."""
    parts = []
    for chunk in pem.split(_PEM_END)[:-1]:
        start = chunk.find(b"-----BEGIN CERTIFICATE-----")
        if start >= 0:
            parts.append(chunk[start:] + _PEM_END + b"\n")
    return parts


def _load_cert(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except (ValueError, TypeError):
        raise InvalidCertificate("not a PEM certificate") from None


def _load_chain(pem: bytes) -> list[x509.Certificate]:
    certs = [_load_cert(p) for p in split_pem_chain(pem)]
    if not certs:
        raise InvalidCertificate("no certificate found")
    return certs


def _load_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise InvalidCertificate("not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise InvalidCertificate("only ECDSA P-256 keys are supported")
    return key


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _ca_name() -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ROOT_CN)])


def _random_serial() -> int:
    return x509.random_serial_number()


def create_root_ca(now: datetime, validity: timedelta = ROOT_VALIDITY) -> RootCA:
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


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_root_ca(cert_pem: bytes, key_pem: bytes, now: datetime) -> RootCA:
    """An operator's own root (``--ca-cert/--ca-key``): one P-256 CA certificate and its key."""
    certs = split_pem_chain(cert_pem)
    if len(certs) != 1:
        raise InvalidCertificate(f"the CA certificate file must hold exactly one certificate, not {len(certs)}")
    cert = _load_cert(certs[0])
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise InvalidCertificate("the CA certificate is not a CA (no basic constraints)") from None
    if not constraints.ca:
        raise InvalidCertificate("the CA certificate is not a CA")
    key = _load_key(key_pem)
    if not private_key_matches_certificate(key_pem, certs[0]):
        raise InvalidCertificate("the CA key does not match the CA certificate")
    if _utc(now) >= cert.not_valid_after_utc:
        raise InvalidCertificate("the CA certificate has expired")
    return RootCA(certs[0], _key_pem(key))


def root_ca_not_after(cert_pem: bytes) -> datetime:
    return _load_chain(cert_pem)[0].not_valid_after_utc


def generate_private_key() -> bytes:
    return _key_pem(ec.generate_private_key(ec.SECP256R1()))


def public_key_fingerprint(pem: bytes) -> str:
    """SHA-256 of the SubjectPublicKeyInfo of a certificate's or private key's public key."""
    if b"PRIVATE KEY" in pem:
        public = _load_key(pem).public_key()
    else:
        public = _load_chain(pem)[0].public_key()
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def make_csr(private_key_pem: bytes) -> bytes:
    key = _load_key(private_key_pem)
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def issue_certificate(
    ca: RootCA,
    csr_pem: bytes,
    *,
    node_id: str,
    cluster_id: str,
    role: str,
    now: datetime,
    validity: timedelta,
    intermediates_pem: bytes = b"",
) -> bytes:
    """A node certificate for the public key in ``csr_pem``; returns leaf PEM + intermediates."""
    if validity < MIN_CERT_VALIDITY:
        raise InvalidArgument("minimum certificate expiry time is: 1h0m0s")
    if role not in (MANAGER_ROLE, WORKER_ROLE, CLIENT_ROLE):
        raise InvalidArgument(f"unknown role {role!r}")
    if ca.key_pem is None:
        raise InvalidCertificate("this CA has no signing key here")
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
        valid = csr.is_signature_valid
        public = csr.public_key()
    except (ValueError, TypeError):
        raise InvalidCertificate("not a usable PEM certificate signing request") from None
    if not valid:
        raise InvalidCertificate("the CSR's signature does not verify")
    if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(public.curve, ec.SECP256R1):
        raise InvalidCertificate("only ECDSA P-256 keys are accepted")
    ca_cert = _load_cert(ca.cert_pem)
    ca_key = _load_key(ca.key_pem)
    now = _utc(now)
    sans = [x509.DNSName(role), x509.DNSName(node_id)]
    if role == MANAGER_ROLE:
        sans.append(x509.DNSName(ROOT_CN))
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster_id),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                    x509.NameAttribute(NameOID.COMMON_NAME, node_id),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(_random_serial())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=True, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return _pem(cert) + intermediates_pem


def _name_value(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else None


def certificate_identity(cert_pem: bytes) -> CertificateIdentity:
    cert = _load_chain(cert_pem)[0]
    subject = cert.subject
    node_id = _name_value(subject, NameOID.COMMON_NAME)
    cluster_id = _name_value(subject, NameOID.ORGANIZATION_NAME)
    role = _name_value(subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
    if not (node_id and cluster_id and role):
        raise InvalidCertificate("the certificate does not name a node (O, OU and CN are required)")
    return CertificateIdentity(node_id, cluster_id, role, cert.not_valid_before_utc, cert.not_valid_after_utc)


def cross_sign(old: RootCA, new_root_cert_pem: bytes, now: datetime) -> bytes:
    """The new root's subject and key, certified by the old root: the bridge during a rotation."""
    if old.key_pem is None:
        raise InvalidCertificate("the current root's key is needed to cross-sign")
    old_cert = _load_cert(old.cert_pem)
    new_cert = _load_chain(new_root_cert_pem)[0]
    old_key = _load_key(old.key_pem)
    now = _utc(now)
    not_after = min(new_cert.not_valid_after_utc, old_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(new_cert.subject)
        .issuer_name(old_cert.subject)
        .public_key(new_cert.public_key())
        .serial_number(_random_serial())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        # Both roots are named CN=swarm-ca: key identifiers are how TLS
        # libraries tell the new root's key (here) from the old one.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(new_cert.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(old_key.public_key()), critical=False)
        .sign(old_key, hashes.SHA256())
    )
    return _pem(cert)


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    public = issuer.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or cert.signature_hash_algorithm is None:
        return False
    try:
        public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    except InvalidSignature:
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def verify_certificate_chain(
    chain_pem: bytes, trusted_roots_pem: bytes, now: datetime, *, allow_expired_leaf: bool = False
) -> CertificateIdentity:
    """Check that the leaf chains to a trusted root, directly or through the intermediates given.

    Signatures are checked with each issuer's public key (ECDSA) over the
    to-be-signed bytes, plus validity periods and CA constraints; the path is
    at most leaf → intermediate → root, which is all a rotation produces.
    ``ssl`` does the same at every handshake; this is for checks outside TLS.
    """
    now = _utc(now)
    chain = _load_chain(chain_pem)
    roots = _load_chain(trusted_roots_pem)
    leaf, intermediates = chain[0], chain[1:]
    if _is_ca(leaf):
        raise InvalidCertificate("a CA certificate cannot be a node certificate")

    def valid(cert: x509.Certificate) -> bool:
        return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc

    if not valid(leaf) and not (allow_expired_leaf and leaf.not_valid_before_utc <= now):
        raise InvalidCertificate("the certificate has expired or is not yet valid")
    for root in roots:
        if valid(root) and _signed_by(leaf, root):
            return certificate_identity(chain_pem)
    for middle in intermediates:
        if not (_is_ca(middle) and valid(middle) and _signed_by(leaf, middle)):
            continue
        for root in roots:
            if valid(root) and _signed_by(middle, root):
                return certificate_identity(chain_pem)
    raise InvalidCertificate("the certificate is not signed by a trusted root of this cluster")


def ca_digest(bundle_pem: bytes) -> str:
    """SHA-256 of the root CA bundle's PEM bytes, in base 36, left-padded to 50 characters."""
    return to_base36(int.from_bytes(hashlib.sha256(bundle_pem).digest(), "big"), 50)


def private_key_matches_certificate(key_pem: bytes, cert_pem: bytes) -> bool:
    try:
        return public_key_fingerprint(key_pem) == public_key_fingerprint(cert_pem)
    except InvalidCertificate:
        return False


def certificate_fingerprint(cert_pem: bytes) -> str:
    """SHA-256 (hex) of the first certificate's DER: names one certificate exactly."""
    return hashlib.sha256(_load_chain(cert_pem)[0].public_bytes(serialization.Encoding.DER)).hexdigest()


_POSSESSION_PREFIX = b"raftstore possession proof v1\0"


def sign_possession(private_key_pem: bytes, message: bytes) -> bytes:
    """Prove, with the node's key, that the holder of a certificate asks for ``message``.

    Used where TLS cannot carry the proof: renewing a certificate that has
    already expired (TLS refuses expired client certificates).
    """
    key = _load_key(private_key_pem)
    return key.sign(_POSSESSION_PREFIX + message, ec.ECDSA(hashes.SHA256()))


def verify_possession(cert_pem: bytes, message: bytes, signature: bytes) -> bool:
    public = _load_chain(cert_pem)[0].public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        return False
    try:
        public.verify(signature, _POSSESSION_PREFIX + message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True
