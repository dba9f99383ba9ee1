"""The package's import graph: no circles, and a HYSPLIT driver that knows nothing of Dask.

The graph is read from the source with :mod:`ast`: every ``import`` and
``from … import`` of a module, at its top or inside its functions, relative
imports resolved; imports only for type checkers (under ``if TYPE_CHECKING:``)
are left out, since they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Collection
from pathlib import Path

import pytest

import pystilt_dask

PACKAGE = Path(pystilt_dask.__file__).parent
NAME = "pystilt_dask"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(path: Path, modules: Collection[str] = ()) -> set[str]:
    """Every module ``path`` imports (dotted, absolute), type-only imports excluded.

    ``from package import name`` counts as an import of ``package.name`` when
    that is one of ``modules``, else of ``package``.
    """
    module = module_name(path)
    # A package's own relative imports start from the package; a module's from its parent.
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                source = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in modules else source)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found


def import_graph() -> dict[str, set[str]]:
    """Edges between the package's modules, ``{module: modules it imports}``.

    Importing ``a.b.c`` runs ``a`` and ``a.b`` first, but those are the package
    ``__init__`` modules every submodule passes through; an edge to them would
    make every package with a re-export look circular, so only the named module
    counts (and a package's own ``__init__`` importing its submodules does).
    """
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {
        name: {target for target in imported_names(path, modules) if target in modules} - {name}
        for name, path in modules.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A circle in ``graph`` as a path that returns to its start, or ``None``."""
    done: set[str] = set()

    def walk(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node) :] + [node]
        if node in done:
            return None
        for target in sorted(graph[node]):
            cycle = walk(target, [*path, node])
            if cycle:
                return cycle
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = walk(start, [])
        if cycle:
            return cycle
    return None


def all_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected group of modules, so a failure lists them all."""
    cycles = []
    remaining = {node: set(targets) for node, targets in graph.items()}
    while (cycle := find_cycle(remaining)) is not None:
        cycles.append(cycle)
        remaining[cycle[-2]].discard(cycle[-1])  # break it and look again
    return cycles


def test_the_graph_sees_imports_inside_functions_and_skips_type_only_ones(tmp_path):
    source = tmp_path / "pkg" / "sub" / "mod.py"
    source.parent.mkdir(parents=True)
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from .. import other\n"
        "from .sibling import thing\n"
        "if TYPE_CHECKING:\n"
        "    from ..typed import Only\n"
        "def f():\n"
        "    from ..late import g\n"
        "    import json\n"
    )
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path / "pkg"
    try:
        names = imported_names(source, {"pkg.other", "pkg.sub.sibling", "pkg.late"})
    finally:
        PACKAGE = saved
    assert {"pkg.other", "pkg.sub.sibling", "pkg.late", "json"} <= names
    assert not any(name.startswith("pkg.typed") for name in names)
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_has_no_import_circles():
    cycles = all_cycles(import_graph())
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


DASK_FREE = sorted(
    [PACKAGE / "trajectory.py", *(PACKAGE / "hysplit").glob("*.py")], key=lambda p: p.name
)


@pytest.mark.parametrize("path", DASK_FREE, ids=lambda p: module_name(p))
def test_the_hysplit_driver_imports_neither_dask_nor_distributed(path):
    dask_imports = sorted(
        name for name in imported_names(path) if name.split(".")[0] in ("dask", "distributed")
    )
    assert not dask_imports, f"{module_name(path)} imports {', '.join(dask_imports)}"
