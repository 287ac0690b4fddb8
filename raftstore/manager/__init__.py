"""raftstore.manager."""

from ._backup import PENDING_RESTORE, create_backup, read_backup, write_pending_restore
from ._ca_rotation import finish_if_converged, rotation_status, start_rotation
from ._cluster_settings import cluster_spec, update_cluster
from ._external_ca import (
    MAX_EXTERNAL_CAS,
    entries_for,
    external_ca_entry,
    probe_all,
    require_answering,
    updated_external_cas,
)
from ._issuance import issue_node_certificate
from ._manager import Manager
from ._membership import (
    MembershipReconciler,
    ask_managers,
    check_quorum_after_removal,
    demote_absent_managers,
    remove_manager,
)
from ._roots import signing_key_fingerprint, signing_root, trust_bundle

__all__ = [
    "MAX_EXTERNAL_CAS",
    "Manager",
    "MembershipReconciler",
    "PENDING_RESTORE",
    "ask_managers",
    "check_quorum_after_removal",
    "cluster_spec",
    "create_backup",
    "demote_absent_managers",
    "entries_for",
    "external_ca_entry",
    "finish_if_converged",
    "issue_node_certificate",
    "probe_all",
    "read_backup",
    "remove_manager",
    "require_answering",
    "rotation_status",
    "signing_key_fingerprint",
    "signing_root",
    "start_rotation",
    "trust_bundle",
    "update_cluster",
    "updated_external_cas",
    "write_pending_restore",
]
