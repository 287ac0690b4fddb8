"""Root CA, node certificates, cross-signing and chain verification."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from raftstore.keyring import (
    CLIENT_ROLE,
    DAEMON_ROLE,
    DEFAULT_CERT_VALIDITY,
    MANAGER_ROLE,
    MIN_CERT_VALIDITY,
    ROOT_CN,
    ROOT_VALIDITY,
    WORKER_ROLE,
    CertificateIdentity,
    InvalidArgument,
    InvalidCertificate,
    RootCA,
    ca_digest,
    certificate_fingerprint,
    certificate_identity,
    create_root_ca,
    cross_sign,
    generate_private_key,
    issue_certificate,
    issue_daemon_certificate,
    is_daemon_certificate,
    load_root_ca,
    make_csr,
    new_id,
    private_key_matches_certificate,
    public_key_fingerprint,
    root_ca_not_after,
    sign_possession,
    split_pem_chain,
    verify_certificate_chain,
    verify_possession,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
CLUSTER = new_id()
ROOT = create_root_ca(NOW)  # shared where a test does not care which root


def issue(ca: RootCA = ROOT, role: str = MANAGER_ROLE, validity: timedelta = DEFAULT_CERT_VALIDITY,
          node_id: str | None = None, now: datetime = NOW, intermediates: bytes = b"",
          cluster_id: str = CLUSTER) -> tuple[bytes, bytes]:
    key = generate_private_key()
    chain = issue_certificate(
        ca, make_csr(key), node_id=node_id or new_id(), cluster_id=cluster_id, role=role, now=now,
        validity=validity, intermediates_pem=intermediates,
    )
    return key, chain


def cert_of(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def sans(cert: x509.Certificate) -> list[str]:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)


def pem_of_key(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def hand_made_ca(key: object = None, *, ca: bool = True, issuer_key: object = None, days: int = 100,
                 start: datetime | None = None, issuer_name: str | None = None) -> tuple[bytes, bytes]:
    """A CA certificate built here, to feed load_root_ca the kinds of roots operators bring."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "operator-ca")])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]) if issuer_name else subject
    start = start or NOW - timedelta(days=1)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key or key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return cert.public_bytes(serialization.Encoding.PEM), pem_of_key(key)


def library_verifies(chain: bytes, roots: bytes, now: datetime = NOW) -> bool:
    """cryptography's own client verifier, as a second opinion on our chains."""
    certs = x509.load_pem_x509_certificates(chain)
    verifier = PolicyBuilder().store(Store(x509.load_pem_x509_certificates(roots))).time(now).build_client_verifier()
    try:
        verifier.verify(certs[0], certs[1:])
    except VerificationError:
        return False
    return True


def ours_verifies(chain: bytes, roots: bytes, now: datetime = NOW) -> bool:
    try:
        verify_certificate_chain(chain, roots, now)
    except InvalidCertificate:
        return False
    return True


# ------------------------------------------------------------------ roots


def test_root_ca_shape() -> None:
    ca = create_root_ca(NOW)
    cert = cert_of(ca.cert_pem)
    assert cert.subject.rfc4514_string() == f"CN={ROOT_CN}" == "CN=swarm-ca" and cert.issuer == cert.subject
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    assert cert.not_valid_before_utc == NOW - timedelta(hours=1)
    assert cert.not_valid_after_utc == NOW + ROOT_VALIDITY and ROOT_VALIDITY >= timedelta(days=365 * 20)
    assert root_ca_not_after(ca.cert_pem) == NOW + ROOT_VALIDITY
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1)
    assert private_key_matches_certificate(ca.key_pem, ca.cert_pem)  # type: ignore[arg-type]
    assert cert.serial_number != cert_of(create_root_ca(NOW).cert_pem).serial_number
    assert create_root_ca(NOW, timedelta(days=1)).cert_pem != ca.cert_pem


def test_root_ca_repr_hides_the_key() -> None:
    assert "redacted" in repr(ROOT) and b"PRIVATE" not in repr(ROOT).encode()
    assert ROOT.key_pem.decode() not in repr(ROOT)  # type: ignore[union-attr]
    assert "None" in repr(RootCA(ROOT.cert_pem, None))


