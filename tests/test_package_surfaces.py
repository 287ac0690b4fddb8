"""The surfaces of storage, state and net: each package's ``__all__`` loads, and names what its modules export."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = ("raftstore.storage", "raftstore.state", "raftstore.net", "raftstore.manager", "raftstore.node", "raftstore.api",
            "raftstore.telemetry", "raftstore.tools")


@pytest.mark.parametrize("name", PACKAGES)
def test_every_exported_name_resolves_once(name: str) -> None:
    package = importlib.import_module(name)
    assert len(package.__all__) == len(set(package.__all__))
    for exported in package.__all__:
        assert getattr(package, exported) is not None, f"{name}.{exported}"
    assert sorted(dir(package)) == sorted(package.__all__)


@pytest.mark.parametrize("name", PACKAGES)
def test_the_table_names_each_modules_public_names(name: str) -> None:
    package = importlib.import_module(name)
    for module, names in package._PUBLIC.items():
        declared = importlib.import_module(f"{name}.{module}").__all__
        assert set(names) <= set(declared), f"{name}.{module} does not export {set(names) - set(declared)}"
