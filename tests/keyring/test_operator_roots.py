"""Operators' roots (--ca-cert/--ca-key, and external CAs' roots): RSA 2048-4096, ECDSA P-256/P-384.

Each kind is accepted, signs node certificates (whose keys stay P-256) with the
signature its key type calls for, cross-signs and is cross-signed during a
rotation; weak keys, other curves, non-CAs, CAs without keyCertSign and expired
roots are refused with one line saying why. Also: the checks on a certificate
an external CA returns (check_issued_certificate).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID
from cryptography.x509.verification import PolicyBuilder, Store

from raftstore.keyring import (
    MANAGER_ROLE,
    WORKER_ROLE,
    InvalidCertificate,
    RootCA,
    certificate_profile,
    check_issued_certificate,
    create_root_ca,
    cross_sign,
    generate_private_key,
    issue_certificate,
    load_root_ca,
    make_csr,
    new_id,
    node_csr_key,
    verify_certificate_chain,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
CLUSTER = new_id()
DAY = timedelta(days=1)


def pem_of_key(key: Any) -> bytes:
    return key.private_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_root(key: Any, *, ca: bool = True, key_usage: x509.KeyUsage | None = None, start: datetime = NOW - DAY,
              days: int = 3650, hash_: hashes.HashAlgorithm | None = hashes.SHA256()) -> tuple[bytes, bytes]:
    """A self-signed root as an operator's tools (openssl, cfssl) make them."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "operator-root")])
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    return builder.sign(key, hash_).public_bytes(serialization.Encoding.PEM), pem_of_key(key)


def usage(key_cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=key_cert_sign, crl_sign=True,
                         encipher_only=False, decipher_only=False)


_KEYS: dict[str, Any] = {}


def key_of(kind: str) -> Any:
    """One key per kind for the whole module (RSA-4096 generation takes a while)."""
    if kind not in _KEYS:
        family, size = kind.split("-")
        _KEYS[kind] = (
            rsa.generate_private_key(public_exponent=65537, key_size=int(size)) if family == "rsa"
            else ec.generate_private_key(ec.SECP256R1() if size == "256" else ec.SECP384R1())
        )
    return _KEYS[kind]


ACCEPTED = {
    "rsa-2048": SignatureAlgorithmOID.RSA_WITH_SHA256,
    "rsa-4096": SignatureAlgorithmOID.RSA_WITH_SHA256,
    "ec-256": SignatureAlgorithmOID.ECDSA_WITH_SHA256,
    "ec-384": SignatureAlgorithmOID.ECDSA_WITH_SHA384,
}


def library_verifies(chain: bytes, roots: bytes) -> bool:
    certs = x509.load_pem_x509_certificates(chain)
    verifier = PolicyBuilder().store(Store(x509.load_pem_x509_certificates(roots))).time(NOW).build_client_verifier()
    verifier.verify(certs[0], certs[1:])
    return True


@pytest.mark.parametrize("kind", sorted(ACCEPTED))
def test_each_kind_of_root_signs_p256_node_certificates(kind: str) -> None:
    cert_pem, key_pem = make_root(key_of(kind), key_usage=usage(True))
    root = load_root_ca(cert_pem, key_pem, NOW)
    node_key = generate_private_key()
    chain = issue_certificate(root, make_csr(node_key), node_id=new_id(), cluster_id=CLUSTER, role=MANAGER_ROLE,
                              now=NOW, validity=timedelta(hours=2))
    leaf = x509.load_pem_x509_certificate(chain)
    assert leaf.signature_algorithm_oid == ACCEPTED[kind]
    public = leaf.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"
    assert verify_certificate_chain(chain, cert_pem, NOW).cluster_id == CLUSTER
    assert library_verifies(chain, cert_pem)


