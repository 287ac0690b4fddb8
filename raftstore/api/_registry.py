"""The control-API method registry: each method's name, its handler and who may call it.

A method registers itself with ``@method(name, allow=...)`` (kinds of caller
from ``_authz``); the daemon runs ``_authz.authorize`` with that declaration
before the handler, on the unix socket and the remote control API alike. A
method registered without one is refused to everyone, and
``tests/security/test_authz_declarations.py`` fails.

Each handler takes the daemon (as ``_host.Host``) and a params map and
returns plain data (the CLI formats it) or a ``Stream``. The handlers live in
one module per noun; ``_methods`` imports them all, so that importing it
fills ``METHODS`` and ``ALLOWED``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ._authz import Allowed

if TYPE_CHECKING:
    from ._host import Host

__all__ = ["Method", "METHODS", "ALLOWED", "method"]

Method = Callable[["Host", dict[str, Any]], Any]
#: Every control-API method by name.
METHODS: dict[str, Method] = {}
#: Who may call each method (see _authz); a method missing here is refused.
ALLOWED: dict[str, Allowed] = {}


def method(name: str, *, allow: Allowed | None = None) -> Callable[[Method], Method]:
    """Register a control-API method and the callers it admits."""

    def register(fn: Method) -> Method:
        METHODS[name] = fn
        if allow is not None:
            ALLOWED[name] = allow
        return fn

    return register
