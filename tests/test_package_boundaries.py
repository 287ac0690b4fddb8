"""Package boundaries: the layer table, package surfaces, keyring is pure and alone holds hazmat, no pickle."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import import_graph
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


# The layers of DESIGN.md ("Layout"), top to bottom: a module may import its own package and the packages
# in the layers below its own, never above, never a sibling in its own layer:
#
#     cli -> raftstore (public API) -> api -> node -> manager -> {raft, state} -> {storage, net, telemetry} -> keyring
#
# tools/ (local cluster, load generator, quick bench, demo, check perf) is not in DESIGN's chain: its
# programs drive daemons from outside, through net's control client, and the public API re-exports them,
# so it stands beside node: below api (whose perf methods share check perf's key prefix), above manager.
# ``python -m raftstore`` (raftstore/__main__.py) is the command line's entry point, so it is cli.
LAYERS: list[tuple[str, ...]] = [
    ("cli",),
    ("raftstore",),
    ("api",),
    ("node", "tools"),
    ("manager",),
    ("raft", "state"),
    ("storage", "net", "telemetry"),
    ("keyring",),
]
LAYER_OF = {package: depth for depth, packages in enumerate(LAYERS) for package in packages}


def _package(module: str) -> str:
    """The layer table's name for the package a module belongs to ("raftstore" for the public API's own modules)."""
    if module == "raftstore.__main__":
        return "cli"
    parts = module.split(".")
    if len(parts) > 1 and (parts[1] in LAYER_OF or f"raftstore.{parts[1]}" in _subpackages()):
        return parts[1]
    return "raftstore"


def _subpackages() -> list[str]:
    return sorted(name for name, module in import_graph.modules().items() if module.is_package and name.count(".") == 1)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_every_sub_package_has_a_layer() -> None:
    assert [name for name in _subpackages() if name.split(".")[1] not in LAYER_OF] == []


def test_imports_follow_the_layers() -> None:
    """Down the table only; across into another package only through its ``__init__`` (no ``_module``, no ``_name``).

    Function-local and ``TYPE_CHECKING`` imports count: they are how a layer
    reaches up without Python noticing.
    """
    statements: dict[tuple[str, str, str], list[str]] = {}
    for imp in import_graph.imports():
        statements.setdefault((imp.where, imp.source.name, imp.target), []).extend(imp.names)
    wrong = []
    for (where, source_module, target_module), names in statements.items():
        source, target = _package(source_module), _package(target_module)
        if source == target:
            continue  # inside a package, private modules are its own business
        reasons = []
        if source not in LAYER_OF or target not in LAYER_OF:
            reasons.append(f"{source if source not in LAYER_OF else target} has no place in the layer table")
        elif LAYER_OF[target] < LAYER_OF[source]:
            reasons.append(f"{source} may not import {target}, a layer above it")
        elif LAYER_OF[target] == LAYER_OF[source]:
            reasons.append(f"{source} and {target} are siblings: move what both need down a layer")
        private = [part for part in target_module.split(".")[1:] if _is_private(part)] + [
            name for name in names if _is_private(name)]
        if private:
            surface = "raftstore" if target == "raftstore" else f"raftstore.{target}"
            reasons.append(f"{private[0]} is private to {target}: import from {surface} (its __all__)")
        if reasons:
            what = f"{', '.join(names)} from {target_module}" if names else target_module
            wrong.append(f"{where}: imports {what}: " + "; ".join(reasons))
    assert wrong == [], f"{len(wrong)} import statements against the layer table:\n" + "\n".join(wrong)


def test_sub_packages_declare_their_surface() -> None:
    """Each sub-package's ``__init__`` states ``__all__`` (what other packages may import), and every name exists."""
    import importlib

    missing, absent = [], []
    for name in _subpackages():
        tree = ast.parse(import_graph.modules()[name].path.read_text(encoding="utf-8"))
        if not any(isinstance(node, (ast.Assign, ast.AnnAssign)) and "__all__" in ast.unparse(
                node.targets[0] if isinstance(node, ast.Assign) else node.target) for node in tree.body):
            missing.append(name)
            continue
        module = importlib.import_module(name)
        absent += [f"{name}.{export}" for export in module.__all__ if not hasattr(module, export)]
        assert len(set(module.__all__)) == len(module.__all__), f"{name}.__all__ names something twice"
    assert missing == [], f"sub-packages without __all__ in their __init__: {missing}"
    assert absent == [], f"names in __all__ that do not exist: {absent}"


MAX_LINES = 500


def test_no_product_module_is_over_500_lines() -> None:
    """One noun per file: a module past 500 lines holds two (split it, private ``_noun.py`` modules)."""
    long = {module.relpath: lines for module in import_graph.modules().values()
            if (lines := len(module.path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"


def _daemon_module() -> str:
    defining = [name for name, module in import_graph.modules().items()
                if any(isinstance(node, ast.ClassDef) and node.name == "Daemon"
                       for node in ast.parse(module.path.read_text(encoding="utf-8")).body)]
    assert len(defining) == 1, f"class Daemon is defined in {defining}"
    return defining[0]


def test_only_node_and_serve_import_the_daemon() -> None:
    """Features take narrow collaborators, not the Daemon: only node/ and api/_serve.py (which wires it) import it.

    Counted: ``from ... import Daemon`` anywhere (``TYPE_CHECKING`` too), an
    import of the module that defines it as a module, and ``something.Daemon``
    (the public API's lazy export).
    """
    daemon_module = _daemon_module()

    def allowed(module: import_graph.Module) -> bool:
        return module.name.startswith("raftstore.node.") or module.name in ("raftstore.node", "raftstore.api._serve")

    wrong = [f"{imp.where}: {imp.source.name} imports {imp.target}" + (f".{imp.names[0]}" if imp.names else "")
             for imp in import_graph.imports()
             if not allowed(imp.source) and ("Daemon" in imp.names or (imp.target == daemon_module and not imp.names))]
    for module in import_graph.modules().values():
        if not allowed(module):
            tree = ast.parse(module.path.read_text(encoding="utf-8"))
            wrong += [f"{module.relpath}:{node.lineno}: {ast.unparse(node)}" for node in ast.walk(tree)
                      if isinstance(node, ast.Attribute) and node.attr == "Daemon"]
    assert wrong == [], "Daemon used outside node/ and api/_serve.py:\n" + "\n".join(wrong)


def test_every_file_the_architecture_page_names_exists() -> None:
    """docs/architecture.md walks requests hop by hop, a file per hop: a file moved or renamed must move there too."""
    page = ROOT / "docs" / "architecture.md"
    text = page.read_text(encoding="utf-8")
    named = set(re.findall(r"`([\w.-]+(?:/[\w.-]+)+\.(?:py|md|cfg|toml))`", text))
    linked = {str((page.parent / target).resolve().relative_to(ROOT.resolve()))
              for target in re.findall(r"\]\(([\w./-]+\.md)\)", text)}
    assert len(named) > 30, "the page names the file of every hop"
    assert sorted(path for path in named | linked if not (ROOT / path).is_file()) == []


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


def test_only_the_metrics_modules_import_prometheus_client() -> None:
    # The series (telemetry) and the HTTP endpoints that serve them with the daemon's state (api).
    _imported_only_by("prometheus_client", "raftstore/telemetry/_metrics.py", "raftstore/api/_http.py")


def test_only_the_control_ports_http_module_imports_h11() -> None:
    # HTTP bytes are parsed in one place, under the control port's limits; api/ sees parsed requests.
    _imported_only_by("h11", "raftstore/net/_http.py")
