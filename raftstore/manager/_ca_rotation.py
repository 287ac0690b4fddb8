"""Root CA rotation, as Swarm does it: cross-sign, converge, then forget the old root.

1. ``start``: a new root (generated, the operator's ``--ca-cert/--ca-key``, or
   ``--ca-cert`` with ``--external-ca`` when its key stays with the operator's
   CFSSL: one certificate, valid at least another year, not the current key)
   and a cross-signed certificate (the new root's key, certified by the old
   root: with its key here, or by the old root's external CA when the new
   root's key is given) go into the cluster object as ``root_rotation``.
2. While it lasts every node trusts both roots, every certificate issued is
   signed by the new root and carries the cross-signed one as an intermediate
   (so a node that trusts only the old root can still verify it), and every
   node is told to renew at once.
3. The leader watches the node records: a node has converged when its
   certificate was issued by the new root. A node that is down keeps the
   rotation waiting; ``ca`` says which.
4. When every node has converged the new root becomes the only root, the old
   one (and the external CAs that signed for it) is forgotten, and both join
   tokens are regenerated (their digest names the new root). From then on a
   certificate of the old root is refused.

Which root signs, and what a node must trust, is decided in ``_roots`` alone.
The functions here take the manager and the daemon's event log, nothing more.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable

from ..keyring import (
    InvalidArgument,
    InvalidCertificate,
    JoinToken,
    RootCA,
    create_root_ca,
    cross_sign,
    load_root_ca,
    public_key_fingerprint,
    root_ca_not_after,
)
from ._cluster_settings import update_cluster
from ._external_ca import cross_sign_with_external_ca, entries_for, external_ca_entry, require_answering
from ._roots import signing_key_fingerprint

if TYPE_CHECKING:
    from ._manager import Manager

__all__ = ["start_rotation", "rotation_status", "finish_if_converged"]

MIN_REMAINING_VALIDITY = timedelta(days=365)


def start_rotation(
    manager: "Manager", log: Callable[[str], None], now: datetime, cert_pem: bytes | None = None,
    key_pem: bytes | None = None, external_cas: list[Any] | None = None,
) -> dict[str, Any]:
    """Begin a rotation to a generated root, the operator's root and key, or a root whose key stays with
    ``external_cas`` (Swarm's flow: the old root's key, here or at the old root's external CA, cross-signs).

    ``log`` is the daemon's event log. Returns ``rotation_status`` once the rotation is committed.
    """
    cluster = manager.read_barrier().cluster()
    if cluster is None:
        raise InvalidArgument("the cluster object is not committed yet")
    spec = cluster["spec"]
    new, cross_signed, entries = _new_root(spec, now, cert_pem, key_pem, external_cas or [])

    def begin(spec_now: dict[str, Any], _: "Manager") -> list[dict[str, Any]]:
        if spec_now["root_ca"]["cert_pem"] != spec["root_ca"]["cert_pem"]:
            raise InvalidArgument("the root CA changed meanwhile: run the rotation again")
        spec_now["root_rotation"] = {
            "new_cert_pem": new.cert_pem,
            "new_key_pem": new.key_pem,
            "cross_signed_pem": cross_signed,
            "started_at": now.isoformat(),
        }
        spec_now["force_rotate"] = int(spec_now.get("force_rotate", 0)) + 1  # Swarm's CAConfig.ForceRotate, for info
        new_key = public_key_fingerprint(new.cert_pem)
        spec_now["external_cas"] = [e for e in spec_now.get("external_cas") or [] if e["root_key"] != new_key] + entries
        return []

    update_cluster(manager, begin)
    log("root CA rotation started: every node renews its certificate under the new root")
    return rotation_status(manager)


def _new_root(spec: dict[str, Any], now: datetime, cert_pem: bytes | None, key_pem: bytes | None,
              external_cas: list[Any]) -> tuple[RootCA, bytes, list[dict[str, Any]]]:
    """The new root, its cross-signed bridge, and the external CAs that sign for it (checked to answer)."""
    if key_pem is not None and cert_pem is None:
        raise InvalidArgument("--ca-key needs --ca-cert")
    if external_cas and (cert_pem is None or key_pem is not None):
        raise InvalidArgument("--external-ca with --rotate needs --ca-cert (the new root your external CA signs "
                              "with) and no --ca-key")
    if cert_pem is not None and key_pem is None and not external_cas:
        raise InvalidArgument("--ca-cert needs --ca-key, or --external-ca when the key stays with your CA")
    old = RootCA(spec["root_ca"]["cert_pem"], spec["root_ca"]["key_pem"])
    if cert_pem is not None:
        new = load_root_ca(cert_pem, key_pem, now)
        if root_ca_not_after(new.cert_pem) - now < MIN_REMAINING_VALIDITY:
            raise InvalidCertificate("the new CA certificate must be valid for at least one more year")
    else:
        new = create_root_ca(now)
    if public_key_fingerprint(new.cert_pem) == public_key_fingerprint(old.cert_pem):
        raise InvalidCertificate("the new CA certificate must not reuse the current root's key")
    entries = [external_ca_entry(option, new.cert_pem) for option in external_cas]
    require_answering(entries, new.cert_pem)
    if old.key_pem is not None:
        return new, cross_sign(old, new.cert_pem, now), entries
    if new.key_pem is None:
        raise InvalidArgument("rotating from one external root to another is not supported (as in Swarm): the "
                              "cross-signed certificate needs one of the two keys; rotate to a root whose key you "
                              "give (or a generated one) first, then to the new external root")
    return new, cross_sign_with_external_ca(entries_for(spec, old.cert_pem), old.cert_pem, new, now), entries


def rotation_status(manager: "Manager", consistency: str = "linearizable") -> dict[str, Any]:
    """What ``raftstore ca`` shows: the root, and during a rotation how many nodes converged and who is awaited."""
    state = manager.read_barrier(consistency)
    cluster = state.cluster()
    if cluster is None:
        raise InvalidArgument("the cluster object is not committed yet")
    spec = cluster["spec"]
    out: dict[str, Any] = {"root_ca_pem": spec["root_ca"]["cert_pem"], "in_progress": False}
    rotation = spec.get("root_rotation")
    if not rotation:
        return out
    target = signing_key_fingerprint(spec)
    nodes = state.list("nodes")
    waiting = [
        {"id": n["id"], "hostname": n["spec"].get("hostname", ""), "role": n["spec"].get("role")}
        for n in nodes
        if n["spec"].get("cert_issuer_key") != target
    ]
    out.update(
        in_progress=True,
        new_root_ca_pem=rotation["new_cert_pem"],
        total=len(nodes),
        converged=len(nodes) - len(waiting),
        waiting_for=waiting,
        started_at=rotation["started_at"],
    )
    return out


def finish_if_converged(manager: "Manager", log: Callable[[str], None]) -> bool:
    """On the leader: complete a rotation once every node holds a certificate of the new root."""
    cluster = manager.state.cluster()
    if cluster is None or not cluster["spec"].get("root_rotation"):
        return False
    status = rotation_status(manager)
    if not status["in_progress"] or status["waiting_for"]:
        return False

    def complete(spec: dict[str, Any], _: "Manager") -> list[dict[str, Any]]:
        rotation = spec.get("root_rotation")
        if not rotation:
            return []
        spec["root_ca"] = {"cert_pem": rotation["new_cert_pem"], "key_pem": rotation["new_key_pem"]}
        spec["root_rotation"] = None
        new_key = public_key_fingerprint(rotation["new_cert_pem"])
        spec["external_cas"] = [e for e in spec.get("external_cas") or [] if e["root_key"] == new_key]
        spec["join_tokens"] = {
            "worker": str(JoinToken.generate(rotation["new_cert_pem"])),
            "manager": str(JoinToken.generate(rotation["new_cert_pem"])),
        }
        return []

    update_cluster(manager, complete)
    log("root CA rotation complete: the old root is forgotten and both join tokens regenerated")
    return True
