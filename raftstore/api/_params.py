"""What the control-API methods read from their params, checked once: names, durations, addresses, ids.

A method's params come from the CLI or a remote client; each reader here
refuses a missing or malformed value with ``InvalidArgument`` naming it, so
that every method words the same mistake the same way.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..keyring import MIN_CERT_VALIDITY, InvalidArgument
from ..manager import MAX_EXTERNAL_CAS
from ..net import split_host_port

if TYPE_CHECKING:
    from ..state import StateMachine
    from ._host import Host

__all__ = ["text_param", "read_state", "cert_expiry_param", "external_cas_param", "addresses_param",
           "request_id_param"]

#: The cluster port when an address names none (Swarm's).
CLUSTER_PORT = 2377


def text_param(params: dict[str, Any], key: str, default: str | None = None) -> str:
    """A required, non-empty string."""
    value = params.get(key, default)
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{key} is required")
    return value


def read_state(host: "Host", params: dict[str, Any]) -> "StateMachine":
    """The store, read at the ``consistency`` the caller asked for (linearizable unless it says otherwise)."""
    consistency = params.get("consistency") or "linearizable"
    return host.require_manager().read_barrier(str(consistency))


def cert_expiry_param(params: dict[str, Any]) -> timedelta | None:
    """``--cert-expiry`` (``cert_expiry_seconds``), at least an hour; None when not given."""
    seconds = params.get("cert_expiry_seconds")
    if seconds is None:
        return None
    expiry = timedelta(seconds=float(seconds))
    if expiry < MIN_CERT_VALIDITY:
        raise InvalidArgument("minimum certificate expiry time is: 1h0m0s")
    return expiry


def external_cas_param(params: dict[str, Any], key: str = "external_cas") -> list[Any]:
    """The ``--external-ca`` options (or ``--external-ca-rm`` URLs) a command sent; _external_ca checks each."""
    value = params.get(key) or []
    if not isinstance(value, list) or len(value) > MAX_EXTERNAL_CAS:
        raise InvalidArgument(f"give at most {MAX_EXTERNAL_CAS} external CAs")
    return value


def addresses_param(host: "Host", params: dict[str, Any]) -> tuple[str, str]:
    """The listen and advertise addresses (``HOST:PORT``) of ``init``, ``join`` or a restore."""
    listen = params.get("listen_addr") or host.default_listen_addr or f"0.0.0.0:{CLUSTER_PORT}"
    hostname, port = split_host_port(str(listen), CLUSTER_PORT)
    listen = f"[{hostname}]:{port}" if ":" in hostname else f"{hostname}:{port}"
    advertise = params.get("advertise_addr")
    if advertise:
        ahost, aport = split_host_port(str(advertise), port)
        advertise = f"[{ahost}]:{aport}" if ":" in ahost else f"{ahost}:{aport}"
    elif hostname in ("0.0.0.0", "::"):
        raise InvalidArgument(
            "could not choose an address to advertise: the listen address is unspecified; use --advertise-addr"
        )
    else:
        advertise = listen
    return listen, advertise


def request_id_param(params: dict[str, Any]) -> bytes | None:
    """The caller's ``request_id`` (16 bytes), which makes a retried proposal apply once; None when not given."""
    value = params.get("request_id")
    if value is None:
        return None
    if not isinstance(value, bytes) or len(value) != 16:
        raise InvalidArgument("request_id must be 16 bytes")
    return value