@pytest.mark.parametrize("kind", sorted(ACCEPTED))
def test_each_kind_of_root_cross_signs_and_is_cross_signed(kind: str) -> None:
    """A rotation away from an operator's root, and to one: both bridges verify."""
    cert_pem, key_pem = make_root(key_of(kind), key_usage=usage(True))
    operator = load_root_ca(cert_pem, key_pem, NOW)
    ours = create_root_ca(NOW)
    for old, new in ((operator, ours), (ours, operator)):
        bridge = cross_sign(old, new.cert_pem, NOW)
        chain = issue_certificate(new, make_csr(generate_private_key()), node_id=new_id(), cluster_id=CLUSTER,
                                  role=WORKER_ROLE, now=NOW, validity=timedelta(hours=2), intermediates_pem=bridge)
        assert verify_certificate_chain(chain, old.cert_pem, NOW).role == WORKER_ROLE
        assert verify_certificate_chain(chain, new.cert_pem, NOW).role == WORKER_ROLE


def test_a_root_without_key_usage_is_accepted_as_openssl_reads_it() -> None:
    """`openssl req -new -x509` (seed 004's CA) writes CA:TRUE and no keyUsage: all usages allowed."""
    cert_pem, key_pem = make_root(key_of("rsa-2048"))
    assert load_root_ca(cert_pem, key_pem, NOW).key_pem


def test_a_root_without_its_key_is_an_external_cas() -> None:
    cert_pem, _ = make_root(key_of("ec-384"), key_usage=usage(True))
    root = load_root_ca(cert_pem, None, NOW)
    assert root == RootCA(cert_pem) and root.key_pem is None
    with pytest.raises(InvalidCertificate, match="no signing key"):
        issue_certificate(root, make_csr(generate_private_key()), node_id=new_id(), cluster_id=CLUSTER,
                          role=WORKER_ROLE, now=NOW, validity=timedelta(hours=2))


@pytest.mark.parametrize("key,reason", [
    (lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024), "RSA 1024 bits: too weak"),
    (lambda: ec.generate_private_key(ec.SECP521R1()), "curve secp521r1"),
    (lambda: ec.generate_private_key(ec.SECP256K1()), "curve secp256k1"),
    (lambda: ed25519.Ed25519PrivateKey.generate(), "only RSA and ECDSA"),
])
def test_weak_or_foreign_keys_are_refused_with_one_line(key: Any, reason: str) -> None:
    private = key()
    cert_pem, key_pem = make_root(private, hash_=None if isinstance(private, ed25519.Ed25519PrivateKey)
                                  else hashes.SHA256())
    for given_key in (key_pem, None):  # with its key, and as an external CA's root
        with pytest.raises(InvalidCertificate, match=reason) as caught:
            load_root_ca(cert_pem, given_key, NOW)
        assert "\n" not in str(caught.value)


def test_a_weak_key_beside_a_good_certificate_is_refused() -> None:
    cert_pem, _ = make_root(key_of("ec-256"), key_usage=usage(True))
    weak = pem_of_key(rsa.generate_private_key(public_exponent=65537, key_size=1024))
    with pytest.raises(InvalidCertificate, match="too weak"):
        load_root_ca(cert_pem, weak, NOW)


@pytest.mark.parametrize("build,reason", [
    (lambda k: make_root(k, ca=False), "not a CA"),
    (lambda k: make_root(k, key_usage=usage(False)), "lacks keyCertSign"),
    (lambda k: make_root(k, start=NOW - 20 * DAY, days=10), "expired"),
    (lambda k: make_root(k, start=NOW + DAY), "not valid yet"),
])
def test_roots_that_may_not_sign_now_are_refused(build: Any, reason: str) -> None:
    cert_pem, key_pem = build(key_of("rsa-2048"))
    with pytest.raises(InvalidCertificate, match=reason):
        load_root_ca(cert_pem, key_pem, NOW)
    with pytest.raises(InvalidCertificate, match=reason):
        load_root_ca(cert_pem, None, NOW)


# ------------------------------------------------------------------ what an external CA returns

ROOT_PEM, ROOT_KEY = make_root(key_of("ec-384"), key_usage=usage(True))
EXTERNAL = load_root_ca(ROOT_PEM, ROOT_KEY, NOW)  # stands in for the CFSSL service's signer