def test_naive_times_are_utc() -> None:
    ca = create_root_ca(NOW.replace(tzinfo=None))
    assert cert_of(ca.cert_pem).not_valid_before_utc == NOW - timedelta(hours=1)


# ------------------------------------------------------------------ node certificates


@pytest.mark.parametrize("role", [MANAGER_ROLE, WORKER_ROLE])
def test_node_certificate_fields(role: str) -> None:
    node_id = new_id()
    key, chain = issue(ROOT, role, node_id=node_id)
    cert = cert_of(chain)
    subject = {a.oid: a.value for a in cert.subject}
    assert subject == {NameOID.ORGANIZATION_NAME: CLUSTER, NameOID.ORGANIZATIONAL_UNIT_NAME: role, NameOID.COMMON_NAME: node_id}
    assert sans(cert) == ([role, node_id, "swarm-ca"] if role == MANAGER_ROLE else [role, node_id])
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    # Managers serve the cluster port; a worker only connects, so it may not pose as a server.
    assert set(usage) == ({ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} if role == MANAGER_ROLE
                          else {ExtendedKeyUsageOID.CLIENT_AUTH})
    key_usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert key_usage.digital_signature and not key_usage.key_cert_sign
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.issuer == cert_of(ROOT.cert_pem).subject
    assert cert.not_valid_before_utc == NOW - timedelta(hours=1)  # back-dated
    assert cert.not_valid_after_utc == NOW + DEFAULT_CERT_VALIDITY == NOW + timedelta(hours=2160)
    assert private_key_matches_certificate(key, chain)
    assert certificate_identity(chain) == CertificateIdentity(
        node_id, CLUSTER, role, NOW - timedelta(hours=1), NOW + DEFAULT_CERT_VALIDITY, format(cert.serial_number, "x")
    )


def test_client_role_certificate() -> None:
    _, chain = issue(role=CLIENT_ROLE)
    assert certificate_identity(chain).role == CLIENT_ROLE and "swarm-ca" not in sans(cert_of(chain))
    usage = cert_of(chain).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usage) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not is_daemon_certificate(chain)


def test_daemon_certificate() -> None:
    key = generate_private_key()
    chain = issue_daemon_certificate(ROOT, make_csr(key), name="api", cluster_id=CLUSTER,
                                     hosts=["Daemon.Example", "10.0.0.5", "::1", "10.0.0.5"], now=NOW,
                                     validity=timedelta(hours=2))
    cert = cert_of(chain)
    identity = certificate_identity(chain)
    assert (identity.role, identity.node_id, identity.cluster_id) == (DAEMON_ROLE, "api", CLUSTER)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["daemon.example"]
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["10.0.0.5", "::1"]
    assert set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == {ExtendedKeyUsageOID.SERVER_AUTH}
    assert private_key_matches_certificate(key, chain) and is_daemon_certificate(chain)


@pytest.mark.parametrize("hosts", [[], ["*.example"], ["bad host"], ["a" * 64 + ".example"], ["h"] * 33])
def test_daemon_certificate_refuses_bad_hosts(hosts: list[str]) -> None:
    with pytest.raises(InvalidArgument):
        issue_daemon_certificate(ROOT, make_csr(generate_private_key()), name="api", cluster_id=CLUSTER, hosts=hosts,
                                 now=NOW, validity=timedelta(hours=2))


def test_node_certificates_never_identify_a_daemon() -> None:
    """A manager's certificate states serverAuth (it serves the cluster port) but is no daemon's."""
    for role in (MANAGER_ROLE, WORKER_ROLE, CLIENT_ROLE):
        assert not is_daemon_certificate(issue(role=role)[1])


def test_serials_are_random() -> None:
    serials = {cert_of(issue()[1]).serial_number for _ in range(5)}
    assert len(serials) == 5 and all(s > 2**64 for s in serials)


def test_intermediates_ride_along() -> None:
    _, chain = issue(intermediates=b"INTERMEDIATES")
    assert chain.endswith(b"INTERMEDIATES") and len(split_pem_chain(chain)) == 1


