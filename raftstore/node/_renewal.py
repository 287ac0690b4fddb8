"""Keeping this node's certificate fresh.

Every node renews at a random moment between 50% and 80% of its
certificate's lifetime (so that a cluster's nodes do not all come at once),
at once when a CA rotation asks for it, and as soon as a manager can be
reached when the certificate has expired. Failures back off exponentially
(1 s, 2 s, ... 60 s). Each renewal makes a new key; the old one is
replaced on disk only after the new certificate has arrived.

A manager renews itself locally with the CA key from its own store (an
expired manager certificate could not complete a TLS handshake, not even
with itself). A worker asks a manager over mutual TLS, or, when its
certificate has expired, proves possession of the old key by signing the
request (TLS refuses expired client certificates). The managers renew an
expired certificate only within a grace period (the cluster's certificate
expiry, at most 7 days) and only the one on record; a refusal says so, and
this node then reports that it must rejoin (``info`` and the log) instead of
retrying in silence.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable

from ..keyring import (
    CERT_BACKDATE,
    CertificateIdentity,
    PermissionDenied,
    RaftstoreError,
    certificate_identity,
    generate_private_key,
    make_csr,
    sign_possession,
)
from ..net import call_any_manager, call_any_manager_anonymous
from ..storage import KeyStore, atomic_write

if TYPE_CHECKING:
    from ..storage import NodeState, StatePaths
    from ._host import NodeHost

__all__ = ["CertificateRenewer", "RenewalHooks", "issued_identity", "install_pair", "renew_certificate",
           "install_certificate"]

MAX_BACKOFF = 60.0


def issued_identity(node: "NodeState", chain_pem: bytes) -> CertificateIdentity:
    """The identity in a certificate a manager issued to ``node``, refused if it names another node."""
    new = certificate_identity(chain_pem)
    if new.node_id != node.node_id or new.cluster_id != node.cluster_id:
        raise RaftstoreError("the renewed certificate names another node")
    return new


def install_pair(paths: "StatePaths", node: "NodeState", chain_pem: bytes, key_pem: bytes,
                 sealed_under: Any) -> CertificateIdentity:
    """Replace this node's key and certificate so that a crash leaves a matching pair (see
    KeyStore.install_certificate); the key is sealed under ``sealed_under`` (a KEK) when given."""
    new = issued_identity(node, chain_pem)
    KeyStore(paths, node.cluster_id).install_certificate(chain_pem, key_pem, sealed_under)
    return new


def renew_certificate(host: "NodeHost", expired: bool) -> None:
    """One renewal with a new key: a manager issues for itself, a worker asks a manager."""
    node = host.node
    if node is None:
        return
    key = generate_private_key()
    csr = make_csr(key)
    if host.manager is not None:
        reply = host.cluster_service.issue_for(node.node_id, csr, host.certificate_identity())
    else:
        assert host.worker is not None
        identity = host.worker.identity()
        addrs = list(host.worker.node.manager_addrs)
        if expired:
            reply = call_any_manager_anonymous(
                addrs,
                "node.renew_expired",
                {
                    "cert_chain_pem": identity.cert_chain_pem,
                    "csr_pem": csr,
                    "proof": sign_possession(identity.key_pem, csr),
                },
                trusted_roots_pem=identity.trusted_roots_pem,
                cluster_id=node.cluster_id,
            )
        else:
            reply = call_any_manager(
                addrs,
                "node.renew",
                {"csr_pem": csr},
                trusted_roots_pem=identity.trusted_roots_pem,
                identity=identity,
                cluster_id=node.cluster_id,
            )
    install_certificate(host, reply, key)


def install_certificate(host: "NodeHost", reply: dict[str, Any], key_pem: bytes) -> None:
    """Put a certificate for this node's current role, and its new key, in place and in use."""
    node = host.node
    assert node is not None
    chain = bytes(reply["cert_chain_pem"])
    keystore = KeyStore(host.paths, node.cluster_id)
    manager = host.manager
    sealed_under = manager.kek if manager is not None and keystore.needs_unlock_key() else None
    new = install_pair(host.paths, node, chain, key_pem, sealed_under)
    bundle = reply.get("trust_bundle_pem")
    if isinstance(bundle, bytes) and bundle:
        atomic_write(host.paths.root_ca, bundle, mode=0o644)
    if manager is not None:
        manager.reload_tls_identity(key_pem)
    elif host.worker is not None:
        host.worker.set_key(key_pem)
    host.reset_tls()
    host.log(f"certificate renewed: valid until {new.not_after:%Y-%m-%d %H:%M:%S} UTC ({new.role})")


