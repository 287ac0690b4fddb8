"""Reading and verifying node certificates: who a certificate names, and whether to believe it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.x509.oid import NameOID

from ._errors import InvalidCertificate
from ._keypairs import _load_chain, _utc

__all__ = ["CertificateIdentity", "certificate_identity", "verify_certificate_chain"]


@dataclass(frozen=True)
class CertificateIdentity:
    """Who a node certificate names, when it is valid (UTC), and its serial (lower-case hex, no 0x).

    The serial is what the store records per node (``cert_serials``) and per
    revoked admin client, so that authority needs the store's confirmation,
    not only a certificate's fields.
    """

    node_id: str
    cluster_id: str
    role: str
    not_before: datetime
    not_after: datetime
    serial: str = ""


def _name_value(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else None


def certificate_identity(cert_pem: bytes) -> CertificateIdentity:
    """The node a certificate (the first of a chain) names; no verification (see verify_certificate_chain).

    Raises:
        InvalidCertificate: not a certificate, or O, OU or CN missing.
    """
    cert = _load_chain(cert_pem)[0]
    subject = cert.subject
    node_id = _name_value(subject, NameOID.COMMON_NAME)
    cluster_id = _name_value(subject, NameOID.ORGANIZATION_NAME)
    role = _name_value(subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
    if not (node_id and cluster_id and role):
        raise InvalidCertificate("the certificate does not name a node (O, OU and CN are required)")
    return CertificateIdentity(node_id, cluster_id, role, cert.not_valid_before_utc, cert.not_valid_after_utc,
                               format(cert.serial_number, "x"))


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer`` names and signed ``cert`` (ECDSA or RSA, PKCS#1 v1.5 or PSS: roots may be either)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except (x509.ExtensionNotFound, ValueError):
        return False


def _may_sign_certificates(cert: x509.Certificate) -> bool:
    """CA:true, and keyCertSign if it states a key usage at all (as OpenSSL requires)."""
    if not _is_ca(cert):
        return False
    try:
        return bool(cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign)
    except x509.ExtensionNotFound:
        return True
    except ValueError:
        return False


def verify_certificate_chain(
    chain_pem: bytes, trusted_roots_pem: bytes, now: datetime, *, allow_expired_leaf: bool = False
) -> CertificateIdentity:
    """Check that the leaf chains to a trusted root, directly or through the intermediates given.

    The path is at most leaf → intermediate → root, which is all a CA
    rotation produces (the intermediate is the cross-signed new root). Each
    link is checked by hand: issuer name, the issuer's signature (ECDSA or
    RSA) over the to-be-signed bytes, the issuer being a CA allowed to sign
    certificates, and every certificate valid at ``now``; the leaf must not
    be a CA. ``ssl`` does the same at every handshake; this is for checks
    outside TLS (joining, renewal).

    Why not ``cryptography.x509.verification``: its Web-PKI profile refuses
    private roots that OpenSSL accepts and that operators bring with
    ``--ca-cert`` (a non-critical basicConstraints, no keyUsage), and it
    cannot check a chain whose leaf alone has expired, which renewal of an
    expired certificate needs (``allow_expired_leaf``; possession is then
    proved separately). The tests check that both agree on our own chains.

    Raises:
        InvalidCertificate: expired or not yet valid, a CA as leaf, not
            signed by any trusted root (directly or through a given
            intermediate), or not a node certificate (O, OU, CN missing).
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
    roots = [root for root in roots if valid(root) and _may_sign_certificates(root)]
    for root in roots:
        if _signed_by(leaf, root):
            return certificate_identity(chain_pem)
    for middle in intermediates:
        if not (_may_sign_certificates(middle) and valid(middle) and _signed_by(leaf, middle)):
            continue
        for root in roots:
            if _signed_by(middle, root):
                return certificate_identity(chain_pem)
    raise InvalidCertificate("the certificate is not signed by a trusted root of this cluster")