def external_reply(role: str = WORKER_ROLE, *, subject: x509.Name | None = None, usages: list[Any] | None = None,
                   csr_key: bytes | None = None, signer: RootCA = EXTERNAL, node_id: str = "node1",
                   days: int = 90, hosts: list[str] | None = None) -> tuple[bytes, bytes]:
    """(the CSR sent, the certificate a service returned for it), built as a CFSSL profile would."""
    node_key = generate_private_key()
    csr = make_csr(node_key)
    signed_key = serialization.load_pem_private_key(csr_key or node_key, None)
    profile = certificate_profile(role, node_id, CLUSTER)
    name = subject or x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, CLUSTER),
                                 x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                                 x509.NameAttribute(NameOID.COMMON_NAME, node_id)])
    wanted = usages if usages is not None else (
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH] if role == MANAGER_ROLE
        else [ExtendedKeyUsageOID.CLIENT_AUTH])
    signer_cert = x509.load_pem_x509_certificate(signer.cert_pem)
    signer_key = serialization.load_pem_private_key(signer.key_pem, None)  # type: ignore[arg-type]
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(signer_cert.subject)
        .public_key(signed_key.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number()).not_valid_before(NOW - timedelta(minutes=5))
        .not_valid_after(NOW + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts or profile["hosts"]]),
                       critical=False)
    )
    if wanted:
        builder = builder.add_extension(x509.ExtendedKeyUsage(wanted), critical=False)
    cert = builder.sign(signer_key, hashes.SHA384())  # type: ignore[arg-type]
    return csr, cert.public_bytes(serialization.Encoding.PEM)


def check(csr: bytes, chain: bytes, role: str = WORKER_ROLE, node_id: str = "node1") -> bytes:
    return check_issued_certificate(chain, csr, ROOT_PEM, node_id=node_id, cluster_id=CLUSTER, role=role, now=NOW)


@pytest.mark.parametrize("role", [MANAGER_ROLE, WORKER_ROLE])
def test_what_a_well_configured_external_ca_returns_passes(role: str) -> None:
    csr, chain = external_reply(role)
    assert check(csr, chain, role) == chain


def test_certificate_profile_names_what_issue_certificate_gives() -> None:
    assert certificate_profile(MANAGER_ROLE, "n", CLUSTER) == {
        "O": CLUSTER, "OU": MANAGER_ROLE, "CN": "n", "hosts": [MANAGER_ROLE, "n", "swarm-ca"],
        "usages": ["server auth", "client auth"]}
    assert certificate_profile(WORKER_ROLE, "n", CLUSTER)["usages"] == ["client auth"]


def test_external_answers_that_are_not_what_was_asked_are_refused() -> None:
    other_root = load_root_ca(*make_root(key_of("ec-256"), key_usage=usage(True)), NOW)
    cases = {
        "node2": external_reply(node_id="node2"),
        "for another key": external_reply(csr_key=generate_private_key()),
        "exactly client auth": external_reply(usages=[ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]),
        "usages none": external_reply(usages=[]),
        "does not chain": external_reply(signer=other_root),
        "less than an hour": external_reply(days=0),
        "names node1, swarm-ca, swarm-worker; it must name exactly swarm-worker, node1":
            external_reply(hosts=["swarm-worker", "node1", "swarm-ca"]),
        "OU=swarm-manager": external_reply(subject=x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, CLUSTER),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, MANAGER_ROLE),
            x509.NameAttribute(NameOID.COMMON_NAME, "node1")])),
        "C=US": external_reply(subject=x509.Name([
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, CLUSTER),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, WORKER_ROLE),
            x509.NameAttribute(NameOID.COMMON_NAME, "node1")])),
    }
    for reason, (csr, chain) in cases.items():
        with pytest.raises(InvalidCertificate, match=reason) as caught:
            check(csr, chain)
        assert "\n" not in str(caught.value), reason
    with pytest.raises(InvalidCertificate, match="no certificate"):
        check(make_csr(generate_private_key()), b"")


def test_a_csr_that_proves_nothing_is_refused_before_it_is_forwarded() -> None:
    """node_csr_key: what a stranger's CSR must be before an external CA sees it (P-256, a valid signature)."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(rsa_key, hashes.SHA256())
    with pytest.raises(InvalidCertificate, match="P-256"):
        node_csr_key(rsa_csr.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(InvalidCertificate, match="PEM certificate signing request"):
        node_csr_key(b"not a csr")
    assert isinstance(node_csr_key(make_csr(generate_private_key())), ec.EllipticCurvePublicKey)
