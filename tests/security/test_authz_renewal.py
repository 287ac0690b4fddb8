"""Finding 7: expired-certificate renewal has a grace period and takes only the certificate on record.

The attacker holds an old key and certificate of a node that was not removed
(an old backup, a disk from a decommissioned machine) and asks for a fresh
certificate with ``node.renew_expired``, which needs no client certificate.
The grace period here is the cluster's certificate expiry, 1h (the smaller of
that and 7 days). Time moves with the daemons' test clock.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from authz_wire import call, cluster_api, node_identity

from raftstore.node._clock import OFFSET_FILE_ENV
from raftstore.tools._local_cluster import Cluster, wait_until
from raftstore.net._tls import TlsIdentity
from raftstore.keyring import generate_private_key, make_csr, sign_possession

pytestmark = pytest.mark.integration


def _renew_expired(node, identity: TlsIdentity) -> tuple[dict, TlsIdentity | None]:
    key = generate_private_key()
    csr = make_csr(key)
    with cluster_api(node, None) as sock:
        reply = call(sock, "node.renew_expired", {"cert_chain_pem": identity.cert_chain_pem, "csr_pem": csr,
                                                  "proof": sign_possession(identity.key_pem, csr)})
    if not reply["ok"]:
        return reply, None
    return reply, TlsIdentity(reply["result"]["cert_chain_pem"], key, identity.trusted_roots_pem)


def _refused_to_rejoin(reply: dict) -> bool:
    return (not reply["ok"] and reply["error"]["code"] == "PermissionDenied"
            and reply["error"]["message"].startswith("permission denied: ") and "rejoin" in reply["error"]["message"])


def _join_in_the_past(cluster: Cluster, m1, name: str, manager_clock: Path, hours_ago: float):
    """A worker whose certificate the manager issued ``hours_ago`` (so it expired ``hours_ago - 1`` hours ago).

    The worker's own clock is set back as far, so that it does not renew by
    itself meanwhile; it is stopped once joined.
    """
    own_clock = manager_clock.parent / f"{name}-clock"
    own_clock.write_text(str(-hours_ago * 3600))
    worker = cluster.add(name, env={OFFSET_FILE_ENV: str(own_clock)})
    manager_clock.write_text(str(-hours_ago * 3600))
    try:
        cluster.join(worker, m1, "worker")
    finally:
        manager_clock.write_text("0")
    worker.stop()
    return worker, own_clock


def test_old_certificates_do_not_renew(cluster: Cluster, tmp_path: Path) -> None:
    clock = tmp_path / "m1-clock"
    clock.write_text("0")
    m1 = cluster.add("m1", env={OFFSET_FILE_ENV: str(clock)})
    cluster.init(m1, "--cert-expiry", "1h")

    # Expired 30 minutes ago: within the grace period, and only while on record.
    w2, _ = _join_in_the_past(cluster, m1, "w2", clock, 1.5)
    original = node_identity(w2)
    reply, first = _renew_expired(m1, original)
    assert reply["ok"] and first is not None, reply
    reply, second = _renew_expired(m1, first)
    assert reply["ok"] and second is not None, reply
    # Two renewals later the original is no longer the certificate on record.
    reply, _ = _renew_expired(m1, original)
    assert _refused_to_rejoin(reply), reply

    # Expired 2 hours ago: beyond the 1h grace.
    w1, w1_clock = _join_in_the_past(cluster, m1, "w1", clock, 3)
    reply, _ = _renew_expired(m1, node_identity(w1))
    assert _refused_to_rejoin(reply), reply
    assert "grace" in reply["error"]["message"]

    # The node itself, holding that certificate, says it must rejoin.
    w1_clock.write_text("0")
    w1.start()
    wait_until(lambda: "must rejoin" in (w1.info().get("error") or ""), timeout=30, what="w1 reports it must rejoin")
    assert "must rejoin" in w1.log()
