"""Root CA, node certificates, cross-signing, chain verification, join tokens, ids."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from raftstore.keyring import (
    MANAGER_ROLE,
    WORKER_ROLE,
    InvalidArgument,
    InvalidCertificate,
    InvalidJoinToken,
    JoinToken,
    ca_digest,
    certificate_identity,
    create_root_ca,
    cross_sign,
    generate_private_key,
    is_valid_id,
    issue_certificate,
    load_root_ca,
    make_csr,
    new_id,
    private_key_matches_certificate,
    public_key_fingerprint,
    tokens_equal,
    verify_certificate_chain,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
CLUSTER = new_id()


def issue(ca, role=MANAGER_ROLE, validity=timedelta(hours=2160), node_id=None, now=NOW, intermediates=b""):
    key = generate_private_key()
    chain = issue_certificate(
        ca, make_csr(key), node_id=node_id or new_id(), cluster_id=CLUSTER, role=role, now=now,
        validity=validity, intermediates_pem=intermediates,
    )
    return key, chain


def test_ids() -> None:
    ids = {new_id() for _ in range(200)}
    assert len(ids) == 200 and all(is_valid_id(i) and len(i) == 25 for i in ids)
    assert not is_valid_id("UPPER" * 5) and not is_valid_id("short")


def test_root_ca_shape() -> None:
    ca = create_root_ca(NOW)
    cert = x509.load_pem_x509_certificate(ca.cert_pem)
    assert cert.subject.rfc4514_string() == "CN=swarm-ca"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.not_valid_after_utc - NOW >= timedelta(days=365 * 20 - 1)
    assert "redacted" in repr(ca)


def test_node_certificate_fields() -> None:
    ca = create_root_ca(NOW)
    node_id = new_id()
    key, chain = issue(ca, MANAGER_ROLE, node_id=node_id)
    cert = x509.load_pem_x509_certificate(chain)
    subject = {a.oid: a.value for a in cert.subject}
    assert subject == {NameOID.ORGANIZATION_NAME: CLUSTER, NameOID.ORGANIZATIONAL_UNIT_NAME: MANAGER_ROLE, NameOID.COMMON_NAME: node_id}
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert sans == [MANAGER_ROLE, node_id, "swarm-ca"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert cert.not_valid_before_utc == NOW - timedelta(hours=1)
    assert cert.not_valid_after_utc == NOW + timedelta(hours=2160)
    assert private_key_matches_certificate(key, chain)
    worker = x509.load_pem_x509_certificate(issue(ca, WORKER_ROLE)[1])
    assert "swarm-ca" not in worker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)


def test_minimum_validity() -> None:
    ca = create_root_ca(NOW)
    with pytest.raises(InvalidArgument, match=r"^minimum certificate expiry time is: 1h0m0s$"):
        issue(ca, validity=timedelta(minutes=59))
    issue(ca, validity=timedelta(hours=1))


def test_only_the_public_key_is_taken_from_a_csr() -> None:
    from cryptography.hazmat.primitives import hashes, serialization

    ca = create_root_ca(NOW)
    key_pem = generate_private_key()
    key = serialization.load_pem_private_key(key_pem, None)
    hostile = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "swarm-ca"),
                                 x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, MANAGER_ROLE)]))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("evil.example")]), critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    chain = issue_certificate(ca, hostile, node_id="n" * 25, cluster_id=CLUSTER, role=WORKER_ROLE, now=NOW,
                              validity=timedelta(hours=2))
    cert = x509.load_pem_x509_certificate(chain)
    assert certificate_identity(chain).role == WORKER_ROLE and certificate_identity(chain).node_id == "n" * 25
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert "evil.example" not in str(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    assert public_key_fingerprint(chain) == public_key_fingerprint(key_pem)


def test_csr_with_bad_signature_is_refused() -> None:
    ca = create_root_ca(NOW)
    import base64

    csr = make_csr(generate_private_key())
    der = bytearray(base64.b64decode(b"".join(csr.splitlines()[1:-1])))
    for offset in (len(der) - 1, len(der) - 10, 40):  # in the signature, and in the signed body
        tampered = bytearray(der)
        tampered[offset] ^= 0x01
        pem = b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(bytes(tampered)) + b"-----END CERTIFICATE REQUEST-----\n"
        with pytest.raises(InvalidCertificate):
            issue_certificate(ca, pem, node_id=new_id(), cluster_id=CLUSTER, role=WORKER_ROLE, now=NOW,
                              validity=timedelta(hours=2))


def test_chain_verification_and_expiry() -> None:
    ca = create_root_ca(NOW)
    _, chain = issue(ca, validity=timedelta(hours=2))
    assert verify_certificate_chain(chain, ca.cert_pem, NOW).cluster_id == CLUSTER
    with pytest.raises(InvalidCertificate):
        verify_certificate_chain(chain, ca.cert_pem, NOW + timedelta(hours=3))
    with pytest.raises(InvalidCertificate):
        verify_certificate_chain(chain, create_root_ca(NOW).cert_pem, NOW)  # another cluster's CA
    with pytest.raises(InvalidCertificate):
        verify_certificate_chain(ca.cert_pem, ca.cert_pem, NOW)  # a CA is not a node


def test_cross_signing_during_and_after_rotation() -> None:
    old = create_root_ca(NOW)
    new = create_root_ca(NOW)
    bridge = cross_sign(old, new.cert_pem, NOW)
    _, leaf_new = issue(new, intermediates=bridge)
    _, leaf_old = issue(old)
    # During the rotation nodes trust both roots; a new leaf verifies through
    # the bridge even where only the old root is trusted.
    assert verify_certificate_chain(leaf_new, old.cert_pem, NOW)
    assert verify_certificate_chain(leaf_new, new.cert_pem, NOW)
    assert verify_certificate_chain(leaf_old, old.cert_pem + new.cert_pem, NOW)
    # After it, only the new root is trusted: old leaves are refused.
    with pytest.raises(InvalidCertificate):
        verify_certificate_chain(leaf_old, new.cert_pem, NOW)


def test_load_root_ca_checks() -> None:
    ca = create_root_ca(NOW)
    assert load_root_ca(ca.cert_pem, ca.key_pem, NOW).cert_pem == ca.cert_pem
    other = create_root_ca(NOW)
    with pytest.raises(InvalidCertificate, match="does not match"):
        load_root_ca(ca.cert_pem, other.key_pem, NOW)
    with pytest.raises(InvalidCertificate, match="exactly one"):
        load_root_ca(ca.cert_pem + other.cert_pem, ca.key_pem, NOW)
    _, leaf = issue(ca)
    with pytest.raises(InvalidCertificate):
        load_root_ca(leaf, ca.key_pem, NOW)


def test_join_token_format() -> None:
    ca = create_root_ca(NOW)
    token = JoinToken.generate(ca.cert_pem)
    text = str(token)
    prefix, version, digest, secret = text.split("-")
    assert (prefix, version) == ("SWMTKN", "1") and len(digest) == 50 and len(secret) == 25
    assert digest == ca_digest(ca.cert_pem)
    assert JoinToken.parse(text) == token
    assert token.matches_ca(ca.cert_pem) and not token.matches_ca(create_root_ca(NOW).cert_pem)
    rotated = token.rotated()
    assert rotated.ca_digest == token.ca_digest and rotated.secret != token.secret
    assert token.secret not in repr(token)
    assert tokens_equal(text, text) and not tokens_equal(text, str(rotated))


@given(st.one_of(st.text(max_size=120), st.none(), st.integers(), st.binary()))
@settings(max_examples=300)
def test_join_token_parser_raises_only_its_own_error(value: object) -> None:
    try:
        JoinToken.parse(value)
    except InvalidJoinToken:
        pass


@given(st.text(alphabet="0123456789abcdefghijklmnopqrstuvwxyzABC-", min_size=70, max_size=80))
def test_join_token_near_misses(body: str) -> None:
    try:
        token = JoinToken.parse("SWMTKN-1-" + body)
    except InvalidJoinToken:
        return
    assert str(token) == "SWMTKN-1-" + body