def test_minimum_validity() -> None:
    assert MIN_CERT_VALIDITY == timedelta(hours=1)
    with pytest.raises(InvalidArgument, match=r"^minimum certificate expiry time is: 1h0m0s$"):
        issue(validity=timedelta(minutes=59, seconds=59))
    with pytest.raises(InvalidArgument, match=r"^minimum certificate expiry time is: 1h0m0s$"):
        issue(validity=timedelta(0))
    _, chain = issue(validity=timedelta(hours=1))
    assert cert_of(chain).not_valid_after_utc == NOW + timedelta(hours=1)


def test_unknown_role_and_keyless_ca() -> None:
    with pytest.raises(InvalidArgument):
        issue(role="swarm-admin")
    with pytest.raises(InvalidCertificate):
        issue(RootCA(ROOT.cert_pem, None))


def test_only_the_public_key_is_taken_from_a_csr() -> None:
    key_pem = generate_private_key()
    key = serialization.load_pem_private_key(key_pem, None)
    hostile = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "swarm-ca"),
                                 x509.NameAttribute(NameOID.ORGANIZATION_NAME, "another-cluster"),
                                 x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, MANAGER_ROLE)]))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("evil.example")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
        .public_bytes(serialization.Encoding.PEM)
    )
    chain = issue_certificate(ROOT, hostile, node_id="n" * 25, cluster_id=CLUSTER, role=WORKER_ROLE, now=NOW,
                              validity=timedelta(hours=2))
    cert = cert_of(chain)
    identity = certificate_identity(chain)
    assert (identity.role, identity.node_id, identity.cluster_id) == (WORKER_ROLE, "n" * 25, CLUSTER)
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert sans(cert) == [WORKER_ROLE, "n" * 25]
    assert set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == {
        ExtendedKeyUsageOID.CLIENT_AUTH}
    assert public_key_fingerprint(chain) == public_key_fingerprint(key_pem)


def test_csr_with_bad_signature_is_refused() -> None:
    csr = make_csr(generate_private_key())
    der = base64.b64decode(b"".join(csr.splitlines()[1:-1]))
    for offset in (len(der) - 1, len(der) - 10, 40):  # in the signature, and in the signed body
        tampered = bytearray(der)
        tampered[offset] ^= 0x01
        pem = b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(bytes(tampered)) + b"-----END CERTIFICATE REQUEST-----\n"
        with pytest.raises(InvalidCertificate):
            issue_certificate(ROOT, pem, node_id=new_id(), cluster_id=CLUSTER, role=WORKER_ROLE, now=NOW,
                              validity=timedelta(hours=2))


@pytest.mark.parametrize("key_factory", [
    lambda: ec.generate_private_key(ec.SECP384R1()),
    lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024),
])
def test_csr_with_another_key_type_is_refused(key_factory) -> None:  # type: ignore[no-untyped-def]
    key = key_factory()
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
    with pytest.raises(InvalidCertificate, match="P-256"):
        issue_certificate(ROOT, csr.public_bytes(serialization.Encoding.PEM), node_id=new_id(), cluster_id=CLUSTER,
                          role=WORKER_ROLE, now=NOW, validity=timedelta(hours=2))
    with pytest.raises(InvalidCertificate):
        make_csr(pem_of_key(key))


