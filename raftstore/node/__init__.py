"""One node of the cluster: the daemon process, its mode, and every change of role.

A node is inactive, a manager (Raft, the store, the cluster port) or a worker
(a member without Raft), and locked or failed as a manager can be (``Mode``).
The daemon (_daemon) is the long-running process: it holds the data
directory's lock, serves the control socket, runs the maintenance loop and
decides when a role changes; the changes themselves (init's and join's
start, promotion, demotion, force-new-cluster, restore) are the public
functions of _transitions, written against ``NodeHost`` (_host), the part of
the daemon they use. Creating a data directory is _bootstrap's; keeping the
certificate fresh _renewal's; a worker's heartbeat _worker's; delivering
granted secrets to files _delivery's. The wall clock is read here (_clock)
and passed down as ``now``.

The daemon imports nothing of the API layer: ``api``'s serve function builds
it with an ``ApiWiring``. Below this package nothing imports it.

Names load on first use, so that a command that only needs a constant does
not pay for importing Raft.
"""

from __future__ import annotations

from ..keyring import surface


# The public names of each module, listed here so that __all__ needs no import.
_PUBLIC = {
    "_modes": ["Mode"],
    "_clock": ["Clock", "SystemClock", "OFFSET_FILE_ENV"],
    "_daemon": ["Daemon", "ApiWiring", "ControlMethod", "WRONG_UNLOCK_KEY", "NO_UNLOCK_KEY"],
    "_host": ["NodeHost", "ClusterServiceHooks", "MetricsEndpoint"],
    "_bootstrap": ["InitResult", "JoinResult", "initialize_cluster", "join_cluster", "bootstrap_actions",
                   "node_record_action"],
    "_transitions": ["start_manager", "stop_roles", "start_worker", "open_manager", "join_raft", "become_manager",
                     "become_worker", "ask_for_readmission", "force_new_cluster", "stage_restore",
                     "complete_restore", "restored_node_record"],
    "_renewal": ["CertificateRenewer", "RenewalHooks"],
    "_delivery": ["SecretsDir", "DEFAULT_SECRETS_DIR", "MAX_POLL_WAIT", "MEMORY_FILESYSTEMS", "filesystem_type",
                  "wait_for_assignments"],
}
_LAZY = {name: f".{module}" for module, names in _PUBLIC.items() for name in names}

__all__ = list(_LAZY)


__getattr__, __dir__ = surface(__name__, _LAZY)
