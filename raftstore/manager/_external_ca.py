"""External CAs: the cluster holds the root certificate, an operator's CFSSL signing service holds its key.

``--external-ca protocol=cfssl,url=https://HOST:PORT[/api/v1/cfssl/sign][,cacert=FILE]`` (on ``init``,
``update`` and ``ca --rotate``) adds an entry to the cluster object's ``external_cas``. Each entry is
bound to the root it signs for (``root_key``: that root's public-key fingerprint), so during a CA
rotation the services of the old and of the new root are told apart.

When the root that signs now (``_roots.signing_root``) has no key in the cluster, every
certificate a manager would issue (join, renewal, role change, rotation convergence, ``ca
issue-client``: all through ``_issuance.issue_node_certificate``) is instead requested from the
services bound to that root, in the order given (failover: the next one is tried when one is down
or answers wrongly), with CFSSL's ``/api/v1/cfssl/sign`` JSON protocol:

- request: ``{"certificate_request": CSR, "subject": {"CN": node id, "names": [{"O": cluster id,
  "OU": role}]}, "hosts": [role, node id(, swarm-ca)], "profile": role}``; the profile named after
  the role (``swarm-manager``, ``swarm-worker``, ``swarm-client``) is where the operator's CFSSL
  config sets the usages (see docs/guide.md);
- reply: ``{"success": true, "result": {"certificate": PEM}}`` or ``{"success": false,
  "errors": [{"message": ...}]}``.

The reply is believed only after ``keyring.check_issued_certificate``: exactly the subject and
key asked for, exactly the role's extended key usages, chaining to the cluster root. The
connection is TLS 1.2+ with the service's CA pinned: the entry's ``cacert``, or else the root
it signs for (as Swarm does), and the host name in the URL checked against the service's
certificate. Replies are read up to ``MAX_REPLY_BYTES`` under one deadline.

``probe`` asks a service's ``/api/v1/cfssl/info`` which root it signs with; ``info``, ``doctor``,
``update --external-ca`` and ``ca --rotate`` use it.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from datetime import datetime
from typing import Any, Iterable
from urllib.parse import urlsplit

from ..keyring import (
    InvalidArgument,
    InvalidCertificate,
    RootCA,
    Unavailable,
    certificate_profile,
    check_cross_signed,
    check_issued_certificate,
    node_csr_key,
    public_key_fingerprint,
    root_csr,
    split_pem_chain,
)
from ._roots import signing_root

__all__ = [
    "PROTOCOL",
    "external_ca_entry",
    "entries_for",
    "sign_with_external_ca",
    "cross_sign_with_external_ca",
    "probe",
    "probe_all",
    "updated_external_cas",
    "require_answering",
    "MAX_EXTERNAL_CAS",
]

PROTOCOL = "cfssl"
SIGN_PATH = "/api/v1/cfssl/sign"
INFO_PATH = "/api/v1/cfssl/info"
#: The cross-signing request of a rotation away from an external root names this CFSSL profile.
CROSS_SIGN_PROFILE = "swarm-cross-sign"
MAX_EXTERNAL_CAS = 8
MAX_URL_LENGTH = 512
MAX_CACERT_BYTES = 64 * 2**10
#: A CFSSL reply is one certificate in JSON; anything longer is not one.
MAX_REPLY_BYTES = 64 * 2**10
#: One attempt at one service: connect, TLS, request and reply.
SIGN_TIMEOUT = 5.0
#: All attempts of one signing: a joining node waits 15 s for its answer, which must be this line, not a timeout.
SIGN_BUDGET = 12.0
PROBE_TIMEOUT = 3.0


def _normalized_url(url: Any) -> str:
    """``https://host[:port]`` with the sign path added when none is given; anything else is refused."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise InvalidArgument("--external-ca needs url=https://HOST:PORT (the CFSSL signing service)")
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment or "@" in parts.netloc:
        raise InvalidArgument(f"external CA url {url!r}: give https://HOST[:PORT][/api/v1/cfssl/sign]")
    try:
        parts.port
    except ValueError:
        raise InvalidArgument(f"external CA url {url!r}: the port is not a number from 1 to 65535") from None
    path = parts.path.rstrip("/") or SIGN_PATH
    if not path.endswith("/sign"):
        raise InvalidArgument(f"external CA url {url!r}: the path must be CFSSL's sign endpoint ({SIGN_PATH})")
    return f"https://{parts.netloc}{path}"


