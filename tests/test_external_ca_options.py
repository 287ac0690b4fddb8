"""--external-ca as typed (cli/_external_ca) and as the daemon checks and keeps it (raftstore/_external_ca)."""

from __future__ import annotations

from datetime import datetime, timezone

import click
import pytest

from raftstore.manager._external_ca import external_ca_entry, updated_external_cas
from raftstore.cli._external_ca import parse_external_ca
from raftstore.keyring import InvalidArgument, create_root_ca, public_key_fingerprint

NOW = datetime.now(timezone.utc)
ROOT = create_root_ca(NOW)


def test_the_option_as_typed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pem = tmp_path / "tls-ca.pem"
    pem.write_bytes(ROOT.cert_pem)
    assert parse_external_ca(f"protocol=cfssl,url=https://ca:8888,cacert={pem}") == {
        "protocol": "cfssl", "url": "https://ca:8888", "cacert_pem": ROOT.cert_pem}
    assert parse_external_ca("url=https://ca, protocol=CFSSL")["cacert_pem"] is None
    for bad in ("protocol=cfssl", "url=https://ca", "protocol=cfssl,url=https://ca,url=https://b",
                "protocol=cfssl,url=https://ca,color=red", "protocol=cfssl;url=https://ca", "protocol=cfssl,url="):
        with pytest.raises(click.BadParameter):
            parse_external_ca(bad)


@pytest.mark.parametrize("url,stored", [
    ("https://127.0.0.1:8888", "https://127.0.0.1:8888/api/v1/cfssl/sign"),
    ("https://ca.example.com/api/v1/cfssl/sign/", "https://ca.example.com/api/v1/cfssl/sign"),
    ("https://[::1]:8888/", "https://[::1]:8888/api/v1/cfssl/sign"),
])
def test_urls_are_kept_as_the_sign_endpoint(url: str, stored: str) -> None:
    entry = external_ca_entry({"protocol": "cfssl", "url": url}, ROOT.cert_pem)
    assert entry == {"protocol": "cfssl", "url": stored, "cacert_pem": None,
                     "root_key": public_key_fingerprint(ROOT.cert_pem)}


@pytest.mark.parametrize("option,reason", [
    ({"protocol": "acme", "url": "https://ca"}, "not supported"),
    ({"protocol": "cfssl", "url": "http://ca"}, "give https://"),
    ({"protocol": "cfssl", "url": "https://user:pw@ca"}, "give https://"),
    ({"protocol": "cfssl", "url": "https://ca/?x=1"}, "give https://"),
    ({"protocol": "cfssl", "url": "https://ca:70000"}, "port"),
    ({"protocol": "cfssl", "url": "https://ca/other"}, "sign endpoint"),
    ({"protocol": "cfssl", "url": "https://ca", "cacert_pem": b"not pem"}, "PEM certificate"),
    ({"protocol": "cfssl"}, "needs url="),
])
def test_bad_entries_are_refused_with_one_line(option: dict, reason: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidArgument, match=reason) as caught:
        external_ca_entry(option, ROOT.cert_pem)
    assert "\n" not in str(caught.value)


def spec(key: bytes | None, urls: list[str]) -> dict:  # type: ignore[type-arg]
    return {"root_ca": {"cert_pem": ROOT.cert_pem, "key_pem": key}, "root_rotation": None,
            "external_cas": [external_ca_entry({"protocol": "cfssl", "url": u}, ROOT.cert_pem) for u in urls]}


def test_update_adds_and_removes_but_never_the_last_of_a_keyless_root() -> None:
    add = [{"protocol": "cfssl", "url": "https://b"}]
    assert [e["url"] for e in updated_external_cas(spec(None, ["https://a"]), add, ["https://a"])] == [
        "https://b/api/v1/cfssl/sign"]
    with pytest.raises(InvalidArgument, match="already configured"):
        updated_external_cas(spec(None, ["https://b"]), add, [])
    with pytest.raises(InvalidArgument, match="no external CA https://c/api/v1/cfssl/sign is configured"):
        updated_external_cas(spec(None, ["https://a"]), [], ["https://c"])
    with pytest.raises(InvalidArgument, match="removing its last external CA"):
        updated_external_cas(spec(None, ["https://a"]), [], ["https://a"])
    with pytest.raises(InvalidArgument, match="holds its root key"):
        updated_external_cas(spec(ROOT.key_pem, []), add, [])
