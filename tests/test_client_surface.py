"""raftstore.Client's declared surface: exported from raftstore, documented, results frozen, errors in the tree."""

from __future__ import annotations

import dataclasses
import importlib
import inspect

import pytest

import raftstore

CLIENT_MODULES = ["raftstore._client", "raftstore._client_types", "raftstore._client_watch"]


@pytest.mark.parametrize("module_name", CLIENT_MODULES)
def test_every_public_name_of_the_client_is_exported_from_raftstore(module_name: str) -> None:
    module = importlib.import_module(module_name)
    for name in module.__all__:
        assert name in raftstore.__all__, f"{module_name}.{name} is not in raftstore.__all__"
        assert getattr(raftstore, name) is getattr(module, name)
    assert "Client" in raftstore.__all__ and "tls_context" in raftstore.__all__


def test_public_methods_say_why_and_what_they_raise() -> None:
    for name, member in inspect.getmembers(raftstore.Client, inspect.isfunction):
        if name.startswith("_"):
            continue
        doc = inspect.getdoc(member) or ""
        assert len(doc) > 30, f"Client.{name} needs a docstring that explains"
        if name != "close" and "Raises" not in doc:
            pytest.fail(f"Client.{name} does not list what it raises")
        for word in doc.split():
            candidate = word.strip(":,.()`")
            if candidate.endswith(("Error", "Denied", "Found", "Argument", "Sequence")) and candidate[0].isupper():
                assert isinstance(getattr(raftstore, candidate, None), type), f"Client.{name} names {candidate}"
    assert "Raises" in (inspect.getdoc(raftstore.tls_context) or "")


def test_results_are_frozen_dataclasses() -> None:
    for name in ("KeyValue", "Compare", "Put", "Delete", "TxnResult", "Event", "Member", "ClusterInfo", "ObjectInfo"):
        cls = getattr(raftstore, name)
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, name
        assert (inspect.getdoc(cls) or "") != "", name


def test_compacted_is_a_not_found_of_the_tree() -> None:
    assert issubclass(raftstore.Compacted, raftstore.NotFound)
    assert issubclass(raftstore.Compacted, raftstore.RaftstoreError)
    error = raftstore.Compacted("version 2 has been compacted; the oldest version still available is 9", since=2)
    assert error.code == "Compacted" and error.oldest_version == 9 and error.since == 2
    assert raftstore.Compacted("gone").oldest_version is None
