"""Every control-API method, registered: importing this module fills ``METHODS`` and ``ALLOWED``.

The registry itself is ``_registry``; the handlers live in one module per
noun, each registering its own with ``@method(name, allow=...)``. The imports
below are the index of which module holds which handler (they import the
modules by name, never the package, so that the package's ``__init__`` can
import this module without a cycle).
"""

from __future__ import annotations

from ._cluster_methods import (  # noqa: F401  (registers its methods)
    ca,
    ca_issue_client,
    ca_issue_server,
    ca_revoke_client,
    info,
    init,
    join,
    join_token,
    leave,
    ping,
    unlock,
    unlock_key,
    update,
)
from ._node_methods import (  # noqa: F401  (registers its methods)
    node_demote,
    node_inspect,
    node_ls,
    node_promote,
    node_rm,
)
from ._kv_methods import (  # noqa: F401  (registers its methods)
    debug_digest,
    events,
    kv_cas,
    kv_get,
    kv_ls,
    kv_put,
    kv_rm,
)
from ._object_methods import (  # noqa: F401  (registers its methods)
    config_create,
    config_grant,
    config_inspect,
    config_ls,
    config_read,
    config_revoke,
    config_rm,
    secret_create,
    secret_grant,
    secret_inspect,
    secret_ls,
    secret_read,
    secret_revoke,
    secret_rm,
)
from ._snapshot_methods import (  # noqa: F401  (registers its methods)
    snapshot_restore,
    snapshot_save,
)
from ._perf_methods import (  # noqa: F401  (registers its methods)
    perf_cleanup,
    perf_stats,
)
from ._doctor import (  # noqa: F401  (registers its methods)
    doctor,
)
from ._txn_methods import (  # noqa: F401  (registers its methods)
    kv_txn,
)
from ._registry import ALLOWED, METHODS, method

__all__ = ["METHODS", "ALLOWED", "method"]
