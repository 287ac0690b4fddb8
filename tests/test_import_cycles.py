"""No import cycle among raftstore's modules (issue 13).

A cycle is how the flat package grew around ``Daemon``: each module that
needed the daemon imported it "just for typing" or late, inside a function,
and the daemon imported its callers back. So every import counts here,
``TYPE_CHECKING`` and function-local ones included (tests/import_graph.py
reads them from the source). A package's ``__init__`` importing its own
modules is not a cycle by itself; one of those modules importing a name back
from the ``__init__`` is.
"""

from __future__ import annotations

from pathlib import Path

from import_graph import Import, Module, describe_cycles, edges, imports, imports_of, modules, strongly_connected


def test_no_import_cycle() -> None:
    cycles = describe_cycles()
    assert not cycles, "import cycles (break each by moving the shared noun down a layer):\n\n" + "\n\n".join(cycles)


def test_late_and_type_checking_imports_count(tmp_path: Path) -> None:
    """The reader is not blind to the imports that hide cycles at run time, lazy export tables included."""
    source = tmp_path / "_b.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from ..node._daemon import Daemon\n"
        "def late():\n"
        "    from . import _c\n"
        "    from ..net import frames\n"
        "    import pkg.api\n"
        "_LAZY = {'Host': '..node._daemon', 'other': 'not a module path'}\n"
    )
    known = {"pkg", "pkg.api", "pkg.api._b", "pkg.api._c", "pkg.node", "pkg.node._daemon", "pkg.net"}
    found = imports_of(Module("pkg.api._b", source, False), known)
    assert [(imp.target, imp.names, imp.line) for imp in found] == [
        ("pkg.node._daemon", ("Daemon",), 3),
        ("pkg.api._c", (), 5),
        ("pkg.net", ("frames",), 6),
        ("pkg.api", (), 7),
        ("pkg.node._daemon", ("Host",), 8),  # a name a package __init__ loads on first use
    ]


def test_cycle_finder_on_a_known_graph() -> None:
    """The finder itself: a package importing its own module is no cycle; a module importing back is."""
    def graph(pairs: list[tuple[str, str]]) -> dict[str, dict[str, Import]]:
        nodes = {name for pair in pairs for name in pair}
        result: dict[str, dict[str, Import]] = {name: {} for name in nodes}
        for source, target in pairs:
            result[source][target] = Import(Module(source, Path(source), False), target, 1)
        return result

    assert strongly_connected(graph([("p", "p._a"), ("p._a", "p._b")])) == []
    assert strongly_connected(graph([("p", "p._a"), ("p._a", "p")])) == [["p", "p._a"]]
    assert strongly_connected(graph([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])) == [["a", "b", "c"]]


def test_relative_imports_resolve_to_the_module_or_the_package() -> None:
    """``from . import x`` needs module x, not the package; ``from ..pkg import name`` needs pkg's ``__init__``."""
    graph = edges()
    for imp in imports():
        assert imp.target in modules(), imp
        if imp.names:  # a name taken from a module, never a module taken as a name
            assert f"{imp.target}.{imp.names[0]}" not in modules(), imp
    # the keyring's __init__ loads its error leaf and nothing imports the keyring's __init__ back
    assert "raftstore.keyring._errors" in graph["raftstore.keyring"]
    assert all("raftstore.keyring" not in targets for name, targets in graph.items()
               if name.startswith("raftstore.keyring."))
