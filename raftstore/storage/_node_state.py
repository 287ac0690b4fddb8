"""``state.json``: what this node is. Nothing secret lives here.

The file is small, written atomically, and read at every start to decide
whether the daemon is inactive, a manager (possibly locked) or a worker.
"""

from __future__ import annotations

import json
from enum import StrEnum
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..keyring import StorageError
from ._fsutil import atomic_write

__all__ = ["NodeState", "StatePaths", "Role"]


class Role(StrEnum):
    """What a node is in the cluster, as its node record and ``state.json`` say.

    Not to be confused with the certificate's OU (keyring's ``MANAGER_ROLE``,
    ``swarm-manager``), which a manager issues to match the record, nor with
    the daemon's mode (node's ``Mode``), which says what this process runs now.
    The values are stored and sent as plain strings.
    """

    MANAGER = "manager"
    WORKER = "worker"


@dataclass(frozen=True)
class StatePaths:
    """The data directory layout of DESIGN.md."""

    root: Path

    @property
    def raft(self) -> Path:
        return self.root / "raft"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def certificates(self) -> Path:
        return self.root / "certificates"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def socket(self) -> Path:
        return self.root / "raftstore.sock"

    @property
    def root_ca(self) -> Path:
        return self.certificates / "swarm-root-ca.crt"

    @property
    def node_cert(self) -> Path:
        return self.certificates / "swarm-node.crt"

    @property
    def node_key(self) -> Path:
        return self.certificates / "swarm-node.key"

    @property
    def lock_file(self) -> Path:
        """Held (flock) by the daemon serving this directory, for its whole life."""
        return self.root / "raftstore.lock"

    def create(self) -> None:
        for directory in (self.root, self.raft, self.keys, self.certificates):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)


@dataclass(frozen=True)
class NodeState:
    cluster_id: str
    node_id: str
    role: str  # manager | worker
    listen_addr: str
    advertise_addr: str
    # The Raft configuration this node started its log with (managers).
    bootstrap_members: list[list[str]] = field(default_factory=list)
    # Managers this node knows how to reach (workers use them for renewals and reads).
    manager_addrs: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def sole_manager(cls, cluster_id: str, node_id: str, listen_addr: str, advertise_addr: str) -> "NodeState":
        """A manager whose Raft log starts with itself alone (init, restore from a backup)."""
        return cls(
            cluster_id=cluster_id,
            node_id=node_id,
            role=Role.MANAGER,
            listen_addr=listen_addr,
            advertise_addr=advertise_addr,
            bootstrap_members=[[node_id, advertise_addr]],
            manager_addrs=[advertise_addr],
        )

    @classmethod
    def load(cls, path: Path) -> "NodeState | None":
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            data: dict[str, Any] = json.loads(raw)
            return cls(
                cluster_id=str(data["cluster_id"]),
                node_id=str(data["node_id"]),
                role=str(data["role"]),
                listen_addr=str(data["listen_addr"]),
                advertise_addr=str(data["advertise_addr"]),
                bootstrap_members=[list(m) for m in data.get("bootstrap_members", [])],
                manager_addrs=[str(a) for a in data.get("manager_addrs", [])],
            )
        except (ValueError, KeyError, TypeError):
            raise StorageError(f"{path} is damaged; it is not the node state this daemon wrote") from None

    def save(self, path: Path) -> None:
        atomic_write(path, self.to_json(), mode=0o600)

    def replace(self, **changes: Any) -> "NodeState":
        data = asdict(self)
        data.update(changes)
        return NodeState(**data)
