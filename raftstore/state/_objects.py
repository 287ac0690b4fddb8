"""Rules for secrets and configs: names, sizes, labels, and what may be shown.

The state machine enforces these on every proposal (so no path can bypass
them) and the API checks them first (so a bad request fails before it costs a
Raft round). The messages are Docker's, which scripts already match.
"""

from __future__ import annotations

import re
from typing import Any

from ..keyring import InvalidArgument

__all__ = [
    "NAME_MAX",
    "SECRET_MAX_BYTES",
    "CONFIG_MAX_BYTES",
    "validate_name",
    "validate_data",
    "parse_labels",
    "public_view",
]

NAME_MAX = 64
#: Secret data is 1 byte to 500 KiB (fewer than 512000 bytes).
SECRET_MAX_BYTES = 500 * 1024
#: Config data is 1 byte to 1000 KiB.
CONFIG_MAX_BYTES = 1000 * 1024
_NAME_RE = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9_.-]{0,62}[a-zA-Z0-9])?", re.ASCII)
_NAME_ERROR = (
    "invalid name, only 64 [a-zA-Z0-9-_.] characters allowed, and the start and end character must be [a-zA-Z0-9]"
)
_LIMITS = {"secrets": SECRET_MAX_BYTES, "configs": CONFIG_MAX_BYTES}
_KIND = {"secrets": "secret", "configs": "config"}


def validate_name(name: Any) -> str:
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise InvalidArgument(_NAME_ERROR)
    return name


def validate_data(table: str, data: Any) -> bytes:
    limit = _LIMITS[table]
    if not isinstance(data, bytes) or not 0 < len(data) < limit:
        raise InvalidArgument(f"{_KIND[table]} data must be larger than 0 and less than {limit} bytes")
    return data


def parse_labels(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``K=V`` strings (as given to ``--label``) into a map; ``K`` alone means an empty value."""
    labels: dict[str, str] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if not key:
            raise InvalidArgument(f"invalid label {pair!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


def public_view(table: str, obj: dict[str, Any]) -> dict[str, Any]:
    """An object as ``ls``/``inspect`` show it: a secret never carries its data, or even its size."""
    spec = dict(obj["spec"])
    view = {k: obj[k] for k in ("id", "name", "version", "created_at", "updated_at", "labels")}
    view["grants"] = list(spec.get("grants", []))
    if table != "secrets":
        view["data"] = spec.get("data", b"")
    return view
