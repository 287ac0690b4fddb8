"""Package boundaries: keyring is pure and alone holds hazmat; no pickle anywhere; public surfaces."""

from __future__ import annotations

import ast
import re
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


def _imported_only_by(library: str, module_file: str) -> None:
    for folder in ("raftstore", "cli", "keyring"):
        for path in _sources(folder):
            if path.name != module_file:
                assert not any(name.startswith(library) for name in _imports(path)), path


def test_only_the_adapter_imports_pysyncobj() -> None:
    """The adapter is the package raftstore/raft/: no module outside it imports pysyncobj."""
    raft = ROOT / "raftstore" / "raft"
    for folder in ("raftstore", "cli", "keyring"):
        for path in _sources(folder):
            if path.parent != raft:
                assert not any(name.startswith("pysyncobj") for name in _imports(path)), path


def _pysyncobj_private_names() -> set[str]:
    """The underscore names pysyncobj defines or sets on its objects (``def _x``, ``self._x``)."""
    import pysyncobj

    names: set[str] = set()
    for source in Path(pysyncobj.__file__).parent.glob("*.py"):
        text = source.read_text()
        names.update(re.findall(r"\bself\.(_[A-Za-z]\w*)", text))
        names.update(re.findall(r"\bdef (_[A-Za-z]\w*)", text))
    return {name for name in names if not name.startswith("__")}


def test_only_the_seams_module_touches_pysyncobj_private_names() -> None:
    """raftstore/raft/_seams.py holds every use of pysyncobj's internals.

    Elsewhere: no name-mangled attribute (``_SyncObj__x``), no underscore
    attribute of pysyncobj's that the module does not define itself, no
    pysyncobj module object (which is what a module-level swap needs), and
    only public names from ``from pysyncobj... import``.
    """
    import pkgutil

    import pysyncobj

    private = _pysyncobj_private_names()
    submodules = {module.name for module in pkgutil.iter_modules(pysyncobj.__path__)}
    seams = ROOT / "raftstore" / "raft" / "_seams.py"
    for path in _sources("raftstore"):
        if path == seams:
            continue
        tree = ast.parse(path.read_text())
        own = {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
        own |= {
            target.attr
            for node in ast.walk(tree)
            if isinstance(node, (ast.Assign, ast.AnnAssign))
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Attribute)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not any(alias.name.startswith("pysyncobj") for alias in node.names), f"{path}: import pysyncobj"
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pysyncobj"):
                for alias in node.names:
                    assert not alias.name.startswith("_") and alias.name not in submodules, f"{path}: {alias.name}"
            elif isinstance(node, ast.Attribute):
                assert not re.fullmatch(r"_[A-Za-z]+__\w+", node.attr), f"{path}: {node.attr}"
                assert node.attr not in private or node.attr in own, f"{path}: {node.attr}"


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


def test_only_the_metrics_module_imports_prometheus_client() -> None:
    _imported_only_by("prometheus_client", "_metrics.py")
