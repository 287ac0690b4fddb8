"""Finding 4: the remote control API takes only current, unrevoked admin client certificates.

The attacker holds the certificate and key of a manager that was removed with
``node rm --force`` (or of a worker, or of a manager that is still current:
node keys live on machines that must not control the cluster), or an admin
client certificate that the operator revoked. Each is refused with
``permission denied: ...`` and changes nothing; a current ``ca issue-client``
certificate is accepted.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from authz_wire import call, cluster_api, control_call, files_identity, node_identity, raft_channel, serial_of

from raftstore.tools._local_cluster import Cluster, free_port

pytestmark = pytest.mark.integration


def _refused(reply: dict) -> bool:
    return (not reply["ok"] and reply["error"]["code"] == "PermissionDenied"
            and reply["error"]["message"].startswith("permission denied: "))


def test_removed_manager_worker_and_revoked_client_are_refused(cluster: Cluster, tmp_path: Path) -> None:
    m1, m2, m3, w1 = (cluster.add(n) for n in ("m1", "m2", "m3", "w1"))
    cluster.init(m1)
    cluster.join(m2, m1, "manager")
    cluster.join(m3, m1, "manager")
    cluster.join(w1, m1, "worker")
    removed_manager, worker, current_manager = node_identity(m2), node_identity(w1), node_identity(m1)
    operator, revoked, server = tmp_path / "operator", tmp_path / "revoked", tmp_path / "server"
    for directory in (operator, revoked):
        m1.run("ca", "issue-client", "--out", str(directory), "--name", directory.name)
    m1.run("ca", "issue-server", "--san", "127.0.0.1", "--out", str(server))
    m2_id = m2.info()["node_id"]
    m2.kill(signal.SIGKILL)
    m1.run("node", "rm", "--force", m2_id)

    port = free_port()
    m1.stop()
    m1.start(["-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", str(server / "ca.pem"),
              "--tlscert", str(server / "cert.pem"), "--tlskey", str(server / "key.pem")])
    m1.run("update", "--autolock=true")
    before = m1.run("kv", "ls", "--format", "json").stdout

    attacks = [("unlock_key", {}), ("join_token", {"role": "manager"}), ("kv.put", {"key": "owned", "value": b"x"}),
               ("info", {})]
    for name, identity in (("removed manager", removed_manager), ("worker", worker),
                           ("current manager", current_manager)):
        for method, params in attacks:
            reply = control_call(port, identity, method, params)
            assert _refused(reply), (name, method, reply)
    assert m1.run("kv", "ls", "--format", "json").stdout == before
    # On the cluster port too, the removed manager's certificate is nobody's.
    m3_id = m3.info()["node_id"]
    with cluster_api(m1, removed_manager) as sock:
        for method, params in (("raft.remove", {"node_id": m3_id}), ("raft.step_down", {}), ("raft.join", {}),
                               ("keyring.fetch", {}), ("secret.read", {"secret": "x"}), ("node.renew", {})):
            reply = call(sock, method, params)
            assert not reply["ok"] and reply["error"]["code"] == "NodeRemoved", (method, reply)
    assert raft_channel(m1, removed_manager) == {"ok": False, "error": f"node {m2_id} was removed from the cluster"}

    good = files_identity(operator)
    assert control_call(port, good, "kv.put", {"key": "k", "value": b"v"})["ok"]
    assert control_call(port, good, "join_token", {"role": "worker"})["result"]["token"].startswith("SWMTKN-1-")

    # Revocation: by serial, replicated in the cluster object; the next request is refused.
    bad = files_identity(revoked)
    assert control_call(port, bad, "ping")["ok"]
    serial = serial_of(bad.cert_chain_pem)
    out = m1.run("ca", "issue-client", "--revoke", serial)
    assert serial in out.stdout
    for method, params in attacks:
        assert _refused(control_call(port, bad, method, params)), method
    assert control_call(port, good, "kv.get", {"key": "k"})["ok"]
    again = m1.run("ca", "issue-client", "--revoke", "not-a-serial", check=False)
    assert again.returncode == 1 and again.stderr.startswith("Error: ") and "Traceback" not in again.stderr