def external_ca_entry(option: dict[str, Any], root_pem: bytes) -> dict[str, Any]:
    """A validated ``external_cas`` entry for what ``--external-ca`` gave, bound to ``root_pem``.

    Raises:
        InvalidArgument: another protocol, a URL that is not https or not CFSSL's sign endpoint,
            or a ``cacert`` that is not PEM certificates.
    """
    if not isinstance(option, dict):
        raise InvalidArgument("an external CA is protocol=cfssl,url=URL[,cacert=FILE]")
    protocol = str(option.get("protocol") or "").lower()
    if protocol != PROTOCOL:
        raise InvalidArgument(f"external CA protocol {option.get('protocol')!r} is not supported: use protocol=cfssl")
    cacert = option.get("cacert_pem")
    if cacert is not None:
        if not isinstance(cacert, bytes) or len(cacert) > MAX_CACERT_BYTES or not split_pem_chain(cacert):
            raise InvalidArgument("the external CA's cacert must be a PEM certificate file (the CA of its TLS certificate)")
        try:
            _context(cacert)
        except ssl.SSLError:
            raise InvalidArgument("the external CA's cacert holds no usable certificate") from None
    return {"protocol": PROTOCOL, "url": _normalized_url(option.get("url")), "cacert_pem": cacert,
            "root_key": public_key_fingerprint(root_pem)}


def entries_for(spec: dict[str, Any], root_pem: bytes) -> list[dict[str, Any]]:
    """The external CAs that sign for ``root_pem``, in the order the operator gave them."""
    fingerprint = public_key_fingerprint(root_pem)
    return [entry for entry in spec.get("external_cas") or [] if entry.get("root_key") == fingerprint]


def sign_with_external_ca(
    entries: list[dict[str, Any]], root_pem: bytes, csr_pem: bytes, *, node_id: str, cluster_id: str, role: str,
    now: datetime,
) -> bytes:
    """Forward the CSR to each service in turn; the first answer that passes the checks wins.

    Raises:
        InvalidCertificate: the CSR is not a node's (checked before anything is sent).
        Unavailable: none answered with a good certificate (one line naming each URL and why).
    """
    node_csr_key(csr_pem)  # a stranger's CSR: checked before it leaves this manager
    profile = certificate_profile(role, node_id, cluster_id)
    request = {
        "certificate_request": csr_pem.decode("ascii", "replace"),
        "hosts": profile["hosts"],
        "subject": {"CN": profile["CN"], "names": [{"O": profile["O"], "OU": profile["OU"]}]},
        "profile": role,
    }

    def accept(certificate: bytes) -> bytes:
        return check_issued_certificate(certificate, csr_pem, root_pem, node_id=node_id, cluster_id=cluster_id,
                                        role=role, now=now)

    return _first_good_answer(entries, root_pem, SIGN_PATH, request, accept, f"a {role} certificate")


