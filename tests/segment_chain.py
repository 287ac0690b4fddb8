"""The log chain the storage tests open segment logs with (one fixed keyring, one cluster id)."""

from __future__ import annotations

from raftstore.keyring import Keyring, LogChain

KEYRING = Keyring.generate()
CHAIN = LogChain(lambda: KEYRING, "segment-test-cluster")
