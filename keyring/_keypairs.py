"""Key pairs and PEM: load, generate, fingerprint, request (CSR) and prove possession.

The low layer under ``_ca`` and ``_chain``. Every node key is ECDSA P-256, as
Swarm uses; anything else is refused with InvalidCertificate. A root CA's key
may also be an operator's RSA (2048 to 4096 bits) or ECDSA P-384 key
(``_load_ca_key``); what it signs uses a signature that follows its key type.
Inputs and outputs are PEM bytes; the caller owns the files.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ._errors import InvalidCertificate

__all__ = [
    "split_pem_chain",
    "generate_private_key",
    "public_key_fingerprint",
    "certificate_fingerprint",
    "private_key_matches_certificate",
    "make_csr",
    "sign_possession",
    "verify_possession",
]

_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"
_PEM_END = b"-----END CERTIFICATE-----"


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def split_pem_chain(pem: bytes) -> list[bytes]:
    """The certificates of a PEM bundle, in order."""
    parts = []
    for chunk in pem.split(_PEM_END)[:-1]:
        start = chunk.find(_PEM_BEGIN)
        if start >= 0:
            parts.append(chunk[start:] + _PEM_END + b"\n")
    return parts


def _load_cert(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidCertificate("not a PEM certificate") from None


def _load_chain(pem: bytes) -> list[x509.Certificate]:
    certs = [_load_cert(p) for p in split_pem_chain(pem)]
    if not certs:
        raise InvalidCertificate("no certificate found")
    return certs


def _load_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidCertificate("not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise InvalidCertificate("only ECDSA P-256 keys are supported")
    return key


#: A root CA key that is neither of these is refused (DESIGN: operator root).
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 4096
_CA_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384"}

CAPrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _check_ca_public_key(public: object) -> None:
    """Refuse, saying why, a root CA key we do not sign with: weak RSA, other curves, other key types.

    Raises:
        InvalidCertificate: naming the key and what is accepted.
    """
    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size < MIN_RSA_BITS:
            raise InvalidCertificate(f"the CA key is RSA {public.key_size} bits: too weak (RSA needs {MIN_RSA_BITS} to {MAX_RSA_BITS} bits)")
        if public.key_size > MAX_RSA_BITS:
            raise InvalidCertificate(f"the CA key is RSA {public.key_size} bits: RSA keys of {MIN_RSA_BITS} to {MAX_RSA_BITS} bits are accepted")
        return
    if isinstance(public, ec.EllipticCurvePublicKey):
        if public.curve.name not in _CA_CURVES:
            raise InvalidCertificate(f"the CA key is on curve {public.curve.name}: only ECDSA P-256 and P-384 are accepted")
        return
    raise InvalidCertificate(f"the CA key is {type(public).__name__.lstrip('_')}: only RSA and ECDSA P-256/P-384 keys are accepted")


def _load_ca_key(pem: bytes) -> CAPrivateKey:
    """A root CA's private key: ECDSA P-256 or P-384, or RSA 2048 to 4096 bits, unencrypted.

    Raises:
        InvalidCertificate: unreadable, encrypted, or a key ``_check_ca_public_key`` refuses.
    """
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidCertificate("the CA key is not an unencrypted PEM private key") from None
    _check_ca_public_key(key.public_key())
    assert isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey))
    return key


def _signature_hash(key: CAPrivateKey) -> hashes.SHA256 | hashes.SHA384:
    """The digest a CA key signs with: SHA-384 for P-384 (its matching strength), SHA-256 otherwise."""
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1":
        return hashes.SHA384()
    return hashes.SHA256()


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: CAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def generate_private_key() -> bytes:
    """A new node (or CA) key: P-256, unencrypted PKCS#8 PEM (the caller seals or protects it)."""
    return _key_pem(ec.generate_private_key(ec.SECP256R1()))


def public_key_fingerprint(pem: bytes) -> str:
    """SHA-256 (hex) of the SubjectPublicKeyInfo DER of a certificate's or private key's public key.

    Names a key pair, not a certificate: a rotation refuses a "new" root that
    reuses the current key.

    Raises:
        InvalidCertificate: neither a PEM certificate nor a node or CA PEM private key.
    """
    public = _load_ca_key(pem).public_key() if b"PRIVATE KEY" in pem else _load_chain(pem)[0].public_key()
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def certificate_fingerprint(cert_pem: bytes) -> str:
    """SHA-256 (hex) of the first certificate's DER: names one certificate exactly."""
    return hashlib.sha256(_load_chain(cert_pem)[0].public_bytes(serialization.Encoding.DER)).hexdigest()


def private_key_matches_certificate(key_pem: bytes, cert_pem: bytes) -> bool:
    """Whether the key is the one the (first) certificate certifies; False for anything unreadable."""
    try:
        return public_key_fingerprint(key_pem) == public_key_fingerprint(cert_pem)
    except InvalidCertificate:
        return False


def make_csr(private_key_pem: bytes) -> bytes:
    """A CSR (PEM) for the key: it only proves possession; the CA decides every name."""
    key = _load_key(private_key_pem)
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


_POSSESSION_PREFIX = b"raftstore possession proof v1\0"


def sign_possession(private_key_pem: bytes, message: bytes) -> bytes:
    """Prove, with the node's key, that the holder of a certificate asks for ``message``.

    Used where TLS cannot carry the proof: renewing a certificate that has
    already expired (TLS refuses expired client certificates).
    """
    key = _load_key(private_key_pem)
    return key.sign(_POSSESSION_PREFIX + message, ec.ECDSA(hashes.SHA256()))


def verify_possession(cert_pem: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``sign_possession(key, message)`` by the key the certificate names.

    Raises:
        InvalidCertificate: ``cert_pem`` is not a certificate.
    """
    public = _load_chain(cert_pem)[0].public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        return False
    try:
        public.verify(signature, _POSSESSION_PREFIX + message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
