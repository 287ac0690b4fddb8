"""The keyring in force, shared by the manager and its Raft layer.

A ``Keyring`` is immutable (``keyring/_deks.py``): a DEK rotation, a key
fetched from a peer or a purge of retired terms makes a new one. The manager
keeps one ``CurrentKeyring`` and swaps its ``keyring`` attribute; the journal,
the snapshot hooks and the manager's write path each take the reference once
per use, so a swap is atomic for them. It is unrelated to
``keyring.KeySource``, the protocol of anything that finds a key by id.
"""

from __future__ import annotations

from ..keyring import Keyring

__all__ = ["CurrentKeyring"]


class CurrentKeyring:
    """The keyring that seals and opens this node's Raft records now, and the cluster it belongs to."""

    def __init__(self, keyring: Keyring, cluster_id: str) -> None:
        self.keyring = keyring
        self.cluster_id = cluster_id
