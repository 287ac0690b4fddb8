"""raftstore's import graph, read from the source with ``ast`` (nothing is imported).

tests/test_package_boundaries.py checks it against the layer table and
tests/test_import_cycles.py looks for cycles in it. Every import statement
counts: module level, inside a function, under ``if TYPE_CHECKING:``, in a
``try``. A late import dodges a cycle at run time but leaves the modules
tangled, which is what these checks are about.

Module names are the installed ones: keyring/ and cli/ install as
``raftstore.keyring`` and ``raftstore.cli`` (setup.cfg ``package_dir``).

``python tests/import_graph.py`` prints the cycles (``-e`` adds every edge).
"""

from __future__ import annotations

import ast
import sys
from collections import deque
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Where each installed package's source lives (setup.cfg ``package_dir``).
SOURCES = {"raftstore": ROOT / "raftstore", "raftstore.keyring": ROOT / "keyring", "raftstore.cli": ROOT / "cli"}


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool

    @property
    def package(self) -> str:
        """The package a relative import in this module starts from."""
        return self.name if self.is_package else self.name.rpartition(".")[0]

    @property
    def relpath(self) -> str:
        return str(self.path.relative_to(ROOT))


@dataclass(frozen=True)
class Import:
    """One import of one of our modules: ``source`` line ``line`` needs ``target``.

    ``names`` are the attributes taken from ``target`` (``from target import a, b``);
    empty when the statement imports ``target`` itself as a module.
    """

    source: Module
    target: str
    line: int
    names: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        return f"{self.source.relpath}:{self.line}"


@cache
def modules() -> dict[str, Module]:
    """Every module of ours by its installed name (a package by its own name, not ``x.__init__``)."""
    found: dict[str, Module] = {}
    for prefix, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            found[".".join((prefix, *parts))] = Module(".".join((prefix, *parts)), path, is_package)
    return found


def _base(module: Module, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    parts = module.package.split(".")
    if node.level > 1:
        parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def imports_of(module: Module, known: set[str] | dict[str, Module]) -> list[Import]:
    """Every import in ``module`` of a module in ``known``, wherever the statement stands.

    ``from P import x`` is an import of the module ``P.x`` when there is one,
    else of the name ``x`` from ``P``; ``from . import x`` in a package's own
    module therefore needs ``x``, not the package's ``__init__``.
    """
    found: list[Import] = []
    tree = ast.parse(module.path.read_text(encoding="utf-8"), filename=str(module.path))
    found.extend(_lazy_imports(module, tree, known))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(Import(module, alias.name, node.lineno) for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, node)
            if base not in known:
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in known:
                    found.append(Import(module, submodule, node.lineno))
                else:
                    found.append(Import(module, base, node.lineno, (alias.name,)))
    return sorted(found, key=lambda imp: imp.line)


def _lazy_imports(module: Module, tree: ast.Module, known: set[str] | dict[str, Module]) -> list[Import]:
    """The names a module-level table exports lazily: ``_LAZY = {"Name": ".pkg._module", ...}``.

    A package ``__init__`` that loads a name on first use (``__getattr__`` and
    ``importlib``) imports it all the same; the table's relative module paths
    say from where, and count as ``from .pkg._module import Name``.
    """
    found = []
    for node in tree.body:
        value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
        if not isinstance(value, ast.Dict):
            continue
        for key, target in zip(value.keys, value.values):
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str)
                    and isinstance(target, ast.Constant) and isinstance(target.value, str)
                    and target.value.startswith(".")):
                continue
            path = target.value
            level = len(path) - len(path.lstrip("."))
            base = _base(module, ast.ImportFrom(module=path[level:] or None, names=[], level=level))
            if base in known:
                found.append(Import(module, base, node.lineno if key.lineno is None else key.lineno, (key.value,)))
    return found


@cache
def imports() -> tuple[Import, ...]:
    """Every import of one of our modules by one of our modules."""
    known = modules()
    return tuple(imp for module in known.values() for imp in imports_of(module, known))


def _outer_packages(target: str, source: str) -> list[str]:
    """The packages whose ``__init__`` runs before ``target`` loads, less those ``source`` is inside.

    Importing ``raftstore.net._frames`` from ``raftstore.api._methods`` runs
    ``raftstore.net``'s ``__init__`` first, so that is an edge too; a module of
    ``raftstore.net`` itself is already inside that package (its ``__init__``
    is running or has run), so a package that imports its own modules is not a
    cycle by itself.
    """
    parts = target.split(".")
    outer = []
    for size in range(1, len(parts)):
        package = ".".join(parts[:size])
        if source != package and not source.startswith(package + "."):
            outer.append(package)
    return outer


@cache
def edges() -> dict[str, dict[str, Import]]:
    """For each module, the modules it needs loaded, each with the first statement that says so."""
    graph: dict[str, dict[str, Import]] = {name: {} for name in modules()}
    for imp in imports():
        for target in (*_outer_packages(imp.target, imp.source.name), imp.target):
            if target != imp.source.name:
                graph[imp.source.name].setdefault(target, imp)
    return graph


def strongly_connected(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def shortest_cycle(graph: dict[str, dict[str, Import]], start: str, within: set[str]) -> list[str]:
    """The shortest path from ``start`` back to itself through ``within`` (start, ..., start)."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph[node]):
            if child not in within:
                continue
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if child not in came_from:
                came_from[child] = node
                queue.append(child)
    return []


def describe_cycles(limit: int = 30) -> list[str]:
    """One paragraph per cycle: its modules, then up to ``limit`` distinct shortest loops, each hop with its line."""
    graph = edges()
    text = []
    for component in strongly_connected(graph):
        members = set(component)
        lines = [f"{len(component)} modules import each other in a cycle: {', '.join(component)}"]
        seen: set[tuple[str, ...]] = set()
        for start in component:
            loop = shortest_cycle(graph, start, members)
            turn = loop.index(min(loop[:-1]))
            key = tuple(loop[turn:-1] + loop[:turn])  # the same loop entered elsewhere
            if key in seen:
                continue
            seen.add(key)
            hops = [f"{a} -> {b} ({graph[a][b].where})" for a, b in zip(loop, loop[1:])]
            lines.append("  loop: " + "; ".join(hops))
            if len(seen) == limit:
                lines.append("  (more loops not shown)")
                break
        text.append("\n".join(lines))
    return text


if __name__ == "__main__":
    print("\n\n".join(describe_cycles()) or "no cycle")
    if "-e" in sys.argv:
        for name, targets in sorted(edges().items()):
            print(name, "->", ", ".join(sorted(targets)))
