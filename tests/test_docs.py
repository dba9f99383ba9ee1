"""The documentation site: generated configuration reference, troubleshooting coverage, build.

- The configuration reference (``docs/_ext/config_reference.py``, rendered on every
  docs build) lists every field of the config models with its default.
- Every error message pystilt_dask raises on purpose appears in
  ``docs/troubleshooting.md`` (its literal text, with any words standing for its
  placeholders): a new message without documentation fails here.
- ``sphinx -W`` builds the site, executing the notebooks (``tests/test_notebooks.py``
  checks what they show).
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from pystilt_dask import config as cfg
from pystilt_dask.fingerprint import ENSEMBLE_SIZE, RUN_CONTROL

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PACKAGE = ROOT / "pystilt_dask"
TROUBLESHOOTING = DOCS / "troubleshooting.md"

#: The StiltError subclasses whose messages the CLI prints (``error: <message>``, exit 2)
#: or a failure record stores (``stilt-dask logs``).
STILT_ERRORS = {
    "StiltError", "ConfigError", "ReceptorError", "MeteorologyError", "StoreError",
    "HysplitNotFoundError", "HysplitError",
}  # fmt: skip
#: Modules whose ``ValueError``s are pydantic validators: their messages reach the user
#: inside a ConfigError or ReceptorError.
VALIDATOR_MODULES = ("config/*.py", "models.py", "transforms.py", "crs.py")


# ----------------------------------------------------------------------------- helpers


def _load_reference_module():
    spec = importlib.util.spec_from_file_location(
        "config_reference", DOCS / "_ext" / "config_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "text"`` assignments (e.g. ``CANCELLED = "cancelled"``)."""
    out = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out[target.id] = node.value.value
    return out


def _pieces(node: ast.AST, constants: dict[str, str]) -> list[str | None] | None:
    """A message expression as literal pieces, ``None`` standing for each placeholder.

    Returns ``None`` for an expression with no literal text at all (a variable).
    """
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Name) and node.id in constants:
        return [constants[node.id]]
    if isinstance(node, ast.JoinedStr):
        return [v.value if isinstance(v, ast.Constant) else None for v in node.values]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left = _pieces(node.left, constants)
        right = _pieces(node.right, constants)
        if left is None and right is None:
            return None
        return (left or [None]) + (right or [None])
    return None


def template(node: ast.AST, constants: dict[str, str]) -> str | None:
    """A message as it is documented: its literal text with ``<…>`` for each placeholder.

    Leading and trailing placeholders are dropped (``f"{path} must hold …"`` is
    documented by ``must hold …``); whitespace is collapsed. ``None`` when the
    message has no literal text (a variable, ``_describe(exc)``).
    """
    pieces = _pieces(node, constants)
    if pieces is None:
        return None
    while pieces and (pieces[0] is None or not pieces[0].strip()):
        pieces = pieces[1:]
    while pieces and (pieces[-1] is None or not pieces[-1].strip()):
        pieces = pieces[:-1]
    text = "".join("<…>" if piece is None else piece for piece in pieces)
    text = re.sub(r"(<…>)+", "<…>", text)
    return " ".join(text.split()) or None


def documented(text: str, page: str) -> bool:
    """Whether ``page`` holds the message ``text``, each ``<…>`` standing for any text
    on the same line (the page writes a name there, e.g. ``<path>``)."""
    parts = [re.escape(part).replace(r"\ ", " ") for part in text.split("<…>")]
    pattern = "[^\n]+?".join(parts).replace(" ", "[ \t]+")
    return re.search(pattern, page) is not None


def _callee(node: ast.Call) -> str | None:
    func = node.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)


def raised_messages() -> list[tuple[str, str]]:
    """``(where, fragment)`` for every documented-message source in the package.

    - ``raise X(message, ...)`` with X a StiltError subclass;
    - ``raise HysplitError(reason, message, ...)``: the reason and the message;
    - the ``(reason, message)`` pairs HYSPLIT failures are classified into
      (``hysplit/run.py``: ``_FAILURE_PHRASES`` and ``classify``'s returns);
    - ``raise ValueError(...)`` in the pydantic validators of config/ and receptors/models.py.
    """
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        constants = _constants(tree)
        rel = path.relative_to(ROOT)

        def add(node: ast.AST, line: int, constants=constants, rel=rel) -> None:
            text = template(node, constants)
            if text:
                found.append((f"{rel}:{line}", text))

        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                name = _callee(node.exc)
                args = node.exc.args
                if name == "HysplitError":
                    for arg in args[:2]:
                        add(arg, node.lineno)
                elif name in STILT_ERRORS and args:
                    add(args[0], node.lineno)
                elif name == "ValueError" and any(map(path.match, VALIDATOR_MODULES)) and args:
                    add(args[0], node.lineno)
            if path.name == "run.py" and path.parent.name == "hysplit":
                pairs = []
                if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "_FAILURE_PHRASES" for t in node.targets
                ):
                    pairs = [e.elts[:1] for e in node.value.elts if isinstance(e, ast.Tuple)]
                if isinstance(node, ast.FunctionDef) and node.name == "classify":
                    pairs = [
                        r.value.elts
                        for r in ast.walk(node)
                        if isinstance(r, ast.Return) and isinstance(r.value, ast.Tuple)
                    ]
                for pair in pairs:
                    for element in pair:
                        add(element, element.lineno)
    return found