def cross_sign_with_external_ca(entries: list[dict[str, Any]], old_root_pem: bytes, new: RootCA,
                                now: datetime) -> bytes:
    """The new root cross-signed by the old root's external CA (profile ``swarm-cross-sign``), checked.

    Raises:
        InvalidArgument: there is no external CA for the old root.
        InvalidCertificate: the new root's key is not given (see ``root_csr``).
        Unavailable: none answered with a good certificate.
    """
    if not entries:
        raise InvalidArgument("the current root's key is not in the cluster and no external CA signs for it: "
                              "nothing can cross-sign the new root")
    request = {"certificate_request": root_csr(new).decode("ascii"), "profile": CROSS_SIGN_PROFILE}

    def accept(certificate: bytes) -> bytes:
        return check_cross_signed(certificate, old_root_pem, new.cert_pem, now)

    return _first_good_answer(entries, old_root_pem, SIGN_PATH, request, accept, "a cross-signed root")


def _first_good_answer(entries: list[dict[str, Any]], root_pem: bytes, path: str, request: dict[str, Any],
                       accept: Any, what: str) -> bytes:
    if not entries:
        raise Unavailable("the root CA's key is not in the cluster and no external CA signs for it: "
                          "add one with raftstore update --external-ca protocol=cfssl,url=...")
    failures = []
    deadline = time.monotonic() + SIGN_BUDGET
    for entry in entries:
        remaining = deadline - time.monotonic()
        if remaining <= 0.5:
            failures.append(f"{entry['url']}: not tried (out of time)")
            continue
        try:
            return bytes(accept(_call(entry, root_pem, path, request, min(SIGN_TIMEOUT, remaining))))
        except (Unavailable, InvalidCertificate) as error:
            failures.append(f"{entry['url']}: {error}")
    raise Unavailable(f"no external CA issued {what}: {'; '.join(failures)}")