@pytest.mark.parametrize("garbage", [b"", b"not a csr", b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", "text"])
def test_garbage_csr_is_refused(garbage: bytes) -> None:
    with pytest.raises(InvalidCertificate):
        issue_certificate(ROOT, garbage, node_id=new_id(), cluster_id=CLUSTER, role=WORKER_ROLE, now=NOW,
                          validity=timedelta(hours=2))


# ------------------------------------------------------------------ identity, fingerprints, digests


def test_certificate_identity_needs_o_ou_and_cn() -> None:
    with pytest.raises(InvalidCertificate):
        certificate_identity(ROOT.cert_pem)  # CN only
    with pytest.raises(InvalidCertificate):
        certificate_identity(b"no certificate here")


def test_fingerprints() -> None:
    key, chain = issue()
    assert public_key_fingerprint(key) == public_key_fingerprint(chain) == public_key_fingerprint(chain + ROOT.cert_pem)
    spki = cert_of(chain).public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert public_key_fingerprint(chain) == hashlib.sha256(spki).hexdigest()
    assert public_key_fingerprint(ROOT.cert_pem) != public_key_fingerprint(chain)
    assert certificate_fingerprint(chain) == hashlib.sha256(cert_of(chain).public_bytes(serialization.Encoding.DER)).hexdigest()
    assert not private_key_matches_certificate(generate_private_key(), chain)
    assert not private_key_matches_certificate(b"garbage", chain)
    with pytest.raises(InvalidCertificate):
        public_key_fingerprint(b"garbage")


def test_ca_digest() -> None:
    digest = ca_digest(ROOT.cert_pem)
    assert len(digest) == 50 and set(digest) <= set("0123456789abcdefghijklmnopqrstuvwxyz")
    assert int(digest, 36) == int.from_bytes(hashlib.sha256(ROOT.cert_pem).digest(), "big")
    assert ca_digest(b"") == ca_digest(b"") != ca_digest(b"\n")


def test_split_pem_chain() -> None:
    _, chain = issue(intermediates=ROOT.cert_pem)
    parts = split_pem_chain(b"junk\n" + chain + b"trailing junk")
    assert len(parts) == 2 and parts[1] == ROOT.cert_pem
    assert split_pem_chain(b"") == []


def test_possession_proofs() -> None:
    key, chain = issue()
    signature = sign_possession(key, b"renew me")
    assert verify_possession(chain, b"renew me", signature)
    assert not verify_possession(chain, b"renew someone else", signature)
    assert not verify_possession(issue()[1], b"renew me", signature)
    assert not verify_possession(chain, b"renew me", b"garbage")
    # Not interchangeable with a plain signature over the same bytes.
    plain = serialization.load_pem_private_key(key, None).sign(b"renew me", ec.ECDSA(hashes.SHA256()))  # type: ignore[union-attr,call-arg]
    assert not verify_possession(chain, b"renew me", plain)


# ------------------------------------------------------------------ verification


def test_chain_verification_and_expiry() -> None:
    _, chain = issue(validity=timedelta(hours=2))
    assert verify_certificate_chain(chain, ROOT.cert_pem, NOW).cluster_id == CLUSTER
    assert ours_verifies(chain, ROOT.cert_pem, NOW + timedelta(hours=2))  # the last valid instant
    assert not ours_verifies(chain, ROOT.cert_pem, NOW + timedelta(hours=2, seconds=1))  # expired
    assert not ours_verifies(chain, ROOT.cert_pem, NOW - timedelta(hours=1, seconds=1))  # not yet valid
    with pytest.raises(InvalidCertificate, match="expired"):
        verify_certificate_chain(chain, ROOT.cert_pem, NOW + timedelta(hours=3))


def test_expired_leaf_allowed_only_when_asked() -> None:
    _, chain = issue(validity=timedelta(hours=2))
    later = NOW + timedelta(days=3)
    assert not ours_verifies(chain, ROOT.cert_pem, later)
    assert verify_certificate_chain(chain, ROOT.cert_pem, later, allow_expired_leaf=True).cluster_id == CLUSTER
    # Everything else is still checked.
    with pytest.raises(InvalidCertificate):
        verify_certificate_chain(chain, create_root_ca(NOW).cert_pem, later, allow_expired_leaf=True)
    with pytest.raises(InvalidCertificate):
        verify_certificate_chain(chain, ROOT.cert_pem, NOW - timedelta(hours=2), allow_expired_leaf=True)


def test_another_clusters_ca_is_refused() -> None:
    _, chain = issue()
    other = create_root_ca(NOW)
    with pytest.raises(InvalidCertificate, match="not signed by a trusted root"):
        verify_certificate_chain(chain, other.cert_pem, NOW)
    # Even when the other CA presents itself as an intermediate.
    with pytest.raises(InvalidCertificate):
        verify_certificate_chain(issue(other)[1] + other.cert_pem, ROOT.cert_pem, NOW)


def test_a_ca_is_not_a_node() -> None:
    with pytest.raises(InvalidCertificate, match="CA"):
        verify_certificate_chain(ROOT.cert_pem, ROOT.cert_pem, NOW)


def test_a_leaf_cannot_sign_leaves() -> None:
    """A node certificate used as an issuer (it has a key, it is not a CA) is refused."""
    key, chain = issue()
    fake = RootCA(chain, key)
    _, child = issue(fake)
    assert not ours_verifies(child + chain, ROOT.cert_pem)
    assert not ours_verifies(child, chain)
    assert not library_verifies(child + chain, ROOT.cert_pem)


def test_a_tampered_leaf_is_refused() -> None:
    _, chain = issue()
    der = bytearray(cert_of(chain).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature
    tampered = x509.load_der_x509_certificate(bytes(der)).public_bytes(serialization.Encoding.PEM)
    assert not ours_verifies(tampered, ROOT.cert_pem)


def test_an_expired_root_is_not_trusted() -> None:
    root = create_root_ca(NOW, timedelta(hours=3))
    _, chain = issue(root, validity=timedelta(hours=10))
    assert ours_verifies(chain, root.cert_pem, NOW)
    assert not ours_verifies(chain, root.cert_pem, NOW + timedelta(hours=4))


@pytest.mark.parametrize("garbage", [b"", b"junk", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"])
def test_garbage_chains_and_roots(garbage: bytes) -> None:
    _, chain = issue()
    with pytest.raises(InvalidCertificate):
        verify_certificate_chain(garbage, ROOT.cert_pem, NOW)
    with pytest.raises(InvalidCertificate):
        verify_certificate_chain(chain, garbage, NOW)


# ------------------------------------------------------------------ rotation


def test_cross_signed_root_shape() -> None:
    old = create_root_ca(NOW, timedelta(days=400))
    new = create_root_ca(NOW)
    bridge = cert_of(cross_sign(old, new.cert_pem, NOW + timedelta(days=1)))
    new_cert = cert_of(new.cert_pem)
    assert bridge.subject == new_cert.subject and bridge.issuer == cert_of(old.cert_pem).subject
    assert bridge.public_key() == new_cert.public_key()
    constraints = bridge.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length in (0, 1)
    assert bridge.not_valid_after_utc == NOW + timedelta(days=400)  # no longer than the old root
    assert bridge.not_valid_before_utc == NOW + timedelta(days=1) - timedelta(hours=1)
    assert (bridge.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            == new_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value)


def test_cross_sign_refusals() -> None:
    new = create_root_ca(NOW)
    with pytest.raises(InvalidCertificate):
        cross_sign(RootCA(ROOT.cert_pem, None), new.cert_pem, NOW)
    with pytest.raises(InvalidCertificate, match="not a CA"):
        cross_sign(ROOT, issue()[1], NOW)
    short = create_root_ca(NOW, timedelta(hours=2))
    with pytest.raises(InvalidCertificate, match="expired"):
        cross_sign(short, new.cert_pem, NOW + timedelta(hours=3))


def test_cross_signing_during_and_after_rotation() -> None:
    old = create_root_ca(NOW)
    new = create_root_ca(NOW)
    bridge = cross_sign(old, new.cert_pem, NOW)
    _, leaf_new = issue(new, intermediates=bridge)
    _, leaf_old = issue(old)
    # During the rotation a new leaf verifies through the bridge even where
    # only the old root is trusted, and against the new root alone.
    assert verify_certificate_chain(leaf_new, old.cert_pem, NOW).cluster_id == CLUSTER
    assert verify_certificate_chain(leaf_new, new.cert_pem, NOW).cluster_id == CLUSTER
    assert verify_certificate_chain(leaf_new, old.cert_pem + new.cert_pem, NOW)
    assert verify_certificate_chain(leaf_old, old.cert_pem + new.cert_pem, NOW)
    # Without the bridge, the old root alone does not know the new leaf.
    assert not ours_verifies(split_pem_chain(leaf_new)[0], old.cert_pem)
    # After it, only the new root is trusted: old leaves are refused.
    with pytest.raises(InvalidCertificate):
        verify_certificate_chain(leaf_old, new.cert_pem, NOW)
    # A bridge from another cluster's root does not help.
    stranger = create_root_ca(NOW)
    _, leaf_stranger = issue(stranger, intermediates=cross_sign(stranger, new.cert_pem, NOW))
    assert not ours_verifies(leaf_stranger, old.cert_pem)


def test_our_verdicts_match_the_librarys() -> None:
    old, new, other = create_root_ca(NOW), create_root_ca(NOW), create_root_ca(NOW)
    bridge = cross_sign(old, new.cert_pem, NOW)
    leaf_new = issue(new, intermediates=bridge)[1]
    leaf_old = issue(old)[1]
    short = issue(old, validity=timedelta(hours=1))[1]
    cases = [
        (leaf_new, old.cert_pem, NOW), (leaf_new, new.cert_pem, NOW), (leaf_new, other.cert_pem, NOW),
        (leaf_old, old.cert_pem, NOW), (leaf_old, new.cert_pem, NOW), (leaf_old, old.cert_pem + new.cert_pem, NOW),
        (split_pem_chain(leaf_new)[0], old.cert_pem, NOW), (short, old.cert_pem, NOW + timedelta(hours=2)),
        (short, old.cert_pem, NOW - timedelta(hours=2)),
    ]
    for chain, roots, now in cases:
        assert ours_verifies(chain, roots, now) == library_verifies(chain, roots, now)


# ------------------------------------------------------------------ operators' roots


def test_load_root_ca_accepts_our_own_and_operators_roots() -> None:
    assert load_root_ca(ROOT.cert_pem, ROOT.key_pem, NOW) == ROOT  # type: ignore[arg-type]
    cert_pem, key_pem = hand_made_ca()
    ca = load_root_ca(cert_pem, key_pem, NOW)
    _, chain = issue(ca)
    assert verify_certificate_chain(chain, cert_pem, NOW).cluster_id == CLUSTER
    assert cert_of(chain).issuer == cert_of(cert_pem).subject


def test_load_root_ca_refusals() -> None:
    other = create_root_ca(NOW)
    with pytest.raises(InvalidCertificate, match="does not match"):
        load_root_ca(ROOT.cert_pem, other.key_pem, NOW)  # type: ignore[arg-type]
    with pytest.raises(InvalidCertificate, match="exactly one"):
        load_root_ca(ROOT.cert_pem + other.cert_pem, ROOT.key_pem, NOW)  # type: ignore[arg-type]
    with pytest.raises(InvalidCertificate, match="exactly one"):
        load_root_ca(b"", ROOT.key_pem, NOW)  # type: ignore[arg-type]
    key, leaf = issue()
    with pytest.raises(InvalidCertificate, match="not a CA"):
        load_root_ca(leaf, key, NOW)
    with pytest.raises(InvalidCertificate, match="expired"):
        load_root_ca(ROOT.cert_pem, ROOT.key_pem, NOW + ROOT_VALIDITY + timedelta(seconds=1))  # type: ignore[arg-type]
    with pytest.raises(InvalidCertificate, match="not valid yet"):
        load_root_ca(ROOT.cert_pem, ROOT.key_pem, NOW - timedelta(hours=2))  # type: ignore[arg-type]
    with pytest.raises(InvalidCertificate, match="private key"):
        load_root_ca(ROOT.cert_pem, b"garbage", NOW)
    cert_pem, key_pem = hand_made_ca(ca=False)
    with pytest.raises(InvalidCertificate, match="not a CA"):
        load_root_ca(cert_pem, key_pem, NOW)
    # An intermediate (CA, but signed by someone else) is not a root.
    parent = ec.generate_private_key(ec.SECP256R1())
    cert_pem, key_pem = hand_made_ca(issuer_key=parent, issuer_name="parent")
    with pytest.raises(InvalidCertificate, match="self-signed"):
        load_root_ca(cert_pem, key_pem, NOW)
    # Key types and sizes: tests/keyring/test_operator_roots.py.
    encrypted = serialization.load_pem_private_key(ROOT.key_pem, None).private_bytes(  # type: ignore[arg-type]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw"))
    with pytest.raises(InvalidCertificate, match="unencrypted"):
        load_root_ca(ROOT.cert_pem, encrypted, NOW)
