"""``raftstore version``: what is installed, for bug reports and fleet audits.

A cluster's behaviour depends on more than our own version: pysyncobj is
pinned because we rely on its private seams, and cryptography decides which
OpenSSL seals the data. So ``version`` prints ours, Python's and those of the
libraries raftstore requires, read from the installed distributions' metadata
(importlib.metadata) without importing them.
"""

from __future__ import annotations

import platform
import re
from importlib import metadata
from typing import Any

import click

from ._common import emit_json, format_option

__all__ = ["register", "versions"]

DISTRIBUTION = "raftstore"
# Shown even if raftstore's own metadata is missing (a source checkout run
# without installing): the libraries the store's behaviour depends on.
CORE_LIBRARIES = ("pysyncobj", "cryptography", "msgpack", "click")
UNKNOWN = "unknown"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _installed(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return UNKNOWN


def _required_libraries() -> list[str]:
    """The names in raftstore's install_requires, in their declared order (extras left out)."""
    try:
        requirements = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        requirements = []
    names: list[str] = []
    for requirement in requirements:
        if "extra" in requirement.partition(";")[2]:
            continue
        match = _NAME.match(requirement.strip())
        if match and match.group(0) not in names:
            names.append(match.group(0))
    return names + [name for name in CORE_LIBRARIES if name not in names]


def versions() -> dict[str, Any]:
    """Our version, Python's, the platform's and each required library's, as installed.

    A library that is not installed shows as ``"unknown"`` rather than failing:
    ``version`` is what people run when something is already wrong.
    """
    return {
        "raftstore": _installed(DISTRIBUTION),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": f"{platform.system().lower()}/{platform.machine()}",
        "libraries": {name: _installed(name) for name in _required_libraries()},
    }


@click.command("version")
@format_option
def version_cmd(output_format: str) -> None:
    """Show the version of raftstore, of Python and of the libraries it uses.

    \b
    Examples:
      raftstore version
      raftstore version --format json
      raftstore --version                     # raftstore's own version only
    """
    info = versions()
    if output_format == "json":
        emit_json(info)
        return
    rows = [
        ("raftstore", str(info["raftstore"])),
        ("Python", f"{info['python']} ({info['python_implementation']})"),
        ("Platform", str(info["platform"])),
        *info["libraries"].items(),
    ]
    width = max(len(name) for name, _ in rows) + 2
    for name, value in rows:
        click.echo(f"{name + ':':{width}}{value}")


def register(group: click.Group) -> None:
    """Add ``version`` to the ``raftstore`` group."""
    group.add_command(version_cmd)
