"""The node-to-manager API, served on the cluster port of every manager.

Who may call what (checked per request, from the verified certificate):

===================  =========================================================
``ca.get``           anyone (the caller checks the digest in its join token)
``join``             anyone holding a valid join token
``raft.join``        a manager of this cluster whose node record says manager
``keyring.fetch``    the same: DEKs and the unlock key go to managers only
``node.heartbeat``   any node of this cluster
``node.renew``       any node of this cluster: a new certificate for the key in
                     its CSR, with the role its node record names
``node.renew_expired``  anyone holding the key of an (expired) certificate of
                     this cluster, proved by a signature over the CSR
``raft.remove``      a manager: take a manager out of the Raft configuration
``raft.step_down``   a manager: hand leadership to a caught-up follower
``secret.read``      any node of this cluster: a secret granted to that node
===================  =========================================================

A node that was removed is refused with ``node <id> was removed from the
cluster``, whatever its certificate says.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable

from ._bootstrap import node_record_action
from ._ca_rotation import finish_if_converged, signing_key_fingerprint, signing_root, trust_bundle
from .keyring import (
    MANAGER_ROLE,
    WORKER_ROLE,
    CertificateIdentity,
    InvalidArgument,
    InvalidCertificate,
    InvalidJoinToken,
    NodeRemoved,
    NoQuorum,
    PermissionDenied,
    RaftstoreError,
    UpdateOutOfSequence,
    certificate_identity,
    issue_certificate,
    new_id,
    tokens_equal,
    verify_certificate_chain,
    verify_possession,
)

if TYPE_CHECKING:
    from ._daemon import Daemon

__all__ = ["ClusterService"]

HEARTBEAT_INTERVAL = 5.0


class ClusterService:
    def __init__(self, daemon: "Daemon") -> None:
        self.daemon = daemon
        self._methods: dict[str, Callable[[CertificateIdentity | None, dict[str, Any]], Any]] = {
            "ca.get": self.ca_get,
            "join": self.join,
            "raft.join": self.raft_join,
            "keyring.fetch": self.keyring_fetch,
            "node.heartbeat": self.heartbeat,
            "node.renew": self.renew,
            "node.renew_expired": self.renew_expired,
            "raft.remove": self.raft_remove,
            "raft.step_down": self.raft_step_down,
            "secret.read": self.secret_read,
        }

    def handle(self, identity: CertificateIdentity | None, method: str, params: dict[str, Any]) -> Any:
        handler = self._methods.get(method)
        if handler is None:
            raise InvalidArgument(f"unknown method {method!r}")
        return handler(identity, params)

    # ------------------------------------------------------------- helpers

    def _cluster(self, consistency: str = "linearizable") -> dict[str, Any]:
        state = self.daemon.require_manager().read_barrier(consistency)
        cluster = state.cluster()
        if cluster is None:
            raise NoQuorum("the cluster object is not committed yet")
        return cluster

    def removed_nodes(self) -> set[str]:
        manager = self.daemon.manager
        cluster = manager.state.cluster() if manager is not None else None
        return set(cluster["spec"].get("removed_nodes", [])) if cluster else set()

    def _member(self, identity: CertificateIdentity | None, *roles: str) -> CertificateIdentity:
        """The caller, if it is a node of this cluster with one of ``roles`` and not removed."""
        node = self.daemon.node
        if identity is None or node is None or identity.cluster_id != node.cluster_id:
            raise PermissionDenied("a certificate of this cluster is required")
        if identity.node_id in self.removed_nodes():
            raise NodeRemoved(f"node {identity.node_id} was removed from the cluster")
        if identity.role not in roles:
            raise PermissionDenied(f"permission denied: {identity.role} nodes may not do this")
        return identity

    def _manager_record(self, identity: CertificateIdentity) -> dict[str, Any]:
        state = self.daemon.require_manager().read_barrier()
        record = state.find("nodes", identity.node_id)
        if record is None or record["spec"].get("role") != "manager":
            raise PermissionDenied("permission denied: this node is not a manager in the store")
        return record

    # ------------------------------------------------------------- methods

    def ca_get(self, identity: CertificateIdentity | None, params: dict[str, Any]) -> Any:
        # The current root alone (not the rotation bundle): join tokens carry its digest.
        return {"root_ca_pem": self._cluster("local")["spec"]["root_ca"]["cert_pem"]}

    def join(self, identity: CertificateIdentity | None, params: dict[str, Any]) -> Any:
        manager = self.daemon.require_manager()
        token = params.get("token")
        csr = params.get("csr_pem")
        addr = params.get("addr")
        if not isinstance(token, str) or not isinstance(csr, bytes) or not isinstance(addr, str):
            raise InvalidArgument("join needs a token, a CSR and an address")
        spec = self._cluster()["spec"]
        is_manager = tokens_equal(token, spec["join_tokens"]["manager"])
        is_worker = tokens_equal(token, spec["join_tokens"]["worker"])
        if not (is_manager or is_worker):
            raise InvalidJoinToken()
        role = MANAGER_ROLE if is_manager else WORKER_ROLE
        node_id = new_id()
        chain = self._sign(spec, csr, node_id, role)
        hostname = str(params.get("hostname") or "")[:255]
        record = node_record_action(node_id, "manager" if is_manager else "worker", addr, hostname)
        record["spec"].update(self._cert_fields(spec, chain))
        manager.propose([record])
        self.daemon.log(f"node {node_id} joined as {'manager' if is_manager else 'worker'} from {addr}")
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
        root, intermediates = signing_root(spec)
        return issue_certificate(
            root,
            csr,
            node_id=node_id,
            cluster_id=self.daemon.require_manager().node.cluster_id,
            role=role,
            now=self.daemon.clock.now(),
            validity=timedelta(seconds=int(spec["cert_expiry_seconds"])),
            intermediates_pem=intermediates,
        )

    @staticmethod
    def _cert_fields(spec: dict[str, Any], chain: bytes) -> dict[str, Any]:
        identity = certificate_identity(chain)
        return {"cert_issuer_key": signing_key_fingerprint(spec), "cert_not_after": identity.not_after.isoformat()}

    def issue_for(self, node_id: str, csr: bytes) -> dict[str, Any]:
        """A certificate for ``node_id``'s new key, with the role its record names; recorded in the store."""
        manager = self.daemon.require_manager()
        for attempt in range(5):
            state = manager.read_barrier()
            record = state.find("nodes", node_id)
            if record is None or node_id in self.removed_nodes():
                raise NodeRemoved(f"node {node_id} was removed from the cluster")
            spec = self._cluster("local")["spec"]
            role = MANAGER_ROLE if record["spec"].get("role") == "manager" else WORKER_ROLE
            chain = self._sign(spec, csr, node_id, role)
            node_spec = dict(record["spec"], **self._cert_fields(spec, chain))
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
        manager = self.daemon.require_manager()
        return [address for _, address in manager.status().get("members", [])]

    def raft_join(self, identity: CertificateIdentity | None, params: dict[str, Any]) -> Any:
        caller = self._member(identity, MANAGER_ROLE)
        record = self._manager_record(caller)
        manager = self.daemon.require_manager()
        if not manager.raft.is_member(caller.node_id) and caller.node_id != manager.node.node_id:
            manager.change_membership(True, caller.node_id, record["spec"]["addr"])
            self.daemon.log(f"manager {caller.node_id} added to the Raft configuration")
        return {"members": [list(m) for m in manager.status().get("members", [])]}

    def keyring_fetch(self, identity: CertificateIdentity | None, params: dict[str, Any]) -> Any:
        caller = self._member(identity, MANAGER_ROLE)
        self._manager_record(caller)
        manager = self.daemon.require_manager()
        spec = self._cluster()["spec"]
        return {
            "keyring": manager.keys.keyring.to_bytes(),
            "autolock": bool(spec.get("autolock")),
            "unlock_key": spec.get("unlock_key"),
            "kek_version": int(spec.get("kek_version", 1)),
        }

    def heartbeat(self, identity: CertificateIdentity | None, params: dict[str, Any]) -> Any:
        caller = self._member(identity, MANAGER_ROLE, WORKER_ROLE)
        self.daemon.heartbeats[caller.node_id] = time.monotonic()
        manager = self.daemon.require_manager()
        record = manager.state.find("nodes", caller.node_id)
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

    def renew(self, identity: CertificateIdentity | None, params: dict[str, Any]) -> Any:
        caller = self._member(identity, MANAGER_ROLE, WORKER_ROLE)
        csr = params.get("csr_pem")
        if not isinstance(csr, bytes):
            raise InvalidArgument("renew needs a CSR")
        return self.issue_for(caller.node_id, csr)

    def renew_expired(self, identity: CertificateIdentity | None, params: dict[str, Any]) -> Any:
        """Renewal without a valid client certificate: the node proves it holds the old key."""
        chain, csr, proof = params.get("cert_chain_pem"), params.get("csr_pem"), params.get("proof")
        if not all(isinstance(v, bytes) for v in (chain, csr, proof)):
            raise InvalidArgument("renew_expired needs the old certificate, a CSR and a proof")
        manager = self.daemon.require_manager()
        spec = self._cluster("local")["spec"]
        try:
            old = verify_certificate_chain(chain, trust_bundle(spec), self.daemon.clock.now(), allow_expired_leaf=True)
        except InvalidCertificate:
            raise PermissionDenied("permission denied: the certificate is not one of this cluster's") from None
        if old.cluster_id != manager.node.cluster_id or old.role not in (MANAGER_ROLE, WORKER_ROLE):
            raise PermissionDenied("permission denied: the certificate is not one of this cluster's")
        if not verify_possession(chain, csr, proof):
            raise PermissionDenied("permission denied: no proof of the certificate's key")
        self.daemon.log(f"renewing the expired certificate of node {old.node_id}")
        return self.issue_for(old.node_id, csr)

    def raft_remove(self, identity: CertificateIdentity | None, params: dict[str, Any]) -> Any:
        self._member(identity, MANAGER_ROLE)
        node_id = params.get("node_id")
        if not isinstance(node_id, str):
            raise InvalidArgument("raft.remove needs a node_id")
        from ._roles import remove_manager

        remove_manager(self.daemon, node_id)
        return {"removed": node_id}

    def raft_step_down(self, identity: CertificateIdentity | None, params: dict[str, Any]) -> Any:
        self._member(identity, MANAGER_ROLE)
        manager = self.daemon.require_manager()
        if manager.status().get("is_leader"):
            manager.raft.transfer_leadership()
        return {}

    def secret_read(self, identity: CertificateIdentity | None, params: dict[str, Any]) -> Any:
        from ._object_methods import read_granted_secret

        caller = self._member(identity, MANAGER_ROLE, WORKER_ROLE)
        ref = params.get("secret")
        if not isinstance(ref, str):
            raise InvalidArgument("secret.read needs a secret name or id")
        state = self.daemon.require_manager().read_barrier()
        return {"data": read_granted_secret(state, caller.node_id, ref)}

    # ------------------------------------------------------------- periodic

    def maintain(self) -> None:
        """Housekeeping that needs the cluster view (called about once a second)."""
        self._remove_demoted_members()
        manager = self.daemon.manager
        if manager is not None and manager.status().get("is_leader"):
            finish_if_converged(self.daemon)

    def _remove_demoted_members(self) -> None:
        """On the leader: Raft members whose node record no longer says manager leave Raft."""
        manager = self.daemon.manager
        if manager is None or not manager.status().get("is_leader"):
            return
        from ._roles import check_quorum_after_removal, remove_manager

        for node_id, _ in manager.status().get("members", []):
            if node_id == manager.node.node_id:
                continue
            record = manager.state.find("nodes", node_id)
            if record is not None and record["spec"].get("role") == "manager":
                continue
            try:
                check_quorum_after_removal(manager, node_id)
                remove_manager(self.daemon, node_id, timeout=5.0)
                self.daemon.log(f"manager {node_id} is no longer a manager in the store: removed from Raft")
            except RaftstoreError as error:
                self.daemon.log(f"cannot remove demoted manager {node_id} from Raft yet: {error}")
