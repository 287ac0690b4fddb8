"""The cluster's root CAs, as its cluster object records them: which root signs now, which every node trusts.

Outside a rotation there is one root. During a CA rotation (``_ca_rotation``)
the new root signs, with the cross-signed certificate riding along as an
intermediate, and every node trusts both. Every caller asks here, so that the
answer is decided in one place.
"""

from __future__ import annotations

from typing import Any

from ..keyring import RootCA, public_key_fingerprint

__all__ = ["signing_root", "trust_bundle", "signing_key_fingerprint"]


def signing_root(spec: dict[str, Any]) -> tuple[RootCA, bytes]:
    """The root that signs certificates now, and the intermediates that ride with them."""
    rotation = spec.get("root_rotation")
    if rotation:
        return RootCA(rotation["new_cert_pem"], rotation["new_key_pem"]), rotation["cross_signed_pem"]
    return RootCA(spec["root_ca"]["cert_pem"], spec["root_ca"]["key_pem"]), b""


def trust_bundle(spec: dict[str, Any]) -> bytes:
    """What every node must trust: the root, and during a rotation the new root too."""
    rotation = spec.get("root_rotation")
    bundle = spec["root_ca"]["cert_pem"]
    return bundle + rotation["new_cert_pem"] if rotation else bundle


def signing_key_fingerprint(spec: dict[str, Any]) -> str:
    """The public-key fingerprint of the root that signs now (node records' ``cert_issuer_key``)."""
    return public_key_fingerprint(signing_root(spec)[0].cert_pem)
