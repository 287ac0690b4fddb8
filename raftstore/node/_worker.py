"""A worker: a member of the cluster that takes no part in Raft.

It holds its certificate and key, reports to the managers every few seconds
(so that ``node ls`` shows it ready) and learns from their answers which
managers exist and whether it has been removed.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from ..keyring import NodeRemoved, RaftstoreError
from ..net import TlsIdentity, call_any_manager
from ..storage import NodeState, StatePaths

__all__ = ["WorkerAgent"]


class WorkerAgent:
    """The heartbeat thread and this worker's mutual-TLS identity.

    What a heartbeat's answer asks of the node is handed back through the
    callables: ``trust_bundle`` (the cluster's roots changed), ``renew_now``
    (a CA rotation wants a new certificate) and ``node_changed`` (the list of
    managers changed; ``state.json`` is already saved).
    """

    def __init__(
        self,
        node: NodeState,
        node_key_pem: bytes,
        paths: StatePaths,
        *,
        log: Callable[[str], None],
        trust_bundle: Callable[[bytes], None],
        renew_now: Callable[[], None],
        node_changed: Callable[[NodeState], None],
    ) -> None:
        self.paths = paths
        self._log = log
        self._trust_bundle = trust_bundle
        self._renew_now = renew_now
        self._node_changed = node_changed
        self.node = node
        self._node_key_pem = node_key_pem
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.removed = False
        self.last_error: str | None = None
        self.interval = 5.0
        self.desired_role: str | None = None

    def identity(self) -> TlsIdentity:
        paths = self.paths
        return TlsIdentity(
            cert_chain_pem=paths.node_cert.read_bytes(),
            key_pem=self._node_key_pem,
            trusted_roots_pem=paths.root_ca.read_bytes(),
        )

    def set_key(self, key_pem: bytes) -> None:
        self._node_key_pem = key_pem

    def call(self, method: str, params: dict[str, Any], timeout: float = 15.0) -> Any:
        """Call the first reachable manager over this node's mutual-TLS identity."""
        return call_any_manager(
            list(self.node.manager_addrs),
            method,
            params,
            trusted_roots_pem=self.paths.root_ca.read_bytes(),
            identity=self.identity(),
            cluster_id=self.node.cluster_id,
            timeout=timeout,
        )

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="worker-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.beat()
            self._stopping.wait(self.interval)

    def _beat_all(self) -> Any:
        """Report to every manager (each keeps its own view of who is up); return one reply."""
        reply: Any = None
        failure: RaftstoreError | None = None
        for address in list(self.node.manager_addrs):
            try:
                answer = call_any_manager(
                    [address],
                    "node.heartbeat",
                    {},
                    trusted_roots_pem=self.paths.root_ca.read_bytes(),
                    identity=self.identity(),
                    cluster_id=self.node.cluster_id,
                    timeout=3.0,
                )
                reply = reply or answer
            except NodeRemoved:
                raise
            except RaftstoreError as error:
                failure = error
        if reply is None:
            raise failure or RaftstoreError("no manager address is known")
        return reply

    def beat(self) -> None:
        if self.removed:
            return
        try:
            reply = self._beat_all()
        except NodeRemoved as error:
            self.removed = True
            self.last_error = str(error)
            self._log(f"{error}; this worker no longer takes part")
            return
        except RaftstoreError as error:
            if self.last_error != str(error):
                self._log(f"heartbeat failed: {error}")
            self.last_error = str(error)
            return
        self.last_error = None
        reply = reply or {}
        self.desired_role = reply.get("desired_role")
        bundle = reply.get("trust_bundle_pem")
        if isinstance(bundle, bytes):
            self._trust_bundle(bundle)
        if reply.get("renew_now"):
            self._renew_now()
        addrs = [str(a) for a in (reply or {}).get("manager_addrs", []) if isinstance(a, str)]
        if addrs and addrs != self.node.manager_addrs:
            self.node = self.node.replace(manager_addrs=addrs)
            self.node.save(self.paths.state_file)
            self._node_changed(self.node)
