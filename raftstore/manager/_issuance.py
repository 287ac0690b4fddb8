"""The one place certificates are issued: by the root's key here, or by the root's external CA.

Every certificate a manager hands out goes through ``issue_node_certificate``:
a node's at ``init``, ``join``, renewal, a role change, rotation convergence
and restore; an admin client's (``ca issue-client``); a daemon's server
certificate for the remote control API (``ca issue-server``). The root that
signs, the intermediates that ride along during a CA rotation (``_roots``)
and the validity (the cluster's ``cert_expiry_seconds``) are chosen here, so
no caller picks them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Sequence

from ..keyring import DAEMON_ROLE, InvalidArgument, issue_certificate, issue_daemon_certificate
from ._external_ca import entries_for, sign_with_external_ca
from ._roots import signing_root

__all__ = ["issue_node_certificate"]


def issue_node_certificate(
    spec: dict[str, Any], csr_pem: bytes, *, node_id: str, cluster_id: str, role: str, now: datetime,
    hosts: Sequence[str] | None = None,
) -> bytes:
    """A certificate of this cluster for the key in ``csr_pem``, from whichever signs now.

    Args:
        spec: the cluster object's spec (root, rotation, external CAs, certificate expiry).
        node_id: the subject's name (CN): a node's id, or the name of an admin client or a daemon.
        role: ``MANAGER_ROLE``, ``WORKER_ROLE`` or ``CLIENT_ROLE`` (signed here or by the external CA),
            or ``DAEMON_ROLE`` with ``hosts`` (only a root whose key the cluster holds signs those).

    Returns the leaf followed by the intermediates of a rotation (the cross-signed new root).

    Raises:
        InvalidArgument: a daemon certificate from a root whose key stays with an external CA.
        InvalidCertificate: a bad CSR (local), or every external CA answered wrongly.
        Unavailable: no external CA could be reached.
    """
    root, intermediates = signing_root(spec)
    if role == DAEMON_ROLE:
        if root.key_pem is None:
            raise InvalidArgument("the cluster does not hold its root key (external CA): have your CA sign a server "
                                  "certificate with serverAuth and the hosts clients dial, and give it to daemon "
                                  "--tlscert")
        return issue_daemon_certificate(root, csr_pem, name=node_id, cluster_id=cluster_id, hosts=hosts or [],
                                        now=now, validity=_validity(spec), intermediates_pem=intermediates)
    if root.key_pem is None:
        leaf = sign_with_external_ca(entries_for(spec, root.cert_pem), root.cert_pem, csr_pem, node_id=node_id,
                                     cluster_id=cluster_id, role=role, now=now)
        return leaf + intermediates
    return issue_certificate(root, csr_pem, node_id=node_id, cluster_id=cluster_id, role=role, now=now,
                             validity=_validity(spec), intermediates_pem=intermediates)


def _validity(spec: dict[str, Any]) -> timedelta:
    """How long a certificate issued now is valid: the cluster's ``cert_expiry_seconds``."""
    return timedelta(seconds=int(spec["cert_expiry_seconds"]))
