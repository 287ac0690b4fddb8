"""raftstore.manager: a running manager, and the cluster-wide decisions only a manager makes.

It owns the running manager (``Manager``: Raft, the state machine and the keys
in memory, and the apply path), the proposer that batches writes into
entries (group commit), the life of the data-encryption keys (``_deks``, as
swarmkit's ``deks.go``), the roots of trust and their rotation, the one place
certificates are issued (``issue_node_certificate``, the local CA or an
external CFSSL signer), the cluster's settings, membership and its quorum
checks, and the backup format. It stands on ``raft`` and ``state`` and knows
nothing of the daemon: the node layer above drives it.
"""

from __future__ import annotations

from ..keyring import surface

# The public names of each module, listed here so that __all__ needs no import.
_PUBLIC = {
    "_backup": ["PENDING_RESTORE", "create_backup", "read_backup", "write_pending_restore"],
    "_ca_rotation": ["finish_if_converged", "rotation_status", "start_rotation"],
    "_cluster_settings": ["cluster_spec", "update_cluster"],
    "_external_ca": ["MAX_EXTERNAL_CAS", "entries_for", "external_ca_entry", "probe_all", "require_answering",
                     "updated_external_cas"],
    "_issuance": ["issue_node_certificate"],
    "_manager": ["Manager"],
    "_membership": ["MembershipReconciler", "ask_managers", "check_quorum_after_removal", "demote_absent_managers",
                    "remove_manager"],
    "_roots": ["signing_key_fingerprint", "signing_root", "trust_bundle"],
}
_LAZY = {name: f".{module}" for module, names in _PUBLIC.items() for name in names}

__all__ = list(_LAZY)

__getattr__, __dir__ = surface(__name__, _LAZY)
