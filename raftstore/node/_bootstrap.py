"""Creating a node's data directory: ``init`` of a new cluster and ``join`` of an existing one.

Both write certificates and keys first and ``state.json`` last: a directory
without ``state.json`` is inactive, and anything half-written is removed
(``clear_partial``) before the next attempt.
"""

from __future__ import annotations

import shutil
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..keyring import (
    DEFAULT_CERT_VALIDITY,
    MANAGER_ROLE,
    CAMismatch,
    InvalidArgument,
    JoinToken,
    KeyEncryptionKey,
    Keyring,
    ProtocolError,
    RootCA,
    UnlockKey,
    certificate_identity,
    create_root_ca,
    generate_private_key,
    load_root_ca,
    make_csr,
    new_id,
)
from ..manager import external_ca_entry, issue_node_certificate
from ..net import ClusterClient, TlsIdentity, fetch_root_ca
from ..storage import KeyStore, NodeState, Role, StatePaths, atomic_write

__all__ = ["InitResult", "JoinResult", "initialize_cluster", "join_cluster", "clear_partial", "bootstrap_actions"]


def clear_partial(paths: StatePaths) -> None:
    """Remove what an interrupted init or join left behind (only when no state.json exists)."""
    if paths.state_file.exists():
        return
    for directory in (paths.raft, paths.keys, paths.certificates):
        shutil.rmtree(directory, ignore_errors=True)
    paths.create()


@dataclass
class InitResult:
    node: NodeState
    keyring: Keyring
    kek: KeyEncryptionKey
    node_key_pem: bytes
    root_ca: RootCA
    unlock_key: UnlockKey | None
    worker_token: JoinToken
    manager_token: JoinToken
    cert_expiry: timedelta
    autolock: bool
    node_cert_pem: bytes
    external_cas: list[dict[str, Any]] = field(default_factory=list)


def initialize_cluster(
    paths: StatePaths,
    *,
    listen_addr: str,
    advertise_addr: str,
    autolock: bool,
    cert_expiry: timedelta = DEFAULT_CERT_VALIDITY,
    ca_cert_pem: bytes | None = None,
    ca_key_pem: bytes | None = None,
    external_cas: list[dict[str, Any]] | None = None,
    now: datetime,
) -> InitResult:
    """Create the keys, CA and certificates of a new one-manager cluster (no state.json yet).

    With ``external_cas`` and ``--ca-cert`` alone, the root's key stays with the operator's signing
    service, which issues even this first certificate (see _external_ca).
    """
    clear_partial(paths)
    cluster_id, node_id = new_id(), new_id()
    root = _initial_root(ca_cert_pem, ca_key_pem, bool(external_cas), now)
    entries = [external_ca_entry(option, root.cert_pem) for option in external_cas or []]
    node_key_pem = generate_private_key()
    spec = {"root_ca": {"cert_pem": root.cert_pem, "key_pem": root.key_pem}, "external_cas": entries,
            "cert_expiry_seconds": int(cert_expiry.total_seconds())}
    chain = issue_node_certificate(spec, make_csr(node_key_pem), node_id=node_id, cluster_id=cluster_id,
                                   role=MANAGER_ROLE, now=now)
    keyring = Keyring.generate()
    unlock_key = UnlockKey.generate() if autolock else None
    kek = (
        KeyEncryptionKey.from_unlock_key(unlock_key, cluster_id, 1)
        if unlock_key is not None
        else KeyEncryptionKey.random(1)
    )
    atomic_write(paths.root_ca, root.cert_pem, mode=0o644)
    atomic_write(paths.node_cert, chain, mode=0o644)
    KeyStore(paths, cluster_id).save(keyring, kek, autolock=autolock, node_key_pem=node_key_pem)
    node = NodeState.sole_manager(cluster_id, node_id, listen_addr, advertise_addr)
    return InitResult(
        node=node,
        keyring=keyring,
        kek=kek,
        node_key_pem=node_key_pem,
        root_ca=root,
        unlock_key=unlock_key,
        worker_token=JoinToken.generate(root.cert_pem),
        manager_token=JoinToken.generate(root.cert_pem),
        cert_expiry=cert_expiry,
        autolock=autolock,
        node_cert_pem=chain,
        external_cas=entries,
    )


def _initial_root(cert_pem: bytes | None, key_pem: bytes | None, external: bool, now: datetime) -> RootCA:
    """The new cluster's root: generated, the operator's with its key, or an external CA's (no key).

    Raises:
        InvalidArgument: a combination that leaves nobody or two parties able to sign.
        InvalidCertificate: a root ``load_root_ca`` refuses.
    """
    if external and cert_pem is None:
        raise InvalidArgument("--external-ca needs --ca-cert: the root certificate the external CA signs with")
    if external and key_pem is not None:
        raise InvalidArgument("give --ca-key or --external-ca, not both: with the key the cluster signs itself")
    if key_pem is not None and cert_pem is None:
        raise InvalidArgument("--ca-key needs --ca-cert")
    if cert_pem is not None and key_pem is None and not external:
        raise InvalidArgument("--ca-cert needs --ca-key, or --external-ca when the key stays with your CA")
    return load_root_ca(cert_pem, key_pem, now) if cert_pem is not None else create_root_ca(now)


