"""``raftstore.Client``: the public Python client of a raftstore cluster.

Programs replicate state through raftstore with this class; the
``raftstore`` command uses it too, so it is exercised by every CLI test.
It speaks the control API (msgpack frames over the managers' control
sockets, or TCP with mutual TLS) through ``ControlClient``, which checks the
daemon's identity before sending anything, and adds what a program needs
on top:

- several endpoints, with failover between them (see ``_client_endpoints``);
- a request id drawn once per write and sent again on every retry, so that
  a write retried after a lost leader is applied once (the state machine
  answers a known id with its first outcome);
- typed results (``_client_types``) and the project's exception tree;
- multi-key transactions and resumable watches.

Every method raises ``raftstore.RaftstoreError`` subclasses only. Those a
retry cannot fix (``InvalidArgument``, ``NotFound``, ``UpdateOutOfSequence``,
``PermissionDenied``) come at once; ``NoQuorum``, ``Unavailable`` and
``Timeout`` come once every endpoint failed for ``retry_for`` seconds.
"""

from __future__ import annotations

import os
import ssl
from typing import Any, Iterable, List, Sequence

from ._client_endpoints import Connections, default_endpoint, normalize_endpoint, tls_context
from ._client_types import ClusterInfo, Compare, Delete, KeyValue, ObjectInfo, Operation, Put, TxnResult
from ._client_watch import Watch
from .keyring import InvalidArgument

__all__ = ["Client", "tls_context"]

#: The store's kv reads: through the Raft log (never stale) or this manager's copy (may be stale, no quorum needed).
CONSISTENCIES = ("linearizable", "local")


def _request_id() -> bytes:
    """One id per logical write, kept across its retries: the store applies an id once."""
    return os.urandom(16)


def _value(value: bytes | str) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise InvalidArgument("a value is bytes (or a str, stored as UTF-8)")
    return bytes(value)


def _consistency(consistency: str) -> str:
    if consistency not in CONSISTENCIES:
        raise InvalidArgument(f"unknown consistency {consistency!r}: use linearizable or local")
    return consistency


