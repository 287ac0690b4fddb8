"""Who may call what: the kinds of caller, and the one check every listener runs.

Each listener declares, next to its methods, which kinds of caller may use
each one (STYLE rule 13), and runs ``authorize`` before any handler:

=====================  ===================================================
control socket and     ``_registry.ALLOWED`` (the ``allow=`` of ``@method``)
remote control API
cluster port, node     ``_cluster_service.NODE_API``
API
cluster port, Raft     ``RAFT_CHANNEL`` below (then: a current Raft member)
channel
=====================  ===================================================

A method without a declaration is refused, and
``tests/security/test_authz_declarations.py`` fails.

Kinds of caller, and what makes one (never a certificate field alone):

``LOCAL_ADMIN``
    the unix control socket (mode 0600: the daemon's user), or TCP without
    TLS, which the daemon serves only on loopback when explicitly asked to.
``REMOTE_ADMIN``
    TLS with a client certificate of this cluster's admin kind (OU
    swarm-client, O the cluster id; ``raftstore ca issue-client``) whose
    serial the store does not list as revoked. Only an unlocked manager can
    read that list; any other node refuses remote admins.
``LOCKED_REMOTE_ADMIN``
    TLS with an admin client certificate of this cluster, presented to a
    locked manager. A locked manager holds no store, so it cannot read the
    revocation list: such a caller is admitted only where it gains nothing
    without the unlock key itself (``unlock``) or nothing secret (``info``,
    ``ping``), so that an operator can unlock a manager remotely, as with
    ``docker swarm unlock -H``.
``MANAGER``
    a verified certificate of this cluster with OU swarm-manager, of a node
    that was not removed, whose node record says manager and lists the
    certificate's serial. Read after a barrier on the node API, so a
    demotion or removal applies to the very next request.
``NODE``
    a verified certificate of this cluster (manager or worker), of a node
    that was not removed and whose record lists the serial. The OU may differ
    from the record's role: that is how a node renews into a new role.
``NODE_IN_ROLE``
    ``NODE``, and the OU is the role the record names now (after a barrier).
``ANYONE``
    no condition here; the handler checks what it needs (a join token, a
    proof of possession of a recorded key).

Node records written before certificate serials were recorded (no
``cert_serials`` field) are accepted by role alone until the node's next
renewal records one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..keyring import (
    CLIENT_ROLE,
    MANAGER_ROLE,
    WORKER_ROLE,
    CertificateIdentity,
    NodeRemoved,
    PermissionDenied,
)
from ..storage import Role

if TYPE_CHECKING:
    from ..state import StateMachine

__all__ = [
    "LOCAL_ADMIN", "REMOTE_ADMIN", "LOCKED_REMOTE_ADMIN", "MANAGER", "NODE", "NODE_IN_ROLE", "ANYONE", "KINDS", "ADMIN", "ADMIN_WHILE_LOCKED", "RAFT_CHANNEL",
    "Allowed", "allow", "Caller", "StoreView", "authorize", "recorded_serials",
]

LOCAL_ADMIN = "local-admin"
REMOTE_ADMIN = "remote-admin"
LOCKED_REMOTE_ADMIN = "locked-remote-admin"
MANAGER = "manager"
NODE = "node"
NODE_IN_ROLE = "node-in-role"
ANYONE = "anyone"
KINDS = (LOCAL_ADMIN, REMOTE_ADMIN, LOCKED_REMOTE_ADMIN, MANAGER, NODE, NODE_IN_ROLE, ANYONE)

Allowed = frozenset[str]


def allow(*kinds: str) -> Allowed:
    """A declaration: the kinds of caller a method admits (at least one, each a known kind)."""
    if not kinds or any(kind not in KINDS for kind in kinds):
        raise ValueError(f"a declaration names one or more of {KINDS}, not {kinds}")
    return frozenset(kinds)


#: Every control-API method: the operator, at the socket or with an admin client certificate.
ADMIN = allow(LOCAL_ADMIN, REMOTE_ADMIN)
#: What a locked manager may serve to an admin client certificate it cannot check for revocation.
ADMIN_WHILE_LOCKED = allow(LOCAL_ADMIN, REMOTE_ADMIN, LOCKED_REMOTE_ADMIN)
#: The cluster port's Raft channel (the listener then also requires a current Raft member).
RAFT_CHANNEL = allow(MANAGER)


@dataclass(frozen=True)
class Caller:
    """Who is on the other end of a connection, as the listener saw it."""

    transport: str  # "unix" or "tcp" (control API), "cluster" (node API), "raft" (Raft channel)
    tls: bool
    identity: CertificateIdentity | None
    address: str | None = None

    @classmethod
    def from_control(cls, info: dict[str, Any]) -> "Caller":
        """From the ``info`` map the control server passes with each request."""
        peer = info.get("peer")
        return cls(str(info.get("transport")), bool(info.get("tls")),
                   peer if isinstance(peer, CertificateIdentity) else None, info.get("address"))


@dataclass(frozen=True)
class StoreView:
    """What the check may read: this node's cluster id and its copy of the store.

    ``state(fresh)`` returns the store (after a barrier when ``fresh``), or
    None when this node has none (inactive, locked, a worker). The Raft
    channel's view never waits for a barrier: admitting a peer is part of
    what a barrier needs.
    """

    cluster_id: str | None
    state: Callable[[bool], "StateMachine | None"]
    locked: bool = False


def authorize(allowed: Allowed, caller: Caller, view: StoreView) -> CertificateIdentity | None:
    """Let ``caller`` through if it is one of the ``allowed`` kinds; return its certificate identity.

    Raises:
        NodeRemoved: the caller's node was removed from the cluster.
        PermissionDenied: otherwise, with the reason of the first kind tried.
    """
    reasons = []
    for kind in KINDS:  # a fixed order; the reason given is the last kind's, the most specific one
        if kind in allowed:
            reason = _CHECKS[kind](caller, view)
            if reason is None:
                return caller.identity
            reasons.append(reason)
    raise PermissionDenied(f"permission denied: {reasons[-1] if reasons else 'no caller may use this method'}")


def recorded_serials(record: dict[str, Any]) -> list[str] | None:
    """The serials a node record accepts, or None for a record written before serials were recorded."""
    serials = record["spec"].get("cert_serials")
    return [str(s) for s in serials] if isinstance(serials, list) else None


# ------------------------------------------------------------------ one function per kind: a reason, or None


def _local_admin(caller: Caller, view: StoreView) -> str | None:
    if caller.transport == "unix" or (caller.transport == "tcp" and not caller.tls):
        return None
    return "only the local control socket may do this"


def _client_certificate(caller: Caller, view: StoreView) -> str | None:
    """Whether the caller presents an admin client certificate of this cluster (revocation aside)."""
    identity = caller.identity
    if caller.transport != "tcp" or not caller.tls:
        return "an admin client certificate is required"
    if identity is None:
        return "an admin client certificate is required (raftstore ca issue-client)"
    if identity.role != CLIENT_ROLE:
        return (f"the remote control API accepts only admin client certificates (raftstore ca issue-client), "
                f"not a {identity.role} certificate")
    if identity.cluster_id != view.cluster_id:
        return "the client certificate is not one of this cluster's"
    return None


def _locked_remote_admin(caller: Caller, view: StoreView) -> str | None:
    reason = _client_certificate(caller, view)
    if reason is None and not view.locked:
        reason = "only a locked manager admits a client certificate it cannot check for revocation"
    return reason


def _remote_admin(caller: Caller, view: StoreView) -> str | None:
    reason = _client_certificate(caller, view)
    if reason is not None:
        return reason
    identity = caller.identity
    assert identity is not None
    state = view.state(False)
    if state is not None and state.cluster() is None:
        state = view.state(True)  # just started: catch up with the log before judging
    cluster = state.cluster() if state is not None else None
    if cluster is None:
        return ("this node cannot check client certificates against the cluster's revocation list "
                "(it is not an unlocked manager); use its local control socket")
    if identity.serial in cluster["spec"].get("revoked_client_serials", []):
        return f"client certificate {identity.serial} was revoked"
    return None


def _node_record(caller: Caller, view: StoreView, fresh: bool) -> tuple[str | None, dict[str, Any] | None]:
    """(refusal, record): the caller's node record if its certificate is one the store accepts."""
    identity = caller.identity
    if identity is None or identity.cluster_id != view.cluster_id or identity.role not in (MANAGER_ROLE, WORKER_ROLE):
        return "a node certificate of this cluster is required", None
    state = view.state(fresh)
    if state is None:
        return "this node is not an active manager", None
    cluster = state.cluster()
    if cluster is None:
        return "the cluster object is not committed yet", None
    if identity.node_id in cluster["spec"].get("removed_nodes", []):
        raise NodeRemoved(f"node {identity.node_id} was removed from the cluster")
    record = state.find("nodes", identity.node_id)
    if record is None:
        return f"node {identity.node_id} is not on record", None
    serials = recorded_serials(record)
    if serials is not None and identity.serial not in serials:
        return f"this is not a current certificate of node {identity.node_id}", None
    return None, record