def _context(pin_pem: bytes) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(cadata=pin_pem.decode("ascii", "replace"))
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _endpoint(url: str, path: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    base = parts.path[: -len("/sign")] if parts.path.endswith("/sign") else parts.path
    return parts.hostname or "", parts.port or 443, base + path[len("/api/v1/cfssl"):]


def _call(entry: dict[str, Any], root_pem: bytes, path: str, request: dict[str, Any], timeout: float) -> bytes:
    """POST one CFSSL request; the certificate PEM it returns, or Unavailable saying why not (one line)."""
    host, port, target = _endpoint(entry["url"], path)
    deadline = time.monotonic() + timeout
    connection = http.client.HTTPSConnection(host, port, timeout=timeout,
                                             context=_context(entry.get("cacert_pem") or root_pem))
    try:
        connection.request("POST", target, body=json.dumps(request).encode(),
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        body = b""
        while len(body) <= MAX_REPLY_BYTES and time.monotonic() < deadline:
            chunk = response.read1(MAX_REPLY_BYTES + 1 - len(body))
            if not chunk:
                break
            body += chunk
        status = response.status
    except ssl.SSLCertVerificationError as error:
        raise Unavailable(f"its TLS certificate does not verify against the pinned CA ({error.verify_message})") from None
    except ConnectionRefusedError:
        raise Unavailable("connection refused (is the signing service running?)") from None
    except TimeoutError:
        raise Unavailable(f"no answer within {timeout:.1f} s") from None
    except (OSError, http.client.HTTPException) as error:
        raise Unavailable(f"{type(error).__name__}: {error}".rstrip(": ")) from None
    finally:
        connection.close()
    if len(body) > MAX_REPLY_BYTES or time.monotonic() >= deadline:
        raise Unavailable("its reply is too large or too slow")
    return _certificate_from(status, body)


def _certificate_from(status: int, body: bytes) -> bytes:
    try:
        reply = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        reply = None
    if not isinstance(reply, dict):
        raise Unavailable(f"HTTP {status}: not a CFSSL reply")
    if not reply.get("success"):
        listed = reply.get("errors")
        errors = listed if isinstance(listed, list) else []
        messages = [str(e.get("message"))[:200] for e in errors if isinstance(e, dict) and e.get("message")]
        raise Unavailable(f"HTTP {status}: CFSSL refused: {'; '.join(messages) or 'no reason given'}")
    result = reply.get("result")
    certificate = result.get("certificate") if isinstance(result, dict) else None
    if not isinstance(certificate, str) or status != 200:
        raise Unavailable(f"HTTP {status}: the CFSSL reply holds no certificate")
    return certificate.encode("ascii", "replace")


def probe(entry: dict[str, Any], root_pem: bytes, timeout: float = PROBE_TIMEOUT) -> dict[str, Any]:
    """Whether a service answers, and signs with the root it is bound to (CFSSL's info endpoint).

    Returns ``{"protocol", "url", "answers": bool, "status": one line}``.
    """
    out = {"protocol": entry.get("protocol", PROTOCOL), "url": entry["url"], "answers": False}
    try:
        certificate = _call(entry, root_pem, INFO_PATH, {}, timeout)
        signs_for = public_key_fingerprint(certificate)
    except (Unavailable, InvalidCertificate) as error:
        return {**out, "status": str(error)}
    if signs_for != entry.get("root_key"):
        return {**out, "status": "answers, but signs with another root than the one it is configured for"}
    return {**out, "answers": True, "status": "answers and signs with the cluster root"}


def probe_all(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """``probe`` for every configured external CA, with the root each is bound to."""
    roots = _roots_by_key(spec)
    out = []
    for entry in spec.get("external_cas") or []:
        root = roots.get(entry.get("root_key"))
        row = probe(entry, root) if root is not None else {
            "protocol": entry.get("protocol"), "url": entry["url"], "answers": False,
            "status": "bound to a root the cluster no longer uses"}
        out.append(row)
    return out


def _roots_by_key(spec: dict[str, Any]) -> dict[str, bytes]:
    roots: Iterable[bytes] = [spec["root_ca"]["cert_pem"]]
    rotation = spec.get("root_rotation")
    if rotation:
        roots = [*roots, rotation["new_cert_pem"]]
    return {public_key_fingerprint(root): root for root in roots}


def updated_external_cas(spec: dict[str, Any], add: list[Any], remove: list[Any]) -> list[dict[str, Any]]:
    """``external_cas`` after ``update --external-ca``/``--external-ca-rm``; added ones sign for the root that signs now.

    Raises:
        InvalidArgument: adding to a cluster that holds its root key (it signs itself), removing one
            that is not configured, or leaving a keyless root without any external CA.
    """
    root = signing_root(spec)[0]
    if add and root.key_pem is not None:
        raise InvalidArgument("this cluster holds its root key and signs certificates itself; an external CA serves "
                              "a root whose key stays outside (init or ca --rotate with --ca-cert and --external-ca)")
    current = list(spec.get("external_cas") or [])
    for url in remove:
        wanted = _normalized_url(url)
        if not any(entry["url"] == wanted for entry in current):
            raise InvalidArgument(f"no external CA {wanted} is configured")
        current = [entry for entry in current if entry["url"] != wanted]
    for option in add:
        entry = external_ca_entry(option, root.cert_pem)
        if any(e["url"] == entry["url"] and e["root_key"] == entry["root_key"] for e in current):
            raise InvalidArgument(f"external CA {entry['url']} is already configured")
        current.append(entry)
    if len(current) > MAX_EXTERNAL_CAS:
        raise InvalidArgument(f"a cluster has at most {MAX_EXTERNAL_CAS} external CAs")
    if root.key_pem is None and not entries_for({"external_cas": current}, root.cert_pem):
        raise InvalidArgument("the cluster does not hold its root key: removing its last external CA would leave "
                              "nothing to sign certificates (add another first)")
    return current


def require_answering(entries: list[dict[str, Any]], root_pem: bytes) -> None:
    """Refuse to depend on a service that does not answer now, or signs with another root (Swarm checks too).

    Raises:
        Unavailable: naming the service and why.
    """
    for entry in entries:
        result = probe(entry, root_pem)
        if not result["answers"]:
            raise Unavailable(f"external CA {entry['url']}: {result['status']}")
