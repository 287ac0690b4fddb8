"""Control-API methods for secrets and configs.

Secrets and configs are granted to nodes. ``ls`` and ``inspect`` never return
a secret's data, in any format; only ``secret.read`` does, and only to a node
that holds a grant, checked by a manager against the store at the moment of
the read (a linearizable read: a revocation applies to the very next read). A
node without a grant gets ``permission denied`` whether or not the secret
exists, so it learns nothing about it. ``config.read`` follows the same rule,
so that a worker (which has no store to ``inspect``) reads the configs granted
to it; an operator at a manager still sees any config with ``config inspect``.
Whether a node holds a grant is decided in one place, ``state._grants``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..keyring import InvalidArgument, UpdateOutOfSequence, new_id
from ..node import Mode
from ..state import parse_labels, public_view, read_granted, validate_data, validate_name
from ._authz import ADMIN
from ._params import read_state, text_param
from ._registry import method

if TYPE_CHECKING:
    from ..state import StateMachine
    from ._host import Host

__all__ = ["secret_create", "secret_ls", "secret_inspect", "secret_rm", "secret_grant", "secret_revoke",
    "secret_read", "config_create", "config_ls", "config_inspect", "config_rm", "config_grant",
    "config_revoke", "config_read"]


def _labels(params: dict[str, Any]) -> dict[str, str]:
    labels = params.get("labels") or {}
    if isinstance(labels, list):
        return parse_labels(labels)
    if not isinstance(labels, dict):
        raise InvalidArgument("labels are KEY=VALUE pairs")
    return {str(k): str(v) for k, v in labels.items()}


def _create(host: "Host", table: str, params: dict[str, Any], extra_spec: dict[str, Any]) -> dict[str, Any]:
    name = validate_name(params.get("name"))
    data = validate_data(table, params.get("data"))
    labels = _labels(params)
    manager = host.require_manager()
    [result] = manager.propose(
        [{"op": "create", "table": table, "id": new_id(), "name": name, "labels": labels,
          "spec": {"data": data, **extra_spec}}],
        proposal_id=params.get("request_id") if isinstance(params.get("request_id"), bytes) else None,
    )
    host.log(f"{table[:-1]} {result['id']} created")
    return {"id": result["id"]}


def _node_ids(state: "StateMachine", refs: Any) -> list[str]:
    if not isinstance(refs, list):
        raise InvalidArgument("grants are node ids")
    return sorted({state.get("nodes", str(ref))["id"] for ref in refs})


def _change_grants(host: "Host", table: str, params: dict[str, Any], grant: bool) -> dict[str, Any]:
    kind = table[:-1]
    manager = host.require_manager()
    for _ in range(5):
        state = manager.read_barrier()
        obj = state.get(table, text_param(params, kind))
        node_id = state.get("nodes", text_param(params, "node"))["id"]
        grants = set(obj["spec"].get("grants", []))
        if (node_id in grants) == grant:
            return {"id": obj["id"], "node": node_id, "changed": False}
        grants = grants | {node_id} if grant else grants - {node_id}
        spec = dict(obj["spec"], grants=sorted(grants))
        try:
            manager.propose(
                [{"op": "update", "table": table, "id": obj["id"], "version": obj["version"], "spec": spec}]
            )
        except UpdateOutOfSequence:
            continue
        host.log(f"{kind} {obj['id']} {'granted to' if grant else 'revoked from'} node {node_id}")
        return {"id": obj["id"], "node": node_id, "changed": True}
    raise UpdateOutOfSequence()


def _read_own(host: "Host", table: str, params: dict[str, Any]) -> dict[str, Any]:
    """Read a secret or config granted to THIS node: a worker asks a manager over its own mTLS identity."""
    kind = table[:-1]
    ref = text_param(params, kind)
    if host.mode == Mode.WORKER and host.worker is not None:
        return {"data": bytes(host.worker.call(f"{kind}.read", {kind: ref})["data"])}
    manager = host.require_manager()
    assert host.mode == Mode.MANAGER
    return {"data": read_granted(manager.read_barrier(), table, manager.node.node_id, ref)}


def _create_granted(host: "Host", table: str, params: dict[str, Any]) -> dict[str, Any]:
    grants = params.get("grants") or []
    state = host.require_manager().read_barrier() if grants else None
    node_ids = _node_ids(state, grants) if state is not None else []
    return _create(host, table, params, {"grants": node_ids})


def _remove(host: "Host", table: str, params: dict[str, Any], **delete_flags: Any) -> dict[str, Any]:
    """Delete the object a name or id refers to; the state machine enforces the table's rules (grants)."""
    kind = table[:-1]
    manager = host.require_manager()
    record = manager.read_barrier().get(table, text_param(params, kind))
    manager.propose([{"op": "delete", "table": table, "id": record["id"], **delete_flags}])
    host.log(f"{kind} {record['id']} removed")
    return {"id": record["id"]}


# ------------------------------------------------------------------ secrets


@method("secret.create", allow=ADMIN)
def secret_create(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    return _create_granted(host, "secrets", params)


@method("secret.ls", allow=ADMIN)
def secret_ls(host: "Host", params: dict[str, Any]) -> list[dict[str, Any]]:
    return [public_view("secrets", s) for s in read_state(host, params).list("secrets")]


@method("secret.inspect", allow=ADMIN)
def secret_inspect(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    return public_view("secrets", read_state(host, params).get("secrets", text_param(params, "secret")))


@method("secret.rm", allow=ADMIN)
def secret_rm(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    return _remove(host, "secrets", params, force=bool(params.get("force")))


@method("secret.grant", allow=ADMIN)
def secret_grant(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    return _change_grants(host, "secrets", params, grant=True)


@method("secret.revoke", allow=ADMIN)
def secret_revoke(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    return _change_grants(host, "secrets", params, grant=False)


@method("secret.read", allow=ADMIN)
def secret_read(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    return _read_own(host, "secrets", params)


# ------------------------------------------------------------------ configs


@method("config.create", allow=ADMIN)
def config_create(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    return _create_granted(host, "configs", params)


@method("config.ls", allow=ADMIN)
def config_ls(host: "Host", params: dict[str, Any]) -> list[dict[str, Any]]:
    return [public_view("configs", c) for c in read_state(host, params).list("configs")]


@method("config.inspect", allow=ADMIN)
def config_inspect(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    return public_view("configs", read_state(host, params).get("configs", text_param(params, "config")))


@method("config.rm", allow=ADMIN)
def config_rm(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    return _remove(host, "configs", params, force=bool(params.get("force")))


@method("config.grant", allow=ADMIN)
def config_grant(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    return _change_grants(host, "configs", params, grant=True)


@method("config.revoke", allow=ADMIN)
def config_revoke(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    return _change_grants(host, "configs", params, grant=False)


@method("config.read", allow=ADMIN)
def config_read(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    return _read_own(host, "configs", params)