class Client:
    """A connection to a raftstore cluster through one or more of its managers.

    ``endpoints``: one endpoint or a list; each is a control socket path,
    ``unix:///path`` or ``tcp://HOST:PORT``. Default: the control socket in
    the default data directory (``$RAFTSTORE_DATA_DIR``, else
    /var/lib/raftstore as root, else ~/.local/share/raftstore), where
    ``raftstore`` looks without ``-H`` or ``$RAFTSTORE_HOST``. Requests go to one
    endpoint at a time; another is tried when it cannot be reached or cannot
    serve (no leader, locked, a worker). Every manager serves reads and
    writes (a follower hands writes to the leader), so any order works.

    ``tls``: the context for ``tcp://`` endpoints (``raftstore.tls_context``
    builds one); without it plain TCP is used, on loopback only. With it,
    nothing is sent to a daemon whose certificate does not chain to the
    trusted CA, name the host dialled and state serverAuth (a node's
    certificate never identifies a daemon).

    ``timeout``: seconds to wait for one answer (None: forever).
    ``retry_for``: seconds to keep retrying a request that failed for a
    reason another attempt may fix (0: try each endpoint once).

    A Client may be shared by threads; its requests take turns on one
    connection (one Client per thread to run them in parallel). A watch has
    a connection of its own. Close the client (or use ``with``) when done.

    Raises:
        InvalidArgument: an endpoint that is not a socket path, unix:// or tcp:// URL.
    """

    def __init__(self, endpoints: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None, *,
                 tls: ssl.SSLContext | None = None, timeout: float | None = 60.0, retry_for: float = 30.0) -> None:
        if endpoints is None:
            listed: list[str] = [default_endpoint()]
        elif isinstance(endpoints, (str, os.PathLike)):
            listed = [normalize_endpoint(endpoints)]
        else:
            listed = [normalize_endpoint(e) for e in endpoints]
        self._connections = Connections(listed, tls, timeout, retry_for)

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The endpoints, normalized (``unix://`` or ``tcp://``)."""
        return tuple(self._connections.endpoints)

    @property
    def endpoint(self) -> str:
        """The endpoint the next request goes to first: the one that answered last."""
        return self._connections.endpoints[self._connections.current]

    # ------------------------------------------------------------------ low level

    def call(self, method: str, params: dict[str, Any] | None = None, *, idempotent: bool = False) -> Any:
        """Call a control-API method by name and return its plain result (maps, lists, bytes).

        For the admin methods without a typed wrapper here (``node.ls``,
        ``join_token``, ``ca.issue_client``, ...: see ``raftstore --help``).
        A failover happens when no request was sent or the manager refused it
        for certain; after a lost connection or a ``Timeout`` the request is
        repeated only with ``idempotent=True``. Say so for reads, and for
        writes whose params carry a 16-byte ``request_id`` (methods that take
        one apply it once).

        Raises:
            RaftstoreError: the method's own errors, with the class the daemon raised.
        """
        params = dict(params or {})
        return self._connections.run(lambda c: c.call(method, params), idempotent=idempotent)

    def _read(self, method: str, params: dict[str, Any]) -> Any:
        return self._connections.run(lambda c: c.call(method, params), idempotent=True)

    def _write(self, method: str, params: dict[str, Any]) -> Any:
        params = {**params, "request_id": _request_id()}
        return self._connections.run(lambda c: c.call(method, params), idempotent=True)

    # ------------------------------------------------------------------ kv

    def get(self, key: str, *, consistency: str = "linearizable") -> KeyValue:
        """The key's value and versions.

        ``consistency="local"`` reads the answering manager's copy: it works
        without a quorum, and may be stale.

        Raises:
            NotFound: the key does not exist.
            InvalidArgument: an empty key or an unknown consistency.
        """
        return KeyValue.from_wire(self._read("kv.get", {"key": key, "consistency": _consistency(consistency)}))

    def list(self, prefix: str = "", *, consistency: str = "linearizable") -> List[KeyValue]:
        """Every key starting with ``prefix``, in key order, with values.

        Raises:
            InvalidArgument: an unknown consistency.
        """
        records = self._read("kv.ls", {"prefix": prefix, "consistency": _consistency(consistency)})
        return [KeyValue.from_wire(r) for r in records]

    def put(self, key: str, value: bytes | str) -> int:
        """Set ``key`` to ``value`` and return the new version (the Raft index of the write).

        Retried under one request id, so a write whose answer was lost with
        its manager is applied once.

        Raises:
            InvalidArgument: an empty key, or a value over the 1.5 MiB a transaction may carry.
        """
        return int(self._write("kv.put", {"key": key, "value": _value(value)})["version"])

    def delete(self, key: str, *, version: int | None = None) -> int:
        """Delete ``key``, only if it is still at ``version`` when given; return the version of the deletion.

        Raises:
            NotFound: the key does not exist.
            UpdateOutOfSequence: the key is no longer at ``version`` (the message names the version it is at).
        """
        params: dict[str, Any] = {"key": key}
        if version is not None:
            params["version"] = version
        return int(self._write("kv.rm", params)["version"])

    def cas(self, key: str, value: bytes | str, version: int) -> int:
        """Compare-and-set: write ``value`` only if ``key`` is at ``version`` (0: does not exist yet).

        Returns the new version. A retry after a lost answer gets the first
        outcome, not a conflict with its own write.

        Raises:
            UpdateOutOfSequence: the key is at another version; nothing was written (the message names it).
            InvalidArgument: a negative version, an empty key.
        """
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise InvalidArgument("version must be a whole number (0: the key must not exist)")
        return int(self._write("kv.cas", {"key": key, "value": _value(value), "version": version})["version"])

    def txn(self, compares: Iterable[Compare], operations: Iterable[Operation]) -> TxnResult:
        """Apply ``operations`` (``Put``, ``Delete``) if every compare holds: all of them, as one log entry, or none.

        As etcd's Txn, a failed compare is an answer, not an error:
        ``succeeded`` is False, nothing was applied, and ``versions`` says
        where the keys are. Each compare names a key the transaction writes
        (the store checks versions where it writes): a put guarded by
        ``Compare(key, 0)`` creates, a guarded delete deletes only that
        version. A delete of a missing key fails the transaction the same way.

        Raises:
            InvalidArgument: a key written twice, a compare on an unwritten
                key, no operation, more than 1024; nothing is applied.
        """
        compare_list = [c.to_wire() for c in compares]
        operation_list = [op.to_wire() for op in operations]
        raw = self._write("kv.txn", {"compares": compare_list, "operations": operation_list})
        return TxnResult.from_wire(raw)

    def watch(self, prefix: str = "", *, key: str | None = None, table: str | None = "kv",
              since: int | None = None, until: int | None = None, follow: bool = True) -> Watch:
        """Events of ``table`` (None: all tables) for names starting with ``prefix`` (or exactly ``key``).

        ``since``: events with a version above it (None: from now). Resume a
        watch with ``since=`` the last event's version. ``until``: stop after
        that version. ``follow=False``: stop at the current head. The stream
        survives the loss of its manager (see ``Watch``).

        Raises (when iterated):
            Compacted: the history after ``since`` is gone.
            InvalidArgument: an unknown table, ``until`` below ``since``, a
                future ``since`` without follow.
        """
        return Watch(self._connections, prefix=prefix, key=key, table=table, since=since, until=until,
                     follow=follow)

    # ------------------------------------------------------------------ secrets and configs

    def read_secret(self, name: str) -> bytes:
        """The data of a secret granted to the node the client talks to.

        Raises:
            PermissionDenied: not granted to that node, or no such secret (the two look alike on purpose).
        """
        return bytes(self._read("secret.read", {"secret": name})["data"])

    def read_config(self, name: str) -> bytes:
        """The data of a config granted to the node the client talks to.

        Raises:
            PermissionDenied: not granted to that node, or no such config.
        """
        return bytes(self._read("config.read", {"config": name})["data"])

    def secrets(self) -> List[ObjectInfo]:
        """Every secret's metadata and grants (never its data): which nodes may read which secret.

        Raises:
            NotManager: every endpoint is a worker, which holds no store.
        """
        return [ObjectInfo.from_wire(r) for r in self._read("secret.ls", {})]

    def configs(self) -> List[ObjectInfo]:
        """Every config's metadata and grants: which nodes may read which config.

        Raises:
            NotManager: every endpoint is a worker, which holds no store.
        """
        return [ObjectInfo.from_wire(r) for r in self._read("config.ls", {})]

    # ------------------------------------------------------------------ cluster

    def info(self) -> ClusterInfo:
        """What the answering node says about itself and its cluster (its Raft view, leader, members).

        Answered by a locked manager or a worker too (with no Raft view), so it
        tells a program what state the node is in.

        Raises:
            Unavailable: no endpoint could be reached within the retry budget.
        """
        return ClusterInfo.from_wire(self._read("info", {}))

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Close the connection (watches close their own)."""
        self._connections.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({list(self.endpoints)!r})"
