"""The one exception tree of raftstore.

It lives in this import-free leaf module so that ``raftstore.keyring`` can raise
it without importing the rest of the package; ``raftstore.errors`` re-exports it.
Classes are named for the condition, not for the place that noticed it, and
each carries the exact one-line message an operator sees::

    RaftstoreError
     +-- InvalidRecord            a sealed record, log frame or snapshot did not open
     +-- InvalidUnlockKey         wrong or malformed unlock key
     +-- InvalidJoinToken         malformed join token, or a secret that matches neither token
     +-- CAMismatch               the remote CA does not match the digest in a join token
     +-- InvalidCertificate       a certificate or CSR that cannot be used
     +-- InvalidArgument          bad input from a user (names, sizes, durations, ...)
     +-- NotFound
     |    +-- Compacted           the history a watch asked for is gone (compacted)
     +-- AlreadyExists
     +-- UpdateOutOfSequence      optimistic-concurrency conflict
     +-- PermissionDenied
     +-- LockedError              the manager is locked (autolock) and serves nothing
     +-- NotInitialized           this node is not part of a cluster
     +-- AlreadyInitialized       this node is already part of a cluster
     +-- NotManager               a store request on a worker
     +-- NodeRemoved              this node was removed from the cluster
     +-- NotLeader / NoQuorum / Unavailable / Timeout   the cluster could not answer
     +-- StorageError             the disk refused (full, read-only, ...)
     +-- RetiredKey               an entry sealed under a DEK term the cluster has retired
     +-- RateLimited              too many attempts (joins) from one address or in all
     +-- ProtocolError            a peer or client sent bytes we do not understand

Every class keeps a stable ``code`` (its name) so that errors crossing the
control API, or coming back in a proposal's outcome, arrive as the same class
on the other side. ``error_class`` knows only the classes declared here, so
every class of the tree is declared here (tests/test_error_codes.py checks).
"""

from __future__ import annotations

import re

__all__ = [
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


class RaftstoreError(Exception):
    """Root of every error raftstore raises on purpose.

    Anything else that escapes is a bug and keeps its traceback.
    """

    default_message = "raftstore error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message if message is not None else self.default_message
        super().__init__(self.message)

    @property
    def code(self) -> str:
        return type(self).__name__

    def __str__(self) -> str:
        return self.message


class InvalidRecord(RaftstoreError):
    default_message = "sealed record failed to open"


class InvalidUnlockKey(RaftstoreError):
    default_message = "invalid unlock key"


class InvalidJoinToken(RaftstoreError):
    default_message = "A valid join token is necessary to join this cluster"


class CAMismatch(RaftstoreError):
    default_message = "remote CA does not match fingerprint"


class InvalidCertificate(RaftstoreError):
    default_message = "invalid certificate"


class InvalidArgument(RaftstoreError):
    default_message = "invalid argument"


class NotFound(RaftstoreError):
    default_message = "not found"


_OLDEST = re.compile(r"oldest version still available is (\d+)")


class Compacted(NotFound):
    """A watch asked for events after a version whose history is gone (compacted), as etcd's ErrCompacted.

    It is a ``NotFound``, so code catching that keeps working; a daemon that
    answers ``NotFound`` for a compacted start is turned into this by the
    client. Managers keep the last 50,000 events in memory and none from before
    the snapshot they started from: re-read what you need and watch again from
    ``oldest_version - 1`` or later. ``oldest_version`` is read from the
    message, and is None when the daemon did not name it.
    """

    default_message = "the requested version has been compacted"

    def __init__(self, message: str | None = None, since: int | None = None) -> None:
        super().__init__(message)
        self.since = since
        found = _OLDEST.search(self.message)
        self.oldest_version: int | None = int(found.group(1)) if found else None


class AlreadyExists(RaftstoreError):
    default_message = "already exists"


class UpdateOutOfSequence(RaftstoreError):
    default_message = "update out of sequence"


class PermissionDenied(RaftstoreError):
    default_message = "permission denied"


class LockedError(RaftstoreError):
    default_message = (
        'Swarm is encrypted and needs to be unlocked before it can be used. '
        'Use "raftstore unlock" to unlock it.'
    )


class NotInitialized(RaftstoreError):
    default_message = (
        'This node is not part of a swarm. Use "raftstore init" or "raftstore join" '
        "to connect this node to a swarm and try again."
    )


class AlreadyInitialized(RaftstoreError):
    default_message = (
        'This node is already part of a swarm. Use "raftstore leave" to leave this '
        "swarm and join another one."
    )


class NotManager(RaftstoreError):
    default_message = (
        "This node is not a swarm manager. Worker nodes can't be used to view or "
        "modify cluster state. Please run this command on a manager node or promote "
        "the current node to a manager."
    )


class NodeRemoved(RaftstoreError):
    default_message = "node was removed from the cluster"


class NotLeader(RaftstoreError):
    default_message = "this manager is not the leader"


class NoQuorum(RaftstoreError):
    default_message = (
        "The swarm does not have a leader. It's possible that too few managers are "
        "online. Make sure more than half of the managers are online."
    )


class Unavailable(RaftstoreError):
    default_message = "the cluster is unavailable"


class Timeout(RaftstoreError):
    default_message = "timed out waiting for the cluster; the request may or may not have been applied"


class StorageError(RaftstoreError):
    default_message = "storage error"


class RetiredKey(RaftstoreError):
    """The entry was sealed under a DEK term that the cluster has retired; reseal and retry."""

    default_message = "entry sealed under a retired data key"


class RateLimited(RaftstoreError):
    default_message = "too many requests; try again later"


class ProtocolError(RaftstoreError):
    default_message = "protocol error"


def _tree(root: type[RaftstoreError]) -> list[type[RaftstoreError]]:
    return [root, *(cls for subclass in root.__subclasses__() for cls in _tree(subclass))]


# The error-code table: every class above, by its code.
_BY_CODE = {cls.__name__: cls for cls in _tree(RaftstoreError)}


def error_class(code: str) -> type[RaftstoreError]:
    """The class for an error code received over the wire (unknown codes map to the root)."""
    return _BY_CODE.get(code, RaftstoreError)
