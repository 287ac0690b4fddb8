"""The node-to-manager API, served on the cluster port of every manager.

Who may call what is declared in ``NODE_API`` (kinds from ``_authz``, which
also says what each kind means) and checked by ``_authz.authorize`` before a
handler runs:

===================  =================  ======================================
``ca.get``           anyone             the caller checks the digest in its
                                        join token
``join``             anyone             with a valid join token, checked
                                        against committed local state before
                                        anything is proposed; rate-limited
                                        per source address and in all
``raft.join``        manager            DEKs, the unlock key and Raft go to
``keyring.fetch``                       managers only
``raft.remove``      manager            take a manager out of Raft
``raft.step_down``   manager            hand leadership to a caught-up
                                        follower
``node.heartbeat``   node               any node of this cluster
``node.renew``       node               a new certificate for the key in its
                                        CSR, with the role its record names
``node.renew_expired``  anyone          the holder of the key of a recorded
                                        certificate that expired less than
                                        the grace period ago (proved by a
                                        signature over the CSR)
``secret.read``      node-in-role       a secret granted to that node
``config.read``      node-in-role       a config granted to that node
``node.assignments`` node-in-role       the ids and names (never the data) of
                                        what is granted to that node; waits
                                        up to 10 s for a change (long poll)
===================  =================  ======================================

A node that was removed is refused with ``node <id> was removed from the
cluster``, whatever its certificate says.
"""

from __future__ import annotations

import time
from datetime import timedelta
from math import isfinite
from typing import TYPE_CHECKING, Any

from ..keyring import (
    MANAGER_ROLE,
    WORKER_ROLE,
    CertificateIdentity,
    InvalidArgument,
    InvalidCertificate,
    InvalidJoinToken,
    NoQuorum,
    NodeRemoved,
    PermissionDenied,
    UpdateOutOfSequence,
    certificate_identity,
    new_id,
    tokens_equal,
    verify_certificate_chain,
    verify_possession,
)
from ..manager import (
    MembershipReconciler,
    finish_if_converged,
    issue_node_certificate,
    remove_manager,
    signing_key_fingerprint,
    trust_bundle,
)
from ..net import JoinLimiter
from ..node import node_record_action
from ..storage import Role
from ..state import format_duration, read_granted
from ._authz import ANYONE, MANAGER, NODE, NODE_IN_ROLE, Allowed, Caller, allow, authorize, recorded_serials

if TYPE_CHECKING:
    from ._host import Host

__all__ = ["ClusterService", "NODE_API", "renewal_grace"]

HEARTBEAT_INTERVAL = 5.0
#: How long a wrong join token keeps its connection waiting for the answer.
WRONG_TOKEN_DELAY = 0.25
#: The longest renewal grace period, whatever the certificate expiry (as Swarm: then the node rejoins).
MAX_RENEWAL_GRACE = timedelta(days=7)

#: Every node-API method: (handler attribute, who may call it).
NODE_API: dict[str, tuple[str, Allowed]] = {
    "ca.get": ("ca_get", allow(ANYONE)),
    "join": ("join", allow(ANYONE)),
    "raft.join": ("raft_join", allow(MANAGER)),
    "keyring.fetch": ("keyring_fetch", allow(MANAGER)),
    "raft.remove": ("raft_remove", allow(MANAGER)),
    "raft.step_down": ("raft_step_down", allow(MANAGER)),
    "node.heartbeat": ("heartbeat", allow(NODE)),
    "node.renew": ("renew", allow(NODE)),
    "node.renew_expired": ("renew_expired", allow(ANYONE)),
    "secret.read": ("secret_read", allow(NODE_IN_ROLE)),
    "config.read": ("config_read", allow(NODE_IN_ROLE)),
    "node.assignments": ("assignments", allow(NODE_IN_ROLE)),
}


def renewal_grace(spec: dict[str, Any]) -> timedelta:
    """How long after expiry a certificate may still be renewed: the cluster's certificate expiry, at most 7 days."""
    return min(timedelta(seconds=int(spec["cert_expiry_seconds"])), MAX_RENEWAL_GRACE)


