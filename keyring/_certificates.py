"""Node, API-client and daemon certificates issued by the cluster root (node keys ECDSA P-256, as Swarm
issues them), and the checks on a certificate that an external CA issued instead.

A certificate names its holder in its subject: O = cluster id, OU = role
(swarm-manager, swarm-worker, swarm-client for operators' API clients, or
swarm-daemon for a remote control API's server certificate), CN = node id.
Each certificate carries the usages its role needs and no more: managers serve
the cluster port (serverAuth + clientAuth); workers and API clients only ever
connect (clientAuth); a daemon certificate only serves (serverAuth). Only the
public key is taken from a CSR; its subject, SANs and extensions are ignored,
because the manager, not the requester, decides who the holder is.

Every input is PEM bytes and every output is PEM bytes: the caller owns the
files. Time is always a parameter (``now``); nothing here reads the clock.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime, timedelta
from typing import Any, Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ._ca import _BACKDATE, ROOT_CN, RootCA, _random_serial
from ._chain import verify_certificate_chain
from ._errors import InvalidArgument, InvalidCertificate
from ._keypairs import _load_ca_key, _load_cert, _load_chain, _pem, _signature_hash, _utc, split_pem_chain

__all__ = [
    "MANAGER_ROLE",
    "WORKER_ROLE",
    "CLIENT_ROLE",
    "DAEMON_ROLE",
    "MIN_CERT_VALIDITY",
    "DEFAULT_CERT_VALIDITY",
    "issue_certificate",
    "issue_daemon_certificate",
    "is_daemon_certificate",
    "check_issued_certificate",
    "certificate_profile",
    "node_csr_key",
]

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