def _page() -> str:
    # One line per line of the page, runs of spaces collapsed.
    return "\n".join(" ".join(line.split()) for line in TROUBLESHOOTING.read_text().splitlines())


# ----------------------------------------------------------------------------- tests


def test_message_extraction_finds_the_known_kinds():
    """The extraction itself works: it finds messages of every kind it looks for."""
    fragments = {text for _, text in raised_messages()}
    assert "config file <…> does not exist" in fragments  # f"config file {path} does not exist"
    assert "must hold a mapping of settings" in fragments  # f"{path} must hold ..."
    assert documented("met file <…> is damaged: <…>", "met file `x.arl` is damaged: bad record")
    assert not documented("met file <…> is damaged: <…>", "met file x.arl\nis damaged: y")
    assert "no receptors given and config.receptors is not set" in fragments
    assert {"timeout", "cancelled", "met_coverage", "no_particle_data"} <= fragments
    assert len(fragments) > 50


def test_every_raised_message_is_in_troubleshooting():
    page = _page()
    missing = [
        f"{where}: {text!r}" for where, text in raised_messages() if not documented(text, page)
    ]
    assert not missing, (
        "error messages raised in pystilt_dask but not documented in "
        "docs/troubleshooting.md (add each with its cause and fix):\n" + "\n".join(missing)
    )


def _reference_rows() -> dict[str, dict[str, list[str]]]:
    """Generated reference as {model name: {field: cells}}."""
    text = _load_reference_module().render()
    tables: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        heading = re.match(r"## `[^`]*`: (\w+)$", line)
        if heading:
            current = tables.setdefault(heading.group(1), {})
            continue
        row = re.match(r"\| `(\w+)` \|", line)
        if row and current is not None:
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            current[row.group(1)] = cells
    return tables


MODELS = (
    cfg.ModelConfig, cfg.MetConfig, cfg.HysplitConfig, cfg.FootprintConfig,
    cfg.VariantConfig, cfg.ExecutionConfig, cfg.AdaptConfig, cfg.CropConfig,
)  # fmt: skip


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_config_reference_lists_every_field_with_its_default(model: type[BaseModel]):
    rows = _reference_rows().get(model.__name__)
    assert rows is not None, f"no section for {model.__name__} in the configuration reference"
    assert list(rows) == list(model.model_fields), "fields missing, extra or out of order"
    for name, field in model.model_fields.items():
        _, _type, default, changes, _description = rows[name]
        if field.is_required():
            assert default == "required", name
            continue
        value = field.default_factory() if field.default_factory else field.default
        if isinstance(value, BaseModel):
            assert type(value).__name__ in default, name
            continue
        shown = yaml.safe_load(default.strip("`"))
        expected = list(value) if isinstance(value, tuple) else value
        assert shown == expected, f"{model.__name__}.{name}: page {shown!r}, model {expected!r}"
        if model is cfg.HysplitConfig and name in ENSEMBLE_SIZE:
            assert changes == "no (adds or drops realizations)", name
        elif model is cfg.HysplitConfig:
            assert changes == ("no (run control)" if name in RUN_CONTROL else "yes"), name


def test_config_reference_descriptions_come_from_the_docstrings():
    rows = _reference_rows()
    assert "Particles released per simulation" in rows["HysplitConfig"]["numpar"][4]
    assert "Cell height" in rows["FootprintConfig"]["yres"][4]
    assert rows["ExecutionConfig"]["retries"][3] == "no"
    assert rows["FootprintConfig"]["xres"][3] == "yes, per footprint name"


def test_api_page_documents_the_public_api():
    import pystilt_dask

    page = (DOCS / "api.md").read_text()
    for name in pystilt_dask.__all__:
        assert re.search(rf"^\.\. auto\w+:: pystilt_dask\.{name}$", page, re.M), name
    for path in (
        "pystilt_dask.execution.run.Run", "pystilt_dask.model.Footprint",
        "pystilt_dask.store.status.Status", "pystilt_dask.store.verify.VerifyReport",
    ):  # fmt: skip
        assert f":: {path}\n" in page, path


def test_deployment_settings_are_listed():
    """Every key of the `stilt` dask.config namespace (pystilt_dask/stilt.yaml) is listed."""
    table = _load_reference_module().deployment_table()
    stilt = yaml.safe_load((PACKAGE / "stilt.yaml").read_text())["stilt"]
    for key in stilt:
        assert f"| `stilt.{key}`" in table, key
    assert "| — |" not in table, "a deployment setting without a comment in stilt.yaml"


@pytest.mark.timeout(1800)  # the build executes the notebooks
def test_docs_site_builds_without_warnings(docs_site):
    reference = (docs_site / "configuration.html").read_text()
    for name in cfg.HysplitConfig.model_fields:
        assert f'<span class="pre">{name}</span>' in reference, name
    for page in ("troubleshooting", "migrating", "api", "getting_started", "notebooks/index"):
        assert (docs_site / f"{page}.html").is_file(), page
