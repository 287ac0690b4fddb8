"""TLS contexts for cluster traffic, built from certificates and keys held in memory.

With autolock on, a manager's private key exists in plain form only in this
process's memory, so it must never be written to a file, not even briefly.
``ssl`` only loads keys from paths; an anonymous memory file (``memfd``)
reached through ``/proc/self/fd`` gives it one that lives in RAM only.

Every context requires TLS 1.2 or later. Server contexts ask for a client
certificate but do not require one, because a joining node has none yet; each
request handler decides what the peer's verified identity (or its absence)
allows. Host names are not checked on the cluster port: a peer's identity is
the O/OU/CN of a certificate that chains to the cluster root, read with
``peer_identity``, and OpenSSL still requires serverAuth of the server, which
only managers' certificates state. (The control API's client, which dials a
name, does check it: see ``_control``.)
"""

from __future__ import annotations

import os
import ssl
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from ..keyring import CertificateIdentity, InvalidCertificate, certificate_identity

__all__ = ["TlsIdentity", "server_context", "client_context", "peer_identity", "peer_certificate_pem"]


@dataclass(frozen=True)
class TlsIdentity:
    """What a node presents and trusts: its chain, its key, and the cluster roots."""

    cert_chain_pem: bytes
    key_pem: bytes = field(repr=False)
    trusted_roots_pem: bytes


@contextmanager
def _memory_file(data: bytes) -> Iterator[str]:
    fd = os.memfd_create("raftstore-tls", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _base_context(purpose: ssl.Purpose) -> ssl.SSLContext:
    protocol = ssl.PROTOCOL_TLS_SERVER if purpose is ssl.Purpose.CLIENT_AUTH else ssl.PROTOCOL_TLS_CLIENT
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    return context


def _load_identity(context: ssl.SSLContext, identity: TlsIdentity) -> None:
    with _memory_file(identity.cert_chain_pem) as cert_path, _memory_file(identity.key_pem) as key_path:
        context.load_cert_chain(cert_path, key_path)


def server_context(identity: TlsIdentity) -> ssl.SSLContext:
    context = _base_context(ssl.Purpose.CLIENT_AUTH)
    _load_identity(context, identity)
    context.load_verify_locations(cadata=identity.trusted_roots_pem.decode())
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


def client_context(identity: TlsIdentity | None, trusted_roots_pem: bytes | None) -> ssl.SSLContext:
    """A client context; without ``trusted_roots_pem`` the server is not verified.

    The unverified form exists for one purpose only: fetching the root CA at
    join time, whose digest the caller then checks against the join token.
    """
    context = _base_context(ssl.Purpose.SERVER_AUTH)
    if trusted_roots_pem is None:
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_verify_locations(cadata=trusted_roots_pem.decode())
        context.verify_mode = ssl.CERT_REQUIRED
    if identity is not None:
        _load_identity(context, identity)
    return context


def peer_certificate_pem(sock: ssl.SSLSocket) -> bytes | None:
    der = sock.getpeercert(binary_form=True)
    if not der:
        return None
    return ssl.DER_cert_to_PEM_cert(der).encode()


def peer_identity(sock: ssl.SSLSocket) -> CertificateIdentity | None:
    """The verified identity of the peer, or None when it presented no certificate.

    Only meaningful on a socket whose context verified the peer (the server
    contexts here verify any certificate that is presented).
    """
    pem = peer_certificate_pem(sock)
    if pem is None:
        return None
    try:
        return certificate_identity(pem)
    except InvalidCertificate:
        return None
