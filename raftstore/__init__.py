"""raftstore: a Raft-replicated, encrypted cluster store (the manager store of a Swarm-style cluster).

The public surface is what this module exports; everything in underscore
modules is private. Programs use ``raftstore.Client`` (docs/client.md), its
result types and the error tree: every error raftstore raises on purpose is a
``RaftstoreError`` (a watch whose history is gone raises ``Compacted``, a ``NotFound``).
``raftstore.keyring`` holds the cryptography and ``raftstore.cli`` the
command line. Names load on first use, so that the
command line starts quickly.
"""

from __future__ import annotations

from .keyring import surface


from .keyring import (  # the error tree (keyring loads it eagerly: an import-free leaf)
    RaftstoreError,
    InvalidRecord,
    InvalidUnlockKey,
    InvalidJoinToken,
    CAMismatch,
    InvalidCertificate,
    InvalidArgument,
    NotFound,
    Compacted,
    AlreadyExists,
    UpdateOutOfSequence,
    PermissionDenied,
    LockedError,
    NotInitialized,
    AlreadyInitialized,
    NotManager,
    NodeRemoved,
    NotLeader,
    NoQuorum,
    Unavailable,
    Timeout,
    StorageError,
    RetiredKey,
    ProtocolError,
    RateLimited,
    error_class,
)

_errors_all = [
    "RaftstoreError",
    "InvalidRecord",
    "InvalidUnlockKey",
    "InvalidJoinToken",
    "CAMismatch",
    "InvalidCertificate",
    "InvalidArgument",
    "NotFound",
    "Compacted",
    "AlreadyExists",
    "UpdateOutOfSequence",
    "PermissionDenied",
    "LockedError",
    "NotInitialized",
    "AlreadyInitialized",
    "NotManager",
    "NodeRemoved",
    "NotLeader",
    "NoQuorum",
    "Unavailable",
    "Timeout",
    "StorageError",
    "RetiredKey",
    "ProtocolError",
    "RateLimited",
    "error_class",
]

__version__ = "0.1.0"

_LAZY = {
    # The client library (docs/client.md).
    "Client": "._client",
    "tls_context": "._client_endpoints",
    "Watch": "._client_watch",
    "KeyValue": "._client_types",
    "Compare": "._client_types",
    "Put": "._client_types",
    "Delete": "._client_types",
    "Operation": "._client_types",
    "TxnResult": "._client_types",
    "Event": "._client_types",
    "Member": "._client_types",
    "ClusterInfo": "._client_types",
    "ObjectInfo": "._client_types",
    # What the command line and the tools use.
    "ControlClient": ".net",
    "serve": ".api",
    "SecretsDir": ".node",
    "DEFAULT_SECRETS_DIR": ".node",
    "SystemClock": ".node",
    "default_data_dir": ".storage",
    "run_demo": ".tools",
    "run_quick_bench": ".tools",
    "run_check": ".tools",
    "Thresholds": ".tools",
    "format_duration": ".state",
    "parse_duration": ".state",
    "split_host_port": ".net",
    "is_loopback_host": ".net",
    "parse_host": ".net",
    "configure_logging": ".telemetry",
    "LOG_FORMATS": ".telemetry",
    "LOG_LEVELS": ".telemetry",
    "RaftConfig": ".raft",
    "generate_private_key": ".keyring",
    "make_csr": ".keyring",
}

__all__ = [*_errors_all, *_LAZY, "__version__"]


__getattr__, __dir__ = surface(__name__, _LAZY)
