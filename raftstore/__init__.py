"""raftstore: a Raft-replicated, encrypted cluster store (the manager store of a Swarm-style cluster).

The public surface is what this module exports; everything in underscore
modules is private. ``raftstore.keyring`` holds the cryptography and
``raftstore.cli`` the command line. Names load on first use, so that the
command line starts quickly.
"""

from __future__ import annotations

import importlib
from typing import Any

from .keyring._errors import *  # noqa: F401,F403  (the error tree)
from .keyring._errors import __all__ as _errors_all

__version__ = "0.1.0"

_LAZY = {
    "ControlClient": "._control",
    "Daemon": "._daemon",
    "SecretsDir": "._delivery",
    "DEFAULT_SECRETS_DIR": "._delivery",
    "SystemClock": "._clock",
    "default_data_dir": "._paths",
    "run_demo": "._demo",
    "run_quick_bench": "._bench",
    "run_check": "._check_perf",
    "Thresholds": "._check_perf",
    "format_duration": "._durations",
    "parse_duration": "._durations",
    "split_host_port": "._node_state",
    "is_loopback_host": "._control",
    "configure_logging": "._logging",
    "LOG_FORMATS": "._logging",
    "LOG_LEVELS": "._logging",
    "RaftConfig": "._pysyncobj_adapter",
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
