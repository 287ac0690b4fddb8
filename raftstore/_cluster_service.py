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
``raft.remove``      a manager: take a manager out of the Raft configuration
``raft.step_down``   a manager: hand leadership to a caught-up follower
===================  =========================================================

A node that was removed is refused with ``node <id> was removed from the
cluster``, whatever its certificate says.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable

from ._bootstrap import node_record_action
from .keyring import (
    MANAGER_ROLE,
    WORKER_ROLE,
    CertificateIdentity,
    InvalidArgument,
    InvalidJoinToken,
    NodeRemoved,
    NoQuorum,
    PermissionDenied,
    RaftstoreError,
    RootCA,
    issue_certificate,
    new_id,
    tokens_equal,
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
            "raft.remove": self.raft_remove,
            "raft.step_down": self.raft_step_down,
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
        return {"root_ca_pem": self.daemon.paths.root_ca.read_bytes()}

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
        root = RootCA(cert_pem=spec["root_ca"]["cert_pem"], key_pem=spec["root_ca"]["key_pem"])
        chain = issue_certificate(
            root,
            csr,
            node_id=node_id,
            cluster_id=manager.node.cluster_id,
            role=role,
            now=self.daemon.clock.now(),
            validity=timedelta(seconds=int(spec["cert_expiry_seconds"])),
            intermediates_pem=spec["root_ca"].get("cross_signed_pem") or b"",
        )
        hostname = str(params.get("hostname") or "")[:255]
        manager.propose([node_record_action(node_id, "manager" if is_manager else "worker", addr, hostname)])
        self.daemon.log(f"node {node_id} joined as {'manager' if is_manager else 'worker'} from {addr}")
        status = manager.status()
        return {
            "node_id": node_id,
            "cluster_id": manager.node.cluster_id,
            "role": role,
            "cert_chain_pem": chain,
            "members": [list(m) for m in status.get("members", [])],
            "manager_addrs": self.manager_addresses(),
        }

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
        return {
            "desired_role": record["spec"].get("desired_role") if record else None,
            "manager_addrs": self.manager_addresses(),
            "interval": HEARTBEAT_INTERVAL,
        }

    def renew(self, identity: CertificateIdentity | None, params: dict[str, Any]) -> Any:
        caller = self._member(identity, MANAGER_ROLE, WORKER_ROLE)
        csr = params.get("csr_pem")
        if not isinstance(csr, bytes):
            raise InvalidArgument("renew needs a CSR")
        manager = self.daemon.require_manager()
        state = manager.read_barrier()
        record = state.find("nodes", caller.node_id)
        if record is None:
            raise NodeRemoved(f"node {caller.node_id} was removed from the cluster")
        spec = self._cluster("local")["spec"]
        role = MANAGER_ROLE if record["spec"].get("role") == "manager" else WORKER_ROLE
        root = RootCA(cert_pem=spec["root_ca"]["cert_pem"], key_pem=spec["root_ca"]["key_pem"])
        chain = issue_certificate(
            root,
            csr,
            node_id=caller.node_id,
            cluster_id=manager.node.cluster_id,
            role=role,
            now=self.daemon.clock.now(),
            validity=timedelta(seconds=int(spec["cert_expiry_seconds"])),
            intermediates_pem=spec["root_ca"].get("cross_signed_pem") or b"",
        )
        status = manager.status()
        return {
            "cert_chain_pem": chain,
            "role": role,
            "members": [list(m) for m in status.get("members", [])],
            "manager_addrs": self.manager_addresses(),
        }

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

    # ------------------------------------------------------------- periodic

    def maintain(self) -> None:
        """Housekeeping that needs the cluster view (called about once a second)."""
        self._remove_demoted_members()

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
