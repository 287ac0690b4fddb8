"""Keeping the Raft configuration equal to the node records, on the leader.

The node records say who should be a manager (``spec.role``, set by ``node
promote``/``demote``, joins and removals); the Raft configuration says who
votes. An operator's command changes the record and then tries to change Raft
at once, but a race (a promote while the demote is still taking the node out
of Raft), a crash or a leader change can leave the two apart, and nothing on
the node's side can add a manager that Raft has forgotten. So, about once a
second, the leader compares them and repairs the difference:

- a member whose record does not say manager (demoted, removed, unknown)
  leaves Raft, if the managers left would still be a reachable quorum; if it
  is the leader itself, it hands leadership over first (pysyncobj cannot
  remove the leader) and the next leader removes it;
- a manager on record that Raft lacks is added once it answers on its cluster
  port as a running manager (a node still on its way from worker to manager
  answers only once its Raft is up), if the larger configuration keeps a
  reachable quorum.

The leader acts only on what it has applied after a barrier of its own term,
so a new leader never repairs from a stale view.

Rebuilding a one-manager configuration (``init --force-new-cluster``, a
restore from a backup) leaves the other managers' records behind; those
nodes carry another history and must join again, never be added back.
``demote_absent_managers`` turns their records into workers' first, and the
reconciler adds nothing while ``hold`` says a rebuild is under way.

Taking a manager out of Raft (``remove_manager``) lives here too, with its
quorum check: an operator's demote or removal, a manager leaving, and the
reconciler all do it the same way. pysyncobj cannot remove the leader from the
configuration, so removing the leader first hands leadership to a caught-up
follower.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol

from ..keyring import InvalidArgument, NoQuorum, RaftstoreError
from ..net import ClusterClient, call_any_manager
from ..storage import Role

if TYPE_CHECKING:
    from ._manager import Manager
    from ..state import StateMachine

__all__ = ["MembershipReconciler", "ManagerHost", "demote_absent_managers", "managers_on_record",
           "quorum_after_addition", "check_quorum_after_removal", "remove_manager", "ask_managers"]

#: How long a probe of a missing manager's cluster port may take.
PROBE_TIMEOUT = 1.0
#: How often a repair is tried for one node (a missing manager probed, a member removed).
RETRY_INTERVAL = 2.0


def managers_on_record(state: "StateMachine") -> dict[str, str]:
    """Node id -> address of every node whose record says manager and that was not removed."""
    cluster = state.cluster()
    removed = set(cluster["spec"].get("removed_nodes", [])) if cluster else set()
    return {
        r["id"]: str(r["spec"].get("addr", ""))
        for r in state.list("nodes")
        if r["spec"].get("role") == Role.MANAGER and r["id"] not in removed
    }


def quorum_after_addition(manager: "Manager", node_id: str) -> None:
    """Refuse an addition after which fewer managers than a quorum would be reachable.

    The node being added counts as reachable: it has just answered.
    """
    status = manager.status()
    members = [i for i, _ in status.get("members", [])]
    connected = set(status.get("connected", []))
    reachable = 1 + sum(1 for m in members if m == manager.node.node_id or m in connected)
    needed = (len(members) + 1) // 2 + 1
    if reachable < needed:
        raise InvalidArgument(
            f"can't add manager {node_id} to Raft: {reachable} of {len(members) + 1} managers would be reachable, "
            f"and a quorum needs {needed}"
        )


def check_quorum_after_removal(manager: "Manager", node_id: str) -> None:
    """Refuse a removal that would leave fewer reachable managers than a quorum."""
    status = manager.status()
    members = [i for i, _ in status.get("members", [])]
    if node_id not in members:
        return
    remaining = [m for m in members if m != node_id]
    if not remaining:
        raise InvalidArgument("can't remove the last manager of the cluster")
    connected = set(status.get("connected", []))
    reachable = [m for m in remaining if m == manager.node.node_id or m in connected]
    needed = len(remaining) // 2 + 1
    if len(reachable) < needed:
        raise InvalidArgument(
            f"can't remove node {node_id}: it would leave {len(reachable)} reachable manager(s) of "
            f"{len(remaining)}, and a quorum needs {needed}"
        )


def ask_managers(manager: "Manager", addresses: list[str], method: str, params: dict[str, Any],
                 timeout: float = 15.0) -> Any:
    """Call the first reachable of ``addresses`` as this manager: its certificate, the roots on disk now."""
    return call_any_manager(
        addresses,
        method,
        params,
        trusted_roots_pem=manager.paths.root_ca.read_bytes(),
        identity=manager.tls_identity(),
        cluster_id=manager.node.cluster_id,
        timeout=timeout,
    )


def remove_manager(manager: "Manager", node_id: str, timeout: float = 20.0) -> None:
    """Take ``node_id`` out of the Raft configuration, moving leadership off it first."""
    me = manager.node.node_id
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = manager.status()
        members = dict((i, a) for i, a in status.get("members", []))
        if node_id not in members:
            return
        leader = status.get("leader")
        if leader is None:
            time.sleep(0.2)
            continue
        if leader == node_id:
            if node_id == me:
                manager.raft.transfer_leadership()
            else:
                try:  # the leader itself: any other manager would just say it does not lead
                    ask_managers(manager, [members[node_id]], "raft.step_down", {"node_id": node_id})
                except RaftstoreError:
                    pass
            _wait(lambda: manager.status().get("leader") not in (None, node_id), 5.0)
            continue
        if node_id == me:
            # Ask another manager: a node cannot propose its own removal to itself.
            others = [a for i, a in manager.status().get("members", []) if i != me]
            ask_managers(manager, others, "raft.remove", {"node_id": node_id})
        else:
            manager.change_membership(False, node_id, members[node_id], timeout=max(1.0, deadline - time.monotonic()))
        return
    raise NoQuorum(f"manager {node_id} could not be removed from the Raft configuration in time")


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def demote_absent_managers(manager: "Manager") -> list[str]:
    """After a one-manager rebuild: every other manager on record becomes a worker on record; returns their ids."""
    state = manager.read_barrier()
    me = manager.node.node_id
    others = [r for r in state.list("nodes") if r["id"] != me and r["spec"].get("role") == Role.MANAGER]
    if others:
        manager.propose([
            {"op": "update", "table": "nodes", "id": r["id"], "version": r["version"],
             "spec": dict(r["spec"], role=Role.WORKER, desired_role=Role.WORKER)}
            for r in others
        ])
    return [r["id"] for r in others]


class ManagerHost(Protocol):
    """What the reconciler needs of the node that runs it (the daemon is one)."""

    @property
    def manager(self) -> "Manager | None":
        """The running manager, or None while this node runs none."""

    def log(self, message: str) -> None:
        """Write one event line."""


class MembershipReconciler:
    """Repairs the difference between node records and the Raft configuration (leader only; see the module doc)."""

    def __init__(self, host: ManagerHost) -> None:
        self.host = host
        self._tried: dict[str, float] = {}
        self._said: dict[str, str] = {}
        self._holds = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """A context in which the reconciler changes nothing (a one-manager rebuild is under way)."""
        with self._lock:
            self._holds += 1
        try:
            yield
        finally:
            with self._lock:
                self._holds -= 1

    def run(self) -> None:
        """One pass; called about once a second by the daemon's maintenance loop."""
        manager = self.host.manager
        if manager is None or self._holds or not manager.status().get("is_leader"):
            return
        removes, adds = self._differences(manager, manager.state)
        if not self._due(removes + [node_id for node_id, _ in adds]):
            return
        try:
            state = manager.read_barrier()  # act on everything committed, not on a new leader's stale view
        except RaftstoreError:
            return  # no quorum now: a later pass tries again
        removes, adds = self._differences(manager, state)
        for node_id in self._due(removes):
            self._tried[node_id] = time.monotonic()
            self._remove(manager, node_id)
        for node_id, address in adds:
            if node_id in self._due([node_id]) and not self._holds:
                self._tried[node_id] = time.monotonic()
                self._add(manager, node_id, address)

    def _due(self, node_ids: list[str]) -> list[str]:
        """The nodes not tried in the last ``RETRY_INTERVAL`` (a repair that must wait costs no barrier a second)."""
        now = time.monotonic()
        return [n for n in node_ids if now - self._tried.get(n, 0.0) >= RETRY_INTERVAL]

    @staticmethod
    def _differences(manager: "Manager", state: "StateMachine") -> tuple[list[str], list[tuple[str, str]]]:
        wanted = managers_on_record(state)
        members = dict(manager.status().get("members", []))
        removes = sorted(m for m in members if m not in wanted)
        adds = sorted((i, a) for i, a in wanted.items() if i not in members and a)
        if manager.node.node_id in removes and state.find("nodes", manager.node.node_id) is None:
            removes.remove(manager.node.node_id)  # our own record is not written yet (a restore): wait for it
        return removes, adds

    def _remove(self, manager: "Manager", node_id: str) -> None:
        if node_id == manager.node.node_id:
            self.host.log("this manager's record no longer says manager: handing leadership over")
            manager.raft.transfer_leadership()
            return
        try:
            check_quorum_after_removal(manager, node_id)
            remove_manager(manager, node_id, timeout=5.0)
            self.host.log(f"manager {node_id} is no longer a manager on record: removed from Raft")
        except RaftstoreError as error:
            self._say(node_id, f"cannot remove {node_id} from Raft yet: {error}")

    def _add(self, manager: "Manager", node_id: str, address: str) -> None:
        if not self._running_manager(manager, node_id, address):
            return
        try:
            quorum_after_addition(manager, node_id)
            if not manager.raft.is_member(node_id):
                manager.change_membership(True, node_id, address, timeout=5.0)
                self.host.log(f"manager {node_id} on record was missing from Raft: added back")
        except RaftstoreError as error:
            self._say(node_id, f"cannot add manager {node_id} to Raft yet: {error}")

    def _say(self, node_id: str, message: str) -> None:
        """Log why a repair waits, once per reason (the pass repeats every second)."""
        if self._said.get(node_id) != message:
            self._said[node_id] = message
            self.host.log(message)

    def _running_manager(self, manager: "Manager", node_id: str, address: str) -> bool:
        """Whether ``node_id`` answers at ``address`` as a running manager of this cluster."""
        try:
            with _probe(manager, address) as client:
                return client.server.node_id == node_id
        except RaftstoreError:
            return False


def _probe(manager: "Manager", address: str) -> ClusterClient:
    identity = manager.tls_identity()
    return ClusterClient(address, trusted_roots_pem=identity.trusted_roots_pem, identity=identity,
                         cluster_id=manager.node.cluster_id, timeout=PROBE_TIMEOUT)
