"""``Client.watch``: the store's events as an iterator that survives a lost manager.

A watch streams the daemon's ``events`` method on a connection of its own.
It remembers the version of the last event it saw; when the connection is
lost or the manager stops serving, it opens the stream again, on the next
endpoint, from that version, so that no event is missed and none is
repeated (the Client's retry budget bounds how long it tries). A watch that
starts "now" (``since=None``) first pins "now" to the version the answering
manager has applied, so that it can resume from there too; that is etcd's
"now" as well, a member's current revision.

History is finite (see ``Compacted``): a start below it raises ``Compacted``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

from ._client_types import Event
from .keyring import Compacted, NotFound, RaftstoreError

if TYPE_CHECKING:
    from ._client_endpoints import Connections
    from .net import ControlClient

__all__ = ["Watch"]


class Watch:
    """An iterator over ``Event``; close it (or use ``with``) to end the stream.

    ``last_version`` is the version of the last event read, or the start: give
    it as ``since`` to a new watch to continue where this one stopped.
    """

    def __init__(self, connections: "Connections", *, prefix: str, key: str | None, table: str | None,
                 since: int | None, until: int | None, follow: bool) -> None:
        self._connections = connections
        self._key = key
        self._params: dict[str, Any] = {"prefix": key if key is not None else prefix, "table": table,
                                        "until": until, "follow": follow}
        self.last_version = since
        self._connection: ControlClient | None = None
        self._items: Iterator[Any] | None = None
        self._done = False

    def __iter__(self) -> "Watch":
        return self

    def __next__(self) -> Event:
        """The next event (blocking while following).

        Raises:
            StopIteration: the stream ended (``until`` reached, or ``follow`` off and the head reached).
            Compacted: the history after ``last_version`` is gone.
            InvalidArgument: a bad filter, an ``until`` below the start, or a start in the future without follow.
            Unavailable, NoQuorum, ...: no endpoint could serve the watch within the retry budget.
        """
        while True:
            if self._done:
                raise StopIteration
            item = self._next_item()
            event = Event.from_wire(item)
            self.last_version = event.version
            if self._key is None or event.name == self._key:
                return event

    def _next_item(self) -> Any:
        if self._items is None and self.last_version is None:
            self.last_version = self._head()
        attempts = self._connections.attempts(idempotent=True)
        while True:
            try:
                if self._items is None:
                    self._open()
                assert self._items is not None
                return next(self._items)
            except StopIteration:
                self.close()
                raise
            except NotFound as error:
                self.close()
                raise Compacted(error.message, since=self.last_version) from None
            except RaftstoreError as error:
                sent = self._items is not None
                self._drop()
                attempts.failed(error, sent=sent)  # raises when the budget is spent
                self._connections.advance()

    def _open(self) -> None:
        index = self._connections.current
        self._connection = self._connections.connect(index, timeout=self._connections.timeout)
        self._items = self._connection.stream("events", {**self._params, "since": self.last_version})

    def _head(self) -> int | None:
        """The version the next manager has applied: where "now" starts (None where it has no store)."""
        info = self._connections.run(lambda c: c.call("info"), idempotent=True)
        raft = info.get("raft") if isinstance(info, dict) else None
        return int(raft["applied_index"]) if raft and raft.get("applied_index") is not None else None

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection, self._items = None, None

    def close(self) -> None:
        """End the stream (the daemon notices the closed connection)."""
        self._done = True
        self._drop()

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