@dataclass(frozen=True)
class RenewalHooks:
    """What the renewer calls; all of it belongs to the node that runs it."""

    #: This node's certificate on disk, or None (no certificate: nothing to renew).
    identity: Callable[[], CertificateIdentity | None]
    now: Callable[[], datetime]
    #: Renew now (``renew_certificate``); the argument says whether the certificate has expired.
    renew: Callable[[bool], None]
    log: Callable[[str], None]
    warn: Callable[[str], None]


class CertificateRenewer:
    """When to renew: the schedule, early requests, backoff, and what to say when the managers refuse."""

    def __init__(self, hooks: RenewalHooks, rng: random.Random | None = None) -> None:
        self.hooks = hooks
        self._rng = rng or random.Random()
        self._due: tuple[datetime, datetime] | None = None  # (for not_after, due at)
        self._forced = False
        self._failures = 0
        self._retry_at: datetime | None = None
        self.last_error: str | None = None
        #: Set when the managers refused to renew an expired certificate: only a rejoin helps.
        self.rejoin_error: str | None = None

    def request(self) -> None:
        """Renew at the next opportunity (a CA rotation needs new certificates)."""
        self._forced = True
        self._retry_at = None

    def due_at(self, identity: CertificateIdentity) -> datetime:
        if self._due is None or self._due[0] != identity.not_after:
            # The lifetime runs from issuance: NotBefore is back-dated for clock
            # skew, and counting that hour would make a 1h certificate due at once.
            issued = min(identity.not_before + CERT_BACKDATE, identity.not_after)
            lifetime = identity.not_after - issued
            self._due = (identity.not_after, issued + lifetime * self._rng.uniform(0.5, 0.8))
        return self._due[1]

    def tick(self) -> None:
        identity = self.hooks.identity()
        if identity is None:
            return
        now = self.hooks.now()
        if not (self._forced or now >= self.due_at(identity)):
            return
        if self._retry_at is not None and now < self._retry_at:
            return
        expired = now >= identity.not_after
        try:
            self.hooks.renew(expired)
        except PermissionDenied as error:
            if expired:
                self._refused(error)
            self._failures += 1
            self._retry_at = now + timedelta(seconds=MAX_BACKOFF)
            self.last_error = str(error)
            return
        except RaftstoreError as error:
            self._failures += 1
            delay = min(MAX_BACKOFF, 2.0 ** (self._failures - 1)) * self._rng.uniform(0.8, 1.2)
            self._retry_at = now + timedelta(seconds=delay)
            if self.last_error != str(error):
                self.hooks.log(f"certificate renewal failed (retrying with backoff): {error}")
            self.last_error = str(error)
            return
        self._failures = 0
        self._retry_at = None
        self._forced = False
        self.last_error = None
        self.rejoin_error = None

    def _refused(self, error: PermissionDenied) -> None:
        """The managers will not renew this expired certificate: say once, clearly, what the operator must do."""
        message = (f"certificate expired and the managers refuse to renew it ({error}); this node must rejoin: "
                   "run \"raftstore leave --force\", then \"raftstore join\" with a join token")
        if self.rejoin_error != message:
            self.hooks.warn(message)
        self.rejoin_error = message