def _node(caller: Caller, view: StoreView) -> str | None:
    return _node_record(caller, view, fresh=False)[0]


def _node_in_role(caller: Caller, view: StoreView) -> str | None:
    reason, record = _node_record(caller, view, fresh=True)
    if reason is not None or record is None:
        return reason
    assert caller.identity is not None
    if _role_of(caller.identity) != record["spec"].get("role"):
        return f"this certificate is for a {caller.identity.role}, and the node is now a {record['spec'].get('role')}"
    return None


def _manager(caller: Caller, view: StoreView) -> str | None:
    identity = caller.identity
    if identity is not None and identity.role != MANAGER_ROLE:
        return f"only managers may do this, not a {identity.role}"
    if caller.transport == "raft" and identity is not None and _bootstrapping(view):
        return None
    reason, record = _node_record(caller, view, fresh=True)
    if reason is not None or record is None:
        return reason
    if record["spec"].get("role") != Role.MANAGER:
        return f"node {identity.node_id if identity else ''} is not a manager in the store"
    return None


def _bootstrapping(view: StoreView) -> bool:
    """A manager whose store has not applied the cluster object yet (a new member catching up).

    It has nothing to check a peer against; the Raft channel then admits a
    manager certificate of this cluster that the listener finds in the Raft
    configuration, as before records existed.
    """
    state = view.state(False)
    return state is not None and state.cluster() is None


def _anyone(caller: Caller, view: StoreView) -> str | None:
    return None


def _role_of(identity: CertificateIdentity) -> str:
    return Role.MANAGER if identity.role == MANAGER_ROLE else Role.WORKER


_CHECKS: dict[str, Callable[[Caller, StoreView], str | None]] = {
    LOCAL_ADMIN: _local_admin,
    REMOTE_ADMIN: _remote_admin,
    LOCKED_REMOTE_ADMIN: _locked_remote_admin,
    MANAGER: _manager,
    NODE: _node,
    NODE_IN_ROLE: _node_in_role,
    ANYONE: _anyone,
}
