"""The cluster's root CA and node certificates (node keys ECDSA P-256, as Swarm issues them).

Recipes only: create a root, load an operator's root (ECDSA P-256/P-384 or RSA
2048-4096; its certificates are signed with the algorithm its key calls for),
issue a node certificate from a CSR, cross-sign a new root during rotation,
check a certificate that an external CA issued, read the identity in a
certificate, verify a chain.
A node certificate names its holder in its subject: O = cluster id, OU = role
(swarm-manager, swarm-worker, swarm-client for operators' API clients, or
swarm-daemon for a remote control API's server certificate), CN = node id.
Each certificate carries the usages its role needs and no more: managers serve
the cluster port (serverAuth + clientAuth); workers and API clients only ever
connect (clientAuth); a daemon certificate only serves (serverAuth). Only the public key is taken from a CSR; its subject, SANs and
extensions are ignored, because the manager, not the requester, decides who
the holder is.

Every input is PEM bytes and every output is PEM bytes: the caller owns the
files. Time is always a parameter (``now``); nothing here reads the clock.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ._chain import _is_ca, _may_sign_certificates, _signed_by, verify_certificate_chain
from ._errors import InvalidArgument, InvalidCertificate
from ._ids import to_base36
from ._keypairs import (
    _check_ca_public_key,
    _key_pem,
    _load_ca_key,
    _load_cert,
    _load_chain,
    _pem,
    _signature_hash,
    _utc,
    private_key_matches_certificate,
    split_pem_chain,
)

__all__ = [
    "ROOT_CN",
    "MANAGER_ROLE",
    "WORKER_ROLE",
    "CLIENT_ROLE",
    "DAEMON_ROLE",
    "MIN_CERT_VALIDITY",
    "CERT_BACKDATE",
    "DEFAULT_CERT_VALIDITY",
    "ROOT_VALIDITY",
    "RootCA",
    "create_root_ca",
    "load_root_ca",
    "root_ca_not_after",
    "issue_certificate",
    "issue_daemon_certificate",
    "is_daemon_certificate",
    "check_issued_certificate",
    "certificate_profile",
    "root_csr",
    "check_cross_signed",
    "node_csr_key",
    "cross_sign",
    "ca_digest",
]

ROOT_CN = "swarm-ca"

MANAGER_ROLE = "swarm-manager"

WORKER_ROLE = "swarm-worker"

#: Operators' clients of the remote control API (``ca issue-client``).
CLIENT_ROLE = "swarm-client"

#: A daemon's server certificate for the remote control API (``ca issue-server``).
DAEMON_ROLE = "swarm-daemon"

#: A daemon certificate names at most this many hosts.
MAX_DAEMON_SANS = 32

_DNS_NAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")

_USAGES = {
    MANAGER_ROLE: [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
    WORKER_ROLE: [ExtendedKeyUsageOID.CLIENT_AUTH],
    CLIENT_ROLE: [ExtendedKeyUsageOID.CLIENT_AUTH],
    DAEMON_ROLE: [ExtendedKeyUsageOID.SERVER_AUTH],
}

MIN_CERT_VALIDITY = timedelta(hours=1)

DEFAULT_CERT_VALIDITY = timedelta(hours=2160)

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
    """A node or client certificate for the public key in ``csr_pem``; returns leaf PEM + intermediates.

    Subject O=cluster id, OU=role, CN=node id; SANs role, node id (and
    swarm-ca on managers); serverAuth + clientAuth for a manager, clientAuth
    alone for a worker or client (neither ever serves, so neither may pose as
    a server); NotBefore = now - 1h, NotAfter = now + validity; random serial.
    Pass the cross-signed root as ``intermediates_pem`` during a CA rotation
    so that nodes still trusting the old root accept the new certificate.

    Raises:
        InvalidArgument: validity under an hour, or an unknown role.
        InvalidCertificate: a CSR that does not parse, whose signature does
            not verify, or whose key is not P-256; a CA without its key here.
    """
    if role not in (MANAGER_ROLE, WORKER_ROLE, CLIENT_ROLE):
        raise InvalidArgument(f"unknown role {role!r}")
    sans: list[x509.GeneralName] = [x509.DNSName(role), x509.DNSName(node_id)]
    if role == MANAGER_ROLE:
        sans.append(x509.DNSName(ROOT_CN))
    return _issue(ca, csr_pem, _subject(cluster_id, role, node_id), _USAGES[role], sans, now, validity,
                  intermediates_pem)


def issue_daemon_certificate(
    ca: RootCA,
    csr_pem: bytes,
    *,
    name: str,
    cluster_id: str,
    hosts: Sequence[str],
    now: datetime,
    validity: timedelta,
    intermediates_pem: bytes = b"",
) -> bytes:
    """A server certificate for a daemon's remote control API, naming the hosts clients dial.

    Subject O=cluster id, OU=swarm-daemon, CN=name; one SAN per host (an IP
    address SAN for an address, a DNS SAN for a name); serverAuth only, so it
    cannot log in anywhere as a client. The CLI checks the host it dialled
    against these SANs, as the docker CLI does.

    Raises:
        InvalidArgument: no host, too many, or one that is neither an IP
            address nor a DNS name; validity under an hour.
        InvalidCertificate: as ``issue_certificate``.
    """
    if not hosts:
        raise InvalidArgument("a daemon certificate needs at least one --san (the name or address clients dial)")
    if len(hosts) > MAX_DAEMON_SANS:
        raise InvalidArgument(f"a daemon certificate names at most {MAX_DAEMON_SANS} hosts")
    sans = [_host_name(host) for host in hosts]
    return _issue(ca, csr_pem, _subject(cluster_id, DAEMON_ROLE, name), _USAGES[DAEMON_ROLE],
                  list(dict.fromkeys(sans)), now, validity, intermediates_pem)


def is_daemon_certificate(cert_pem: bytes) -> bool:
    """Whether a (verified) certificate may identify a control API daemon: it states serverAuth, and
    it is not a node's or an API client's certificate (those identify members, never a daemon).

    OpenSSL accepts a server certificate that states no extended key usage at all; this does not.
    """
    cert = _load_chain(cert_pem)[0]
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (x509.ExtensionNotFound, ValueError):
        return False
    roles = {a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)}
    return ExtendedKeyUsageOID.SERVER_AUTH in usages and not roles & {MANAGER_ROLE, WORKER_ROLE, CLIENT_ROLE}


def certificate_profile(role: str, node_id: str, cluster_id: str) -> dict[str, Any]:
    """What a certificate for ``role`` must say, for a signer outside this process (an external CA):
    its subject (``O``, ``OU``, ``CN``), its DNS SANs (``hosts``) and its extended key usages
    (``usages``, as CFSSL names them), the same as ``issue_certificate`` gives.

    Raises:
        InvalidArgument: an unknown role.
    """
    if role not in (MANAGER_ROLE, WORKER_ROLE, CLIENT_ROLE):
        raise InvalidArgument(f"unknown role {role!r}")
    return {
        "O": cluster_id,
        "OU": role,
        "CN": node_id,
        "hosts": [role, node_id, *([ROOT_CN] if role == MANAGER_ROLE else [])],
        "usages": [_EKU_NAMES[oid] for oid in _USAGES[role]],
    }


_EKU_NAMES = {ExtendedKeyUsageOID.SERVER_AUTH: "server auth", ExtendedKeyUsageOID.CLIENT_AUTH: "client auth"}


def _extension(cert: x509.Certificate, kind: type[Any]) -> Any:
    """The value of one extension, or None when absent (ValueError when malformed)."""
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def check_issued_certificate(
    chain_pem: bytes,
    csr_pem: bytes,
    root_pem: bytes,
    *,
    node_id: str,
    cluster_id: str,
    role: str,
    now: datetime,
) -> bytes:
    """Whether a certificate that an external CA returned is exactly the one asked for; returns its leaf PEM.

    The leaf must name exactly O=cluster id, OU=role, CN=node id (nothing more,
    nothing less) and exactly the DNS SANs ``certificate_profile`` lists,
    certify the CSR's public key, state exactly the extended key
    usages ``issue_certificate`` gives the role (a worker must not be able to
    pose as a server), not be a CA, be valid now for at least
    MIN_CERT_VALIDITY, and chain to ``root_pem`` (directly or through the
    intermediates returned with it). Anything else means the signing service
    is misconfigured or is not the one the cluster trusts.

    Raises:
        InvalidCertificate: naming the first check that failed.
    """
    certs = split_pem_chain(chain_pem)
    if not certs:
        raise InvalidCertificate("the external CA returned no certificate")
    leaf = _load_cert(certs[0])
    expected = _subject(cluster_id, role, node_id)
    if leaf.subject != expected:
        raise InvalidCertificate(
            f"the external CA returned a certificate for {leaf.subject.rfc4514_string()!r}, "
            f"not {expected.rfc4514_string()!r}"
        )
    try:
        if leaf.public_key() != node_csr_key(csr_pem):
            raise InvalidCertificate("the external CA returned a certificate for another key than the CSR's")
        usages = set(_extension(leaf, x509.ExtendedKeyUsage) or [])
        sans = list(_extension(leaf, x509.SubjectAlternativeName) or [])
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidCertificate("the external CA returned an unreadable certificate") from None
    hosts = certificate_profile(role, node_id, cluster_id)["hosts"]
    named = sorted(str(getattr(name, "value", name)) for name in sans)
    if named != sorted(hosts) or not all(isinstance(name, x509.DNSName) for name in sans):
        raise InvalidCertificate(f"the external CA's certificate names {', '.join(named) or 'nothing'}; "
                                 f"it must name exactly {', '.join(hosts)} (the request's hosts)")
    if usages != set(_USAGES[role]):
        names = ", ".join(sorted(_EKU_NAMES.get(u, u.dotted_string) for u in usages)) or "none"
        want = ", ".join(_EKU_NAMES[u] for u in _USAGES[role])
        raise InvalidCertificate(
            f"the external CA's certificate for a {role} states the usages {names}; it must state exactly {want} "
            f"(its CFSSL profile {role!r})"
        )
    if leaf.not_valid_after_utc - _utc(now) < MIN_CERT_VALIDITY:
        raise InvalidCertificate("the external CA returned a certificate valid for less than an hour")
    try:
        verify_certificate_chain(chain_pem, root_pem, now)
    except InvalidCertificate as error:
        raise InvalidCertificate(f"the external CA's certificate does not chain to the cluster root: {error}") from None
    return certs[0]


def _host_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _DNS_NAME.match(host):
        raise InvalidArgument(f"invalid --san {host!r}: give a DNS name or an IP address")
    return x509.DNSName(host.lower())


def _subject(cluster_id: str, role: str, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster_id),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def node_csr_key(csr_pem: bytes) -> ec.EllipticCurvePublicKey:
    """The P-256 key a node's CSR proves possession of; checked before any CA, here or external, sees it.

    Raises:
        InvalidCertificate: not a CSR, a signature that does not verify, or another kind of key.
    """
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
        valid = csr.is_signature_valid
        public = csr.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidCertificate("not a usable PEM certificate signing request") from None
    if not valid:
        raise InvalidCertificate("the CSR's signature does not verify")
    if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(public.curve, ec.SECP256R1):
        raise InvalidCertificate("only ECDSA P-256 keys are accepted")
    return public


def _issue(
    ca: RootCA,
    csr_pem: bytes,
    subject: x509.Name,
    usages: list[x509.ObjectIdentifier],
    sans: list[x509.GeneralName],
    now: datetime,
    validity: timedelta,
    intermediates_pem: bytes,
) -> bytes:
    """Sign a leaf for the CSR's public key; only the key is taken from the CSR (see module doc)."""
    if validity < MIN_CERT_VALIDITY:
        raise InvalidArgument("minimum certificate expiry time is: 1h0m0s")
    if ca.key_pem is None:
        raise InvalidCertificate("this CA has no signing key here")
    public = node_csr_key(csr_pem)
    ca_cert = _load_cert(ca.cert_pem)
    ca_key = _load_ca_key(ca.key_pem)
    now = _utc(now)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
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
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, _signature_hash(ca_key))
    )
    return _pem(cert) + intermediates_pem


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
        key_id = x509.SubjectKeyIdentifier.from_public_key(new_cert.public_key())  # type: ignore[arg-type]
    cert = (
        x509.CertificateBuilder()
        .subject_name(new_cert.subject)
        .issuer_name(old_cert.subject)
        .public_key(new_cert.public_key())  # type: ignore[arg-type]
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


def ca_digest(bundle_pem: bytes) -> str:
    """SHA-256 of the root CA bundle's PEM bytes, in base 36, left-padded to 50 characters."""
    return to_base36(int.from_bytes(hashlib.sha256(bundle_pem).digest(), "big"), 50)
