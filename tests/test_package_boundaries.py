"""Package boundaries: keyring is pure and alone holds hazmat; no pickle anywhere; public surfaces."""

from __future__ import annotations

import ast
from pathlib import Path

import raftstore
import raftstore.keyring

ROOT = Path(__file__).parent.parent


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            prefix = "." * node.level + (node.module or "")
            names.add(prefix)
    return names


def _sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_only_keyring_uses_hazmat() -> None:
    for folder in ("raftstore", "cli"):
        for path in _sources(folder):
            assert not any("hazmat" in name for name in _imports(path)), path


def test_keyring_imports_nothing_of_ours() -> None:
    for path in _sources("keyring"):
        for name in _imports(path):
            assert not name.startswith(("raftstore", "..")), f"{path}: {name}"


def _imported_only_by(library: str, *module_files: str) -> None:
    """Only the named modules (a file name, or a path from the repository root) import ``library``."""
    for folder in ("raftstore", "cli", "keyring"):
        for path in _sources(folder):
            if path.name not in module_files and path.relative_to(ROOT).as_posix() not in module_files:
                assert not any(name.startswith(library) for name in _imports(path)), path


def test_only_the_adapter_imports_pysyncobj() -> None:
    _imported_only_by("pysyncobj", "_pysyncobj_adapter.py")


def test_no_pickle_in_project_code() -> None:
    for folder in ("raftstore", "cli", "keyring"):
        for path in _sources(folder):
            assert not any(name in ("pickle", "cPickle", "_pickle") for name in _imports(path)), path


def test_cli_uses_the_public_surface() -> None:
    for path in _sources("cli"):
        for name in _imports(path):
            if name.startswith("raftstore"):
                assert name == "raftstore", f"{path} imports {name}; export it from raftstore instead"


def test_exported_names_exist() -> None:
    for module in (raftstore, raftstore.keyring):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_only_the_metrics_modules_import_prometheus_client() -> None:
    # The series (telemetry) and the HTTP endpoints that serve them with the daemon's state (api).
    _imported_only_by("prometheus_client", "raftstore/telemetry/_metrics.py", "raftstore/api/_http.py")
