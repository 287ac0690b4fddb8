"""Control-API methods for backups: ``snapshot save`` and ``snapshot restore``.

The backup's format and the restore's steps belong to ``manager._backup``;
these methods take the bytes in and out and reload the daemon after a
restore is staged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..keyring import InvalidArgument
from ..manager import create_backup, read_backup
from ..node import Mode, stage_restore
from ._authz import ADMIN
from ._host import as_node_host
from ._params import addresses_param
from ._registry import method

if TYPE_CHECKING:
    from ._host import Host

__all__ = ["snapshot_save", "snapshot_restore"]


@method("snapshot.save", allow=ADMIN)
def snapshot_save(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    data = create_backup(host.require_manager(), host.clock.stamp())
    backup = read_backup(data)
    host.log(f"backup written at index {backup.index}")
    return {"data": data, "index": backup.index, "cluster_id": backup.cluster_id, "autolock": backup.autolock}


@method("snapshot.restore", allow=ADMIN)
def snapshot_restore(host: "Host", params: dict[str, Any]) -> dict[str, Any]:
    data = params.get("data")
    if not isinstance(data, bytes):
        raise InvalidArgument("a backup file is required")
    with host.lock:
        listen, advertise = addresses_param(host, params)
        node = stage_restore(as_node_host(host), data, force=bool(params.get("force")), listen_addr=listen,
                             advertise_addr=advertise)
        host.load()
        return {"node_id": node.node_id, "cluster_id": node.cluster_id, "locked": host.mode == Mode.LOCKED}
