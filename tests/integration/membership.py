"""What the membership tests check: a healthy voting member, and node records that agree with Raft."""

from __future__ import annotations

import time
from typing import Any

from raftstore.net._cluster_client import call_any_manager
from raftstore.tools._local_cluster import Cluster, Node, wait_until
from raftstore.net._tls import TlsIdentity


def managers(cluster: Cluster, count: int) -> list[Node]:
    nodes = [cluster.add(f"m{i + 1}") for i in range(count)]
    cluster.init(nodes[0])
    for node in nodes[1:]:
        cluster.join(node, nodes[0], "manager")
    for node in nodes:
        wait_until(lambda n=node: n.info()["managers"] == count, what=f"{node.name} sees {count} managers")
    # The records say manager before the Raft configuration may; a test that stops a member to deny the
    # leader its quorum needs the configuration to hold every member first.
    ids = {node_id(n) for n in nodes}
    for node in nodes:
        wait_until(lambda n=node: raft_members(n.info()) == ids, what=f"{node.name}'s Raft configuration holds all {count}")
    return nodes


def node_id(node: Node) -> str:
    return str(node.info()["node_id"])


def raft_members(info: dict[str, Any]) -> set[str]:
    return {m["node_id"] for m in (info.get("raft") or {}).get("members", [])}


def running(nodes: list[Node]) -> list[Node]:
    return [n for n in nodes if n.process is not None and n.process.poll() is None]


def leader_info(nodes: list[Node]) -> dict[str, Any] | None:
    """The info of the one running manager that leads, or None."""
    for node in running(nodes):
        result = node.run("info", "--format", "json", check=False, timeout=30)
        if result.returncode == 0 and result.json.get("is_leader"):
            return dict(result.json, name=node.name)
    return None


def records_agree_with_raft(via: Node, nodes: list[Node]) -> str | None:
    """None when the leader's Raft configuration is exactly the managers on record, else what differs."""
    info = leader_info(nodes)
    if info is None:
        return "no leader"
    rows = via.run("node", "ls", "--format", "json", timeout=30).json
    on_record = {r["id"] for r in rows if r["role"] == "manager"}
    members = raft_members(info)
    if on_record != members:
        return f"records name managers {sorted(on_record)}, the leader's Raft has {sorted(members)}"
    return None


def healthy_voting_member(x: Node, nodes: list[Node], key: str) -> bool:
    """True, or raise unless ``x`` is a manager in the leader's member list, following its commits and serving reads."""
    x_info = x.info()
    assert x_info["state"] == "manager" and x_info["role"] == "manager", f"{x.name} is {x_info['state']}"
    leader = leader_info(nodes)
    assert leader is not None, "no leader"
    assert x_info["node_id"] in raft_members(leader), f"{x.name} is not in the leader's configuration"
    assert x_info["leader"] == leader["node_id"], f"{x.name} follows {x_info['leader']}, not {leader['node_id']}"
    writer = next(n for n in running(nodes) if n.name == leader["name"])
    value = f"{key}-{time.monotonic_ns()}"
    writer.run("kv", "put", key, value, timeout=30)
    committed = writer.info()["raft"]["commit_index"]
    wait_until(lambda: x.info()["raft"]["commit_index"] >= committed, timeout=10,
               what=f"{x.name}'s commit index reaches {committed}")
    got = x.run("kv", "get", key, check=False, timeout=30)
    assert got.returncode == 0 and got.stdout == value + "\n", f"linearizable get on {x.name}: {got.stderr}"
    return True


def node_api_call(caller: Node, target: Node, method: str, params: dict[str, Any]) -> Any:
    """Call ``target``'s node API (cluster port) as ``caller``, with the certificate and key on its disk."""
    certs = caller.data_dir / "certificates"
    identity = TlsIdentity((certs / "swarm-node.crt").read_bytes(), (certs / "swarm-node.key").read_bytes(),
                           (certs / "swarm-root-ca.crt").read_bytes())
    return call_any_manager([target.addr], method, params, trusted_roots_pem=identity.trusted_roots_pem,
                            identity=identity, cluster_id=caller.info()["cluster_id"])
