"""Where a node keeps its state by default."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_data_dir"]


def default_data_dir() -> Path:
    """``$RAFTSTORE_DATA_DIR``, else /var/lib/raftstore as root, else ~/.local/share/raftstore."""
    env = os.environ.get("RAFTSTORE_DATA_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/raftstore")
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "raftstore"
