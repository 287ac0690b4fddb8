"""How ``raftstore.Client`` reaches a manager: endpoints, TLS, failover and retries.

Every connection is a ``ControlClient`` (``net._control``), which owns the
wire and the daemon's identity checks: over TLS nothing is sent until the
daemon's certificate chains to the trusted CA, names the host dialled and
is a daemon's (never a node's); plain TCP goes to loopback only. This module
only decides which endpoint to ask next, and whether asking again is safe.

What may be retried, and where (``Attempts``):

- a connection that could not be opened sent nothing: try the next endpoint;
- ``NotLeader`` and ``NoQuorum`` are refusals (the write was never handed to
  Raft): ask again, the next endpoint first;
- ``LockedError``, ``NotManager``, ``NotInitialized`` and ``NodeRemoved`` say
  that this endpoint cannot serve: try the others, and stop once every
  endpoint in a row has said so;
- a lost connection (``Unavailable``) or ``Timeout`` leaves a write's fate
  unknown: retried only when the request is idempotent, that is a read, or a
  write that carries a request id, which the store applies at most once and
  answers from its first outcome on every retry;
- anything else (a refused identity, a bad argument, a conflict) is the
  answer, and is raised at once.

Retries go on for ``retry_for`` seconds, with a pause growing to one second
after each round in which every endpoint failed; each endpoint is tried at
least once whatever the budget.
"""

from __future__ import annotations

import os
import ssl
import threading
import time
from typing import Any, Callable, Sequence, TypeVar

from .keyring import (
    InvalidArgument,
    LockedError,
    NoQuorum,
    NodeRemoved,
    NotInitialized,
    NotLeader,
    NotManager,
    RaftstoreError,
    Timeout,
    Unavailable,
)
from .net import ControlClient, parse_host
from .storage import default_data_dir

__all__ = ["Attempts", "Connections", "default_endpoint", "normalize_endpoint", "tls_context"]

T = TypeVar("T")

#: The answering manager cannot take the request, but another may.
REFUSED_HERE = (LockedError, NotManager, NotInitialized, NodeRemoved)
#: Nothing was applied, for certain: ask again (the next manager first).
REFUSED_FOR_NOW = (NotLeader, NoQuorum)
#: The request's fate is unknown: ask again only if doing so cannot apply it twice.
UNKNOWN_FATE = (Unavailable, Timeout)
MAX_PAUSE = 1.0


def default_endpoint() -> str:
    """The local control socket, as the ``raftstore`` command finds it without ``-H``."""
    return f"unix://{default_data_dir() / 'raftstore.sock'}"


def normalize_endpoint(endpoint: str | os.PathLike[str]) -> str:
    """``unix:///path``, ``tcp://HOST:PORT``, or a socket path (made ``unix://`` and absolute).

    Raises:
        InvalidArgument: a URL of another scheme, or a TCP address without a port.
    """
    text = os.fspath(endpoint)
    if "://" not in text:
        if not text:
            raise InvalidArgument("an endpoint is a socket path, unix:///path or tcp://HOST:PORT")
        text = f"unix://{os.path.abspath(text)}"
    parse_host(text)
    return text


def tls_context(cacert: str | os.PathLike[str], cert: str | os.PathLike[str] | None = None,
                key: str | os.PathLike[str] | None = None) -> ssl.SSLContext:
    """A client TLS context for ``tcp://`` endpoints: TLS 1.2 or later, the daemon checked against ``cacert``.

    It always verifies the daemon's chain and the host name dialled; there is
    no unverified mode, because a daemon that cannot be identified could be
    anyone holding a certificate of the cluster. ``cert`` and ``key`` are the
    admin client certificate from ``raftstore ca issue-client`` (files
    ``cert.pem`` and ``key.pem`` beside ``ca.pem``).

    Raises:
        InvalidArgument: only one of cert and key, or files that cannot be loaded.
    """
    if (cert is None) != (key is None):
        raise InvalidArgument("a client certificate and its key go together")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_verify_locations(cacert)
        if cert is not None and key is not None:
            context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        raise InvalidArgument(f"cannot load TLS files: {error}") from None
    return context