class ClusterService:
    """The node API of one daemon: each method of ``NODE_API``, after ``authorize``, and periodic housekeeping."""

    def __init__(self, host: "Host") -> None:
        self.host = host
        self.join_limiter = JoinLimiter()
        self.membership = MembershipReconciler(host)

    def handle(
        self, identity: CertificateIdentity | None, method: str, params: dict[str, Any], address: str | None = None
    ) -> Any:
        entry = NODE_API.get(method)
        if entry is None:
            raise InvalidArgument(f"unknown method {method!r}")
        attribute, allowed = entry
        caller = Caller("cluster", True, identity, address)
        authorize(allowed, caller, self.host.store_view())
        return getattr(self, attribute)(caller, params)

    # ------------------------------------------------------------- helpers

    def _cluster(self, consistency: str = "linearizable") -> dict[str, Any]:
        state = self.host.require_manager().read_barrier(consistency)
        cluster = state.cluster()
        if cluster is None:
            raise NoQuorum("the cluster object is not committed yet")
        return cluster

    def removed_nodes(self) -> set[str]:
        manager = self.host.manager
        cluster = manager.state.cluster() if manager is not None else None
        return set(cluster["spec"].get("removed_nodes", [])) if cluster else set()

    @staticmethod
    def _caller(caller: Caller) -> CertificateIdentity:
        assert caller.identity is not None  # authorize admitted a node kind
        return caller.identity

    # ------------------------------------------------------------- methods

    def ca_get(self, caller: Caller, params: dict[str, Any]) -> Any:
        # The current root alone (not the rotation bundle): join tokens carry its digest.
        return {"root_ca_pem": self._cluster("local")["spec"]["root_ca"]["cert_pem"]}

    @staticmethod
    def _token_role(token: str, spec: dict[str, Any]) -> str | None:
        """Which join token this is (both compared, in constant time), or None."""
        is_manager = tokens_equal(token, spec["join_tokens"]["manager"])
        is_worker = tokens_equal(token, spec["join_tokens"]["worker"])
        return MANAGER_ROLE if is_manager else WORKER_ROLE if is_worker else None

    def join(self, caller: Caller, params: dict[str, Any]) -> Any:
        """Admit a new node: rate limit, then the token against committed local state, and only then Raft."""
        manager = self.host.require_manager()
        self.join_limiter.admit(caller.address, time.monotonic())
        token = params.get("token")
        csr = params.get("csr_pem")
        addr = params.get("addr")
        if not isinstance(token, str) or not isinstance(csr, bytes) or not isinstance(addr, str):
            raise InvalidArgument("join needs a token, a CSR and an address")
        role = self._token_role(token, self._cluster("local")["spec"])
        if role is None:
            self.join_limiter.penalize(caller.address, time.monotonic())
            time.sleep(WRONG_TOKEN_DELAY)
            raise InvalidJoinToken()
        spec = self._cluster()["spec"]  # the barrier: the tokens may have been rotated since
        if self._token_role(token, spec) != role:
            raise InvalidJoinToken()
        is_manager = role == MANAGER_ROLE
        node_id = new_id()
        chain = self._sign(spec, csr, node_id, role)
        hostname = str(params.get("hostname") or "")[:255]
        record = node_record_action(node_id, Role.MANAGER if is_manager else Role.WORKER, addr, hostname)
        record["spec"].update(self._cert_fields(spec, chain, None))
        manager.propose([record])
        self.host.log(f"node {node_id} joined as {'manager' if is_manager else 'worker'} from {addr}")
        status = manager.status()
        return {
            "node_id": node_id,
            "cluster_id": manager.node.cluster_id,
            "role": role,
            "cert_chain_pem": chain,
            "members": [list(m) for m in status.get("members", [])],
            "manager_addrs": self.manager_addresses(),
            "trust_bundle_pem": trust_bundle(spec),
        }

    def _sign(self, spec: dict[str, Any], csr: bytes, node_id: str, role: str) -> bytes:
        """Signed here with the root's key, or by the cluster's external CA (the one place: ``_issuance``)."""
        return issue_node_certificate(spec, csr, node_id=node_id, role=role, now=self.host.clock.now(),
                                      cluster_id=self.host.require_manager().node.cluster_id)

    @staticmethod
    def _cert_fields(spec: dict[str, Any], chain: bytes, previous: CertificateIdentity | None) -> dict[str, Any]:
        """What the node record says about the certificate just issued (see _authz for cert_serials).

        After a plain renewal the certificate it replaces stays accepted too
        (the node may crash before installing the new one); a new role keeps
        only the new certificate.
        """
        identity = certificate_identity(chain)
        kept = [previous.serial] if previous is not None and previous.role == identity.role and previous.serial else []
        return {
            "cert_issuer_key": signing_key_fingerprint(spec),
            "cert_not_after": identity.not_after.isoformat(),
            "cert_serials": [identity.serial, *(s for s in kept if s != identity.serial)],
        }

    def issue_for(self, node_id: str, csr: bytes, previous: CertificateIdentity | None) -> dict[str, Any]:
        """A certificate for ``node_id``'s new key, with the role its record names; recorded in the store.

        ``previous`` is the certificate it replaces (None: none to keep).
        """
        manager = self.host.require_manager()
        for attempt in range(5):
            state = manager.read_barrier()
            record = state.find("nodes", node_id)
            if record is None or node_id in self.removed_nodes():
                raise NodeRemoved(f"node {node_id} was removed from the cluster")
            spec = self._cluster("local")["spec"]
            role = MANAGER_ROLE if record["spec"].get("role") == Role.MANAGER else WORKER_ROLE
            chain = self._sign(spec, csr, node_id, role)
            node_spec = dict(record["spec"], **self._cert_fields(spec, chain, previous))
            try:
                manager.propose(
                    [{"op": "update", "table": "nodes", "id": node_id, "version": record["version"], "spec": node_spec}]
                )
            except UpdateOutOfSequence:
                continue
            status = manager.status()
            return {
                "cert_chain_pem": chain,
                "role": role,
                "members": [list(m) for m in status.get("members", [])],
                "manager_addrs": self.manager_addresses(),
                "trust_bundle_pem": trust_bundle(spec),
            }
        raise UpdateOutOfSequence()

    def manager_addresses(self) -> list[str]:
        manager = self.host.require_manager()
        return [address for _, address in manager.status().get("members", [])]

    def raft_join(self, caller: Caller, params: dict[str, Any]) -> Any:
        node_id = self._caller(caller).node_id
        manager = self.host.require_manager()
        record = manager.state.get("nodes", node_id)  # authorize read it after a barrier
        if not manager.raft.is_member(node_id) and node_id != manager.node.node_id:
            manager.change_membership(True, node_id, record["spec"]["addr"])
            self.host.log(f"manager {node_id} added to the Raft configuration")
        return {"members": [list(m) for m in manager.status().get("members", [])]}

    def keyring_fetch(self, caller: Caller, params: dict[str, Any]) -> Any:
        manager = self.host.require_manager()
        spec = self._cluster()["spec"]
        return {
            "keyring": manager.keys.keyring.to_bytes(),
            "autolock": bool(spec.get("autolock")),
            "unlock_key": spec.get("unlock_key"),
            "kek_version": int(spec.get("kek_version", 1)),
        }

    def heartbeat(self, caller: Caller, params: dict[str, Any]) -> Any:
        node_id = self._caller(caller).node_id
        self.host.heartbeats[node_id] = time.monotonic()
        manager = self.host.require_manager()
        record = manager.state.find("nodes", node_id)
        cluster = manager.state.cluster()
        spec = cluster["spec"] if cluster else None
        renew_now = bool(
            spec
            and spec.get("root_rotation")
            and record is not None
            and record["spec"].get("cert_issuer_key") != signing_key_fingerprint(spec)
        )
        return {
            "desired_role": record["spec"].get("desired_role") if record else None,
            "manager_addrs": self.manager_addresses(),
            "interval": HEARTBEAT_INTERVAL,
            "trust_bundle_pem": trust_bundle(spec) if spec else None,
            "renew_now": renew_now,
        }

    def renew(self, caller: Caller, params: dict[str, Any]) -> Any:
        csr = params.get("csr_pem")
        if not isinstance(csr, bytes):
            raise InvalidArgument("renew needs a CSR")
        identity = self._caller(caller)
        return self.issue_for(identity.node_id, csr, identity)

    def renew_expired(self, caller: Caller, params: dict[str, Any]) -> Any:
        """Renewal without a valid client certificate: the node proves it holds the key of its recorded certificate.

        Only within the grace period after expiry (``renewal_grace``), only for
        a certificate the node's record still lists, never for a removed
        node. Beyond that the node must rejoin, as in Swarm.
        """
        chain, csr, proof = params.get("cert_chain_pem"), params.get("csr_pem"), params.get("proof")
        if not (isinstance(chain, bytes) and isinstance(csr, bytes) and isinstance(proof, bytes)):
            raise InvalidArgument("renew_expired needs the old certificate, a CSR and a proof")
        manager = self.host.require_manager()
        spec = self._cluster("local")["spec"]
        now = self.host.clock.now()
        try:
            old = verify_certificate_chain(chain, trust_bundle(spec), now, allow_expired_leaf=True)
        except InvalidCertificate:
            raise PermissionDenied("permission denied: the certificate is not one of this cluster's") from None
        if old.cluster_id != manager.node.cluster_id or old.role not in (MANAGER_ROLE, WORKER_ROLE):
            raise PermissionDenied("permission denied: the certificate is not one of this cluster's")
        if not verify_possession(chain, csr, proof):
            raise PermissionDenied("permission denied: no proof of the certificate's key")
        grace = renewal_grace(spec)
        if now - old.not_after > grace:
            raise PermissionDenied(
                f"permission denied: the certificate of node {old.node_id} expired more than "
                f"{format_duration(grace)} ago (the renewal grace period); the node must rejoin the cluster"
            )
        if old.node_id in self.removed_nodes():
            raise NodeRemoved(f"node {old.node_id} was removed from the cluster")
        record = manager.read_barrier().find("nodes", old.node_id)
        serials = recorded_serials(record) if record is not None else []
        if serials is not None and old.serial not in serials:
            raise PermissionDenied(
                f"permission denied: this is not the certificate on record for node {old.node_id}; "
                "the node must rejoin the cluster"
            )
        self.host.log(f"renewing the expired certificate of node {old.node_id}")
        return self.issue_for(old.node_id, csr, old)

    def raft_remove(self, caller: Caller, params: dict[str, Any]) -> Any:
        node_id = params.get("node_id")
        if not isinstance(node_id, str):
            raise InvalidArgument("raft.remove needs a node_id")
        remove_manager(self.host.require_manager(), node_id)
        return {"removed": node_id}

    def raft_step_down(self, caller: Caller, params: dict[str, Any]) -> Any:
        manager = self.host.require_manager()
        if manager.status().get("is_leader"):
            manager.raft.transfer_leadership()
        return {}

    def secret_read(self, caller: Caller, params: dict[str, Any]) -> Any:
        return self._read_granted(caller, "secrets", params)

    def config_read(self, caller: Caller, params: dict[str, Any]) -> Any:
        return self._read_granted(caller, "configs", params)

    def _read_granted(self, caller: Caller, table: str, params: dict[str, Any]) -> Any:
        kind = table[:-1]
        ref = params.get(kind)
        if not isinstance(ref, str):
            raise InvalidArgument(f"{kind}.read needs a {kind} name or id")
        state = self.host.require_manager().state  # authorize (node-in-role) read it after a barrier
        return {"data": read_granted(state, table, self._caller(caller).node_id, ref)}

    def assignments(self, caller: Caller, params: dict[str, Any]) -> Any:
        """What is granted to the calling node, once it differs from ``since`` (see ``_delivery``)."""
        from ..node import MAX_POLL_WAIT, wait_for_assignments

        since, wait = params.get("since"), params.get("wait", 0)
        if not (since is None or isinstance(since, str)) or not isinstance(wait, (int, float)) or not isfinite(wait):
            raise InvalidArgument("node.assignments takes since (a tag) and wait (seconds)")
        return wait_for_assignments(self.host, self._caller(caller).node_id, since, min(max(wait, 0), MAX_POLL_WAIT))

    # ------------------------------------------------------------- periodic

    def maintain(self) -> None:
        """Housekeeping that needs the cluster view (called about once a second)."""
        self.membership.run()
        manager = self.host.manager
        if manager is not None and manager.status().get("is_leader"):
            finish_if_converged(manager, self.host.log)
