"""raftstore: a Raft-replicated, encrypted cluster store (the manager store of a Swarm-style cluster).

The public surface is what this module exports; everything in underscore
modules is private. ``raftstore.keyring`` holds the cryptography and
``raftstore.cli`` the command line.
"""

from ._control import ControlClient
from ._daemon import Daemon, SystemClock, default_data_dir
from ._durations import format_duration, parse_duration
from ._node_state import split_host_port
from ._pysyncobj_adapter import RaftConfig
from .keyring import *  # noqa: F401,F403  (the error tree)
from .keyring import __all__ as _keyring_all

__all__ = [
    "ControlClient",
    "Daemon",
    "RaftConfig",
    "SystemClock",
    "default_data_dir",
    "format_duration",
    "parse_duration",
    "split_host_port",
    *[name for name in _keyring_all if name.endswith(("Error", "Key", "Token")) or name[0].isupper()],
]

__version__ = "0.1.0"
