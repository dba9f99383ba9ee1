"""The package's import graph: no circles, and a HYSPLIT driver that knows nothing of Dask.

The graph is read from the source with :mod:`ast`: every ``import`` and
``from … import`` of a module, at its top or inside its functions, relative
imports resolved, and the package ``__init__`` modules an import runs on the
way; imports only for type checkers (under ``if TYPE_CHECKING:``) are left out,
since they never run.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Collection
from pathlib import Path

import pytest

import pystilt_dask

PACKAGE = Path(pystilt_dask.__file__).parent
NAME = "pystilt_dask"


def module_name(path: Path, root: Path = PACKAGE.parent) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(
    path: Path, modules: Collection[str] = (), root: Path = PACKAGE.parent
) -> set[str]:
    """Every module ``path`` imports (dotted, absolute), type-only imports excluded.

    ``from package import name`` counts as an import of ``package.name`` when
    that is one of ``modules``, else of ``package``.
    """
    module = module_name(path, root)
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


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Edges between the package's modules, ``{module: modules it imports}``.

    Importing ``a.b.c`` runs ``a.b/__init__.py`` first, so an import also
    counts as one of each package on the way, but for the importer's own
    packages (``a``, for a module of it), which are already being imported.
    """
    modules = {module_name(path, package.parent): path for path in package.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for target in imported_names(path, modules, package.parent):
            parts = target.split(".")
            for end in range(1, len(parts) + 1):
                step = ".".join(parts[:end])
                if step in modules and not f"{name}.".startswith(f"{step}."):
                    targets.add(step)
        graph[name] = targets - {name}
    return graph


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
    names = imported_names(source, {"pkg.other", "pkg.sub.sibling", "pkg.late"}, tmp_path)
    assert {"pkg.other", "pkg.sub.sibling", "pkg.late", "json"} <= names
    assert not any(name.startswith("pkg.typed") for name in names)
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_an_import_runs_the_packages_on_its_way(tmp_path):
    # sim's import of sub.probe runs sub/__init__ first, which imports sub.run,
    # which imports sim: a circle at run time that the named modules alone hide.
    files = {
        "pkg/__init__.py": "",
        "pkg/sim.py": "def task():\n    from .sub.probe import probe\n",
        "pkg/sub/__init__.py": "from .run import Run\n",
        "pkg/sub/run.py": "from ..sim import task\n",
        "pkg/sub/probe.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path / "pkg")
    assert graph["pkg.sim"] == {"pkg.sub", "pkg.sub.probe"}
    assert graph["pkg.sub.run"] == {"pkg.sim"}  # its own package is already running
    assert find_cycle(graph) == ["pkg.sim", "pkg.sub", "pkg.sub.run", "pkg.sim"]


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


# What a process looks like to others: the state importing a library must leave alone.
STATE_PROBE = """
import json, logging, os, signal, sys, warnings
from numba.core import caching

def state():
    loggers = {"": logging.getLogger()} | {
        name: logger for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    return {
        "warnings filters": [repr(f) for f in warnings.filters],
        "logging": {
            name: [logger.level, logger.disabled, logger.propagate, repr(logger.handlers)]
            for name, logger in loggers.items() if name.split(".")[0] != "pystilt_dask"
        },
        "logging.disable": logging.root.manager.disable,
        "environment": dict(os.environ),
        "signal handlers": {
            s.name: repr(signal.getsignal(s)) for s in signal.valid_signals()
            if isinstance(s, signal.Signals)
        },
        "excepthook": repr(sys.excepthook),
        "numba cache locators": [repr(c) for c in caching.CacheImpl._locator_classes],
    }

# pystilt_dask's dependencies first, in the order it imports them: what they
# change on import is theirs.
for name in sys.argv[1:]:
    try:
        __import__(name)
    except Exception:
        pass
before = state()
import pystilt_dask
after = state()
print(json.dumps({key: after[key] != before[key] for key in before}))
"""


def test_importing_the_package_changes_no_global_state_of_the_process():
    listing = subprocess.run(
        [sys.executable, "-c", "import sys, pystilt_dask; print('\\n'.join(sys.modules))"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    dependencies = [name for name in listing if name.split(".")[0] not in (NAME, "__main__")]
    changed = json.loads(
        subprocess.run(
            [sys.executable, "-c", STATE_PROBE, *dependencies],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()[-1]  # fmt: skip
    )
    assert [what for what, differs in changed.items() if differs] == []


KERNEL_CACHES = """
import json, sys
import numba
from pystilt_dask import defaults
from pystilt_dask.footprint import kernels

def caches():
    return sorted({
        kernel._cache.cache_path for kernel in vars(kernels).values()
        if hasattr(getattr(kernel, "_cache", None), "cache_path")
    })

plain = caches()
if sys.argv[1:] == ["own"]:
    defaults.use_own_numba_cache()
    defaults.use_own_numba_cache()

@numba.njit(cache=True)
def theirs(x):
    return x

print(json.dumps({"plain": plain, "ours": caches(), "theirs": theirs._cache.cache_path}))
"""


@pytest.mark.parametrize("own", [False, True], ids=["plain-import", "use_own_numba_cache"])
def test_only_use_own_numba_cache_moves_the_kernel_cache_and_only_ours(tmp_path, own):
    cache = tmp_path / "xdg" / "pystilt_dask" / "numba"
    script = tmp_path / "script.py"  # numba caches only functions with a source file
    script.write_text(KERNEL_CACHES)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DASK_", "NUMBA_"))}
    found = json.loads(
        subprocess.run(
            [sys.executable, str(script), *(["own"] if own else [])],
            env={**env, "XDG_CACHE_HOME": str(tmp_path / "xdg")},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()[-1]  # fmt: skip
    )
    assert found["plain"] and not any(path.startswith(str(cache)) for path in found["plain"])
    assert not found["theirs"].startswith(str(tmp_path / "xdg"))
    if own:
        assert found["ours"] and all(path.startswith(str(cache)) for path in found["ours"])
    else:
        assert found["ours"] == found["plain"]


LAZY_PROBE = """
import json, sys
import pystilt_dask
import xarray as xr
heavy = ("numba", "distributed", "zarr", "pystilt_dask.model", "pystilt_dask.config")
found = {"loaded": [name for name in heavy if name in sys.modules],
         "accessor": type(xr.DataArray([1.0]).stilt).__module__,
         "stilt config": __import__("dask.config").config.get("stilt.claim-ttl", None)}
found["Model"] = pystilt_dask.Model.__module__
found["dir"] = sorted(set(pystilt_dask.__all__) - set(dir(pystilt_dask)))
print(json.dumps(found))
"""


def test_the_package_imports_its_heavy_parts_on_first_use_and_registers_the_accessor_at_once():
    found = json.loads(
        subprocess.run(
            [sys.executable, "-c", LAZY_PROBE], capture_output=True, text=True, check=True
        ).stdout.splitlines()[-1]  # fmt: skip
    )
    assert found == {
        "loaded": [],
        "accessor": "pystilt_dask.accessor",
        "stilt config": "5 minutes",
        "Model": "pystilt_dask.model",
        "dir": [],
    }
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        pystilt_dask.nothing  # noqa: B018
