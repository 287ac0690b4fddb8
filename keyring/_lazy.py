"""Package surfaces whose names load with their module on first use (PEP 562).

Every command of the CLI imports ``raftstore``; a package that imported all
its modules up front would make ``raftstore version`` pay for X.509 and Raft.
So each package ``__init__`` lists its public names with the module that
defines them, declares them in ``__all__``, and lets ``surface`` load a name
the first time someone asks for it. A name, once loaded, is bound in the
package like any other, so later lookups cost nothing.

It lives in keyring because keyring is the one package every layer of
raftstore may import and it imports nothing of ours; it knows nothing of
cryptography and needs nothing of it.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Mapping

__all__ = ["surface"]


def surface(package: str, table: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, loading each name of ``table`` on first use.

    ``table`` maps a public name to the module that defines it, relative to the
    package (``"._frames"``) or to its parent (``"..net"``). ``__dir__`` lists
    the package's ``__all__``.

    Raises:
        AttributeError: from ``__getattr__``, for a name the table does not list.
    """

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(getattr(sys.modules[package], "__all__", table))

    return __getattr__, __dir__
