"""raftstore: a Raft-replicated, encrypted cluster store (the manager store of a Swarm-style cluster).

The public surface is what this module exports; everything in underscore
modules is private. Programs use ``raftstore.Client`` (docs/client.md), its
result types and the error tree: every error raftstore raises on purpose is a
``RaftstoreError``, and ``Compacted`` (a ``NotFound``) is the client's.
``raftstore.keyring`` holds the cryptography and ``raftstore.cli`` the
command line. Names load on first use, so that the
command line starts quickly.
"""

from __future__ import annotations

import importlib
from typing import Any

from .keyring._errors import *  # noqa: F401,F403  (the error tree)
from .keyring._errors import __all__ as _errors_all

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
    "Compacted": "._client_types",
    # What the command line and the tools use.
    "ControlClient": ".net._control",
    "serve": ".api._serve",
    "SecretsDir": ".node._delivery",
    "DEFAULT_SECRETS_DIR": ".node._delivery",
    "SystemClock": ".node._clock",
    "default_data_dir": ".storage._paths",
    "run_demo": ".tools._demo",
    "run_quick_bench": ".tools._bench",
    "run_check": ".tools._check_perf",
    "Thresholds": ".tools._check_perf",
    "format_duration": ".state._durations",
    "parse_duration": ".state._durations",
    "split_host_port": ".net._addresses",
    "is_loopback_host": ".net._addresses",
    "parse_host": ".net._addresses",
    "configure_logging": ".telemetry._logging",
    "LOG_FORMATS": ".telemetry._logging",
    "LOG_LEVELS": ".telemetry._logging",
    "RaftConfig": ".raft",
    "generate_private_key": ".keyring",
    "make_csr": ".keyring",
}

__all__ = [*_errors_all, *_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