class Attempts:
    """One logical request's budget: which failures may be retried, for how long, and the pause between rounds."""

    def __init__(self, endpoints: int, retry_for: float, *, idempotent: bool,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        self._endpoints = endpoints
        self._deadline = clock() + max(0.0, retry_for)
        self._idempotent = idempotent
        self._sleep, self._clock = sleep, clock
        self._tried = 0
        self._refused_in_a_row = 0
        self._rounds = 0

    def failed(self, error: RaftstoreError, *, sent: bool) -> None:
        """Return if the request may go again (after a pause when a round ended); otherwise raise ``error``.

        ``sent``: the request may have reached the daemon (False: the connection was never opened).
        """
        if isinstance(error, REFUSED_HERE):
            self._refused_in_a_row += 1
        elif sent and not isinstance(error, REFUSED_FOR_NOW) and not (
                isinstance(error, UNKNOWN_FATE) and self._idempotent):
            raise error
        elif not isinstance(error, (*REFUSED_FOR_NOW, *UNKNOWN_FATE)):
            raise error  # not opened for a reason no retry changes (bad address, refused identity)
        else:
            self._refused_in_a_row = 0
        self._tried += 1
        if self._refused_in_a_row >= self._endpoints:
            raise error  # every endpoint in a row cannot serve: waiting changes nothing
        now = self._clock()
        if self._tried >= self._endpoints and now >= self._deadline:
            raise error
        if self._tried % self._endpoints == 0:
            self._rounds += 1
            self._sleep(min(MAX_PAUSE, 0.1 * 2 ** (self._rounds - 1), max(0.0, self._deadline - now)))


class Connections:
    """The endpoints of one Client and its one open connection (to the endpoint that answered last)."""

    def __init__(self, endpoints: Sequence[str], tls: ssl.SSLContext | None, timeout: float | None,
                 retry_for: float) -> None:
        if not endpoints:
            raise InvalidArgument("give at least one endpoint")
        self.endpoints = list(endpoints)
        self.tls = tls
        self.timeout = timeout
        self.retry_for = retry_for
        self.current = 0
        self._open: ControlClient | None = None
        self._lock = threading.RLock()

    def connect(self, index: int, timeout: float | None) -> ControlClient:
        """A new connection to endpoint ``index``; the daemon's identity is checked before it returns."""
        endpoint = self.endpoints[index]
        return ControlClient(endpoint, tls=self.tls if endpoint.startswith("tcp://") else None, timeout=timeout)

    def attempts(self, *, idempotent: bool) -> Attempts:
        return Attempts(len(self.endpoints), self.retry_for, idempotent=idempotent)

    def advance(self) -> None:
        """Give up on the current endpoint: the next request starts at the next one."""
        with self._lock:
            self._drop()
            self.current = (self.current + 1) % len(self.endpoints)

    def run(self, action: Callable[[ControlClient], T], *, idempotent: bool) -> T:
        """``action`` on a connection, failing over and retrying as the module doc says."""
        with self._lock:
            attempts = self.attempts(idempotent=idempotent)
            while True:
                try:
                    if self._open is None:
                        self._open = self.connect(self.current, self.timeout)
                except RaftstoreError as error:
                    attempts.failed(error, sent=False)
                    self.advance()
                    continue
                try:
                    return action(self._open)
                except RaftstoreError as error:
                    if isinstance(error, Unavailable):
                        self._drop()  # lost or out of step: a late reply must not answer the next request
                    attempts.failed(error, sent=True)
                    self.advance()

    def _drop(self) -> None:
        if self._open is not None:
            self._open.close()
            self._open = None

    def close(self) -> None:
        with self._lock:
            self._drop()
