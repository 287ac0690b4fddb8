"""The bridge during a root CA rotation: the new root's subject and key certified by the old root.

A leaf issued by the new root, sent with this intermediate, chains to the old
root, so nodes that have not yet learnt the new root keep accepting it. The
cluster cross-signs when it holds the old root's key; otherwise it asks the
external CA that does (``root_csr``) and checks the answer
(``check_cross_signed``). Time is always a parameter (``now``).
"""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ._ca import _BACKDATE, RootCA, _random_serial
from ._chain import _is_ca, _may_sign_certificates, _signed_by
from ._errors import InvalidCertificate
from ._keypairs import _load_ca_key, _load_cert, _load_chain, _pem, _signature_hash, _utc, split_pem_chain

__all__ = ["cross_sign", "root_csr", "check_cross_signed"]


def cross_sign(old: RootCA, new_root_cert_pem: bytes, now: datetime) -> bytes:
    """The new root's subject and key, certified by the old root: the bridge during a rotation.

    A leaf issued by the new root, sent with this intermediate, chains to the
    old root, so nodes that have not yet learnt the new root keep accepting
    it. CA:true with pathlen 0; valid no longer than either root. It carries
    the new root's subject key identifier, so path builders (OpenSSL) match it
    to leaves whose authority key identifier names the new key.

    Raises:
        InvalidCertificate: the old root's key is missing, the new root is
            not a CA, or the old root has expired.
    """
    if old.key_pem is None:
        raise InvalidCertificate("the current root's key is needed to cross-sign")
    old_cert = _load_cert(old.cert_pem)
    new_cert = _load_chain(new_root_cert_pem)[0]
    if not _is_ca(new_cert):
        raise InvalidCertificate("the new root certificate is not a CA")
    old_key = _load_ca_key(old.key_pem)
    now = _utc(now)
    not_after = min(new_cert.not_valid_after_utc, old_cert.not_valid_after_utc)
    if not_after <= now:
        raise InvalidCertificate("cannot cross-sign: a root has expired")
    try:
        key_id = new_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        key_id = x509.SubjectKeyIdentifier.from_public_key(new_cert.public_key())
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
        .add_extension(key_id, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(old_key.public_key()), critical=False)
        .sign(old_key, _signature_hash(old_key))
    )
    return _pem(cert)


def root_csr(new: RootCA) -> bytes:
    """A CSR for the new root's own subject and key, signed by that key: what an external CA that holds
    the old root's key is asked to cross-sign (Swarm sends the same), because the cluster cannot.

    Raises:
        InvalidCertificate: the new root's key is not here.
    """
    if new.key_pem is None:
        raise InvalidCertificate("a cross-signing request needs the new root's key")
    cert = _load_cert(new.cert_pem)
    key = _load_ca_key(new.key_pem)
    csr = x509.CertificateSigningRequestBuilder().subject_name(cert.subject).sign(key, _signature_hash(key))
    return csr.public_bytes(serialization.Encoding.PEM)


def check_cross_signed(cert_pem: bytes, old_root_pem: bytes, new_root_pem: bytes, now: datetime) -> bytes:
    """Whether an external CA's answer is the bridge asked for: the new root's subject and key, CA:true,
    allowed to sign certificates, signed by the old root, valid now. Returns the certificate's PEM.

    Raises:
        InvalidCertificate: naming the first check that failed.
    """
    certs = split_pem_chain(cert_pem)
    if not certs:
        raise InvalidCertificate("the external CA returned no certificate")
    bridge, old, new = _load_cert(certs[0]), _load_cert(old_root_pem), _load_chain(new_root_pem)[0]
    if bridge.subject != new.subject or bridge.public_key() != new.public_key():
        raise InvalidCertificate("the external CA's cross-signed certificate is not for the new root's name and key")
    if not _may_sign_certificates(bridge):
        raise InvalidCertificate("the external CA's cross-signed certificate is not a CA that may sign certificates "
                                 "(its CFSSL profile swarm-cross-sign needs ca_constraint is_ca and cert sign)")
    if not _signed_by(bridge, old):
        raise InvalidCertificate("the external CA's cross-signed certificate is not signed by the current root")
    if not bridge.not_valid_before_utc <= _utc(now) < bridge.not_valid_after_utc:
        raise InvalidCertificate("the external CA's cross-signed certificate is not valid now")
    return certs[0]