def bootstrap_actions(result: InitResult) -> list[dict[str, Any]]:
    """The first transaction of a cluster: the cluster object and the first node."""
    node = result.node
    return [
        {
            "op": "create",
            "table": "cluster",
            "id": node.cluster_id,
            "name": "default",
            "spec": {
                "autolock": result.autolock,
                "unlock_key": str(result.unlock_key) if result.unlock_key else None,
                "kek_version": 1,
                "cert_expiry_seconds": int(result.cert_expiry.total_seconds()),
                "root_ca": {"cert_pem": result.root_ca.cert_pem, "key_pem": result.root_ca.key_pem},
                "join_tokens": {"worker": str(result.worker_token), "manager": str(result.manager_token)},
                "removed_nodes": [],
                "root_rotation": None,
                "external_cas": result.external_cas,
            },
        },
        node_record_action(node.node_id, Role.MANAGER, node.advertise_addr,
                           cert_serial=certificate_identity(result.node_cert_pem).serial),
    ]


def node_record_action(
    node_id: str, role: str, addr: str, hostname: str | None = None, *, cert_serial: str | None = None
) -> dict[str, Any]:
    """A new node's record; ``cert_serial`` is the certificate it was issued (see _authz: cert_serials)."""
    return {
        "op": "create",
        "table": "nodes",
        "id": node_id,
        "name": node_id,
        "spec": {
            "hostname": hostname or socket.gethostname(),
            "role": role,
            "desired_role": role,
            "addr": addr,
            "availability": "active",
            **({"cert_serials": [cert_serial]} if cert_serial else {}),
        },
    }


@dataclass
class JoinResult:
    node: NodeState
    node_key_pem: bytes
    keyring: Keyring | None = None
    kek: KeyEncryptionKey | None = None
    members: list[list[str]] = field(default_factory=list)


def join_cluster(
    paths: StatePaths,
    *,
    token_text: str,
    manager_addr: str,
    listen_addr: str,
    advertise_addr: str,
) -> JoinResult:
    """Join through ``manager_addr``: check the CA, get a certificate, and (managers) the keys."""
    clear_partial(paths)
    token = JoinToken.parse(token_text)
    bundle = fetch_root_ca(manager_addr)
    if not token.matches_ca(bundle):
        raise CAMismatch()
    node_key_pem = generate_private_key()
    with ClusterClient(manager_addr, trusted_roots_pem=bundle) as client:
        reply = client.call(
            "join",
            {
                "token": str(token),
                "csr_pem": make_csr(node_key_pem),
                "addr": advertise_addr,
                "hostname": socket.gethostname(),
            },
        )
    try:
        node_id, cluster_id, role = str(reply["node_id"]), str(reply["cluster_id"]), str(reply["role"])
        chain, members = bytes(reply["cert_chain_pem"]), [list(m) for m in reply["members"]]
        manager_addrs = [str(a) for a in reply["manager_addrs"]]
    except (KeyError, TypeError, ValueError):
        raise ProtocolError(f"malformed join reply from {manager_addr}") from None
    atomic_write(paths.root_ca, bundle, mode=0o644)
    atomic_write(paths.node_cert, chain, mode=0o644)
    node = NodeState(
        cluster_id=cluster_id,
        node_id=node_id,
        role=Role.MANAGER if role == MANAGER_ROLE else Role.WORKER,
        listen_addr=listen_addr,
        advertise_addr=advertise_addr,
        bootstrap_members=members if role == MANAGER_ROLE else [],
        manager_addrs=manager_addrs or [manager_addr],
    )
    result = JoinResult(node=node, node_key_pem=node_key_pem, members=members)
    keystore = KeyStore(paths, cluster_id)
    if node.role == Role.WORKER:
        keystore.write_node_key(node_key_pem, None)
        return result
    identity = TlsIdentity(cert_chain_pem=chain, key_pem=node_key_pem, trusted_roots_pem=bundle)
    result.keyring, result.kek, autolock = fetch_keys(manager_addr, identity, cluster_id)
    keystore.save(result.keyring, result.kek, autolock=autolock, node_key_pem=node_key_pem)
    return result


def fetch_keys(
    manager_addr: str, identity: TlsIdentity, cluster_id: str, timeout: float = 15.0
) -> tuple[Keyring, KeyEncryptionKey, bool]:
    """The cluster keyring (and unlock key) from a manager, over mutual TLS."""
    with ClusterClient(
        manager_addr, trusted_roots_pem=identity.trusted_roots_pem, identity=identity, cluster_id=cluster_id,
        timeout=timeout,
    ) as client:
        keys = client.call("keyring.fetch", {})
    try:
        keyring = Keyring.from_bytes(bytes(keys["keyring"]))
        version = int(keys["kek_version"])
        autolock = bool(keys["autolock"])
        kek = (
            KeyEncryptionKey.from_unlock_key(UnlockKey.parse(keys["unlock_key"]), cluster_id, version)
            if autolock
            else KeyEncryptionKey.random(version)
        )
    except (KeyError, TypeError, ValueError):
        raise ProtocolError(f"malformed keyring reply from {manager_addr}") from None
    return keyring, kek, autolock


__all__ += ["fetch_keys", "node_record_action"]
