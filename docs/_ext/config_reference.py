"""Render the configuration reference from the pydantic models of ``pystilt_dask.config``.

``conf.py`` calls :func:`write_reference` on every build, so the page always lists
the fields the installed package has. Descriptions come from the numpydoc
``Parameters`` section of each model's docstring (``a, b : type`` entries share
one description); a field the docstring does not describe is shown with "—".
``tests/test_docs.py`` compares the rendered tables with the models.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

import pystilt_dask
from pystilt_dask import config as cfg
from pystilt_dask.fingerprint import ENSEMBLE_SIZE, RUN_CONTROL

#: The sections of ``config.yaml``, in page order: (YAML path, model).
SECTIONS: tuple[tuple[str, type[BaseModel]], ...] = (
    ("(top level)", cfg.ModelConfig),
    ("mets.<name>", cfg.MetConfig),
    ("hysplit", cfg.HysplitConfig),
    ("footprints.<name>", cfg.FootprintConfig),
    ("variants.<name>", cfg.VariantConfig),
    ("execution, profiles.<name>", cfg.ExecutionConfig),
    ("execution.adapt", cfg.AdaptConfig),
    ("execution.crop", cfg.CropConfig),
)

NO_DESCRIPTION = "—"


def parameter_descriptions(model: type) -> dict[str, str]:
    """Map each name in the docstring's numpydoc ``Parameters`` section to its description."""
    lines = inspect.cleandoc(model.__doc__ or "").splitlines()
    try:
        start = next(
            i for i in range(len(lines) - 1)
            if lines[i].strip() == "Parameters" and set(lines[i + 1].strip()) == {"-"}
        )  # fmt: skip
    except StopIteration:
        return {}
    out: dict[str, str] = {}
    names: list[str] = []
    body: list[str] = []

    def flush() -> None:
        text = " ".join(part.strip() for part in body).strip()
        for name in names:
            out[name] = text

    i = start + 2
    while i < len(lines):
        line = lines[i]
        if i + 1 < len(lines) and line.strip() and set(lines[i + 1].strip()) == {"-"}:
            break  # the next section (Examples, Notes, ...)
        if line and not line[0].isspace():
            flush()
            head = line.split(" : ", 1)[0].rstrip(" :")
            names = [n.strip() for n in head.split(",") if n.strip()]
            body = []
        elif line.strip():
            body.append(line)
        i += 1
    flush()
    return out


def type_name(annotation: Any) -> str:
    """A short, readable spelling of a field's type."""
    if annotation is type(None):
        return "None"
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = typing.get_args(annotation)
        shown = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{shown}]"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def default_value(field: Any) -> Any:
    """The field's default (``default_factory`` called), or :data:`Ellipsis` when required."""
    if field.is_required():
        return ...
    if field.default_factory is not None:
        return field.default_factory()
    return field.default


def format_default(field: Any) -> str:
    """The default as it would be written in ``config.yaml``."""
    value = default_value(field)
    if value is ...:
        return "required"
    if isinstance(value, BaseModel):
        return f"{type(value).__name__} defaults"
    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    text = text.removesuffix("\n...").removesuffix("...").strip()
    return f"`{text}`"


def changes_results(model: type[BaseModel], name: str) -> str:
    """Whether changing this setting changes results, as the project store judges it."""
    if model is cfg.HysplitConfig:
        if name in ENSEMBLE_SIZE:
            return "no (adds or drops realizations)"
        return "no (run control)" if name in RUN_CONTROL else "yes"
    if model is cfg.VariantConfig:
        return "yes, per variant name"
    if model is cfg.FootprintConfig:
        return "yes, per footprint name"
    if model is cfg.MetConfig:
        return "not checked (the met data does; a path does not)"
    if model is cfg.ModelConfig:
        return {
            "hysplit": "see `hysplit`",
            "footprints": "see `footprints.<name>`",
            "mets": "see `mets.<name>`",
            "receptors": "no (which simulations exist)",
        }.get(name, "no")
    return "no"


def _markdown(text: str) -> str:
    # reST roles (:func:`x`, :data:`~a.b`) as plain code spans; ``x`` is already one.
    return re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", text)


def _cell(text: str) -> str:
    return _markdown(text).replace("|", "\\|").replace("\n", " ")


def _intro(model: type) -> str:
    """The docstring's text before its first numpydoc section, paragraphs kept."""
    doc = inspect.cleandoc(model.__doc__ or "")
    doc = re.split(r"\n(?=[A-Z][a-z]+\n-{3,})", doc, maxsplit=1)[0]
    return _markdown(doc.strip())


def section_table(path: str, model: type[BaseModel]) -> list[str]:
    """The markdown of one model's section: heading, summary and field table."""
    described = parameter_descriptions(model)
    lines = [
        f"## `{path}`: {model.__name__}",
        "",
        _intro(model),
        "",
        "| field | type | default | changes results | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, field in model.model_fields.items():
        description = described.get(name) or NO_DESCRIPTION
        lines.append(
            f"| `{name}` | {_cell(type_name(field.annotation))} | {_cell(format_default(field))} "
            f"| {changes_results(model, name)} | {_cell(description)} |"
        )
    lines.append("")
    return lines


def undescribed_fields() -> dict[str, list[str]]:
    """Fields each model's docstring does not describe, by model name."""
    out = {}
    for _, model in SECTIONS:
        described = parameter_descriptions(model)
        missing = [name for name in model.model_fields if not described.get(name)]
        if missing:
            out[model.__name__] = missing
    return out


def render() -> str:
    """The whole generated reference (markdown, myst)."""
    lines = [
        "<!-- generated by docs/_ext/config_reference.py from pystilt_dask.config; do not edit -->",
        "",
    ]
    for path, model in SECTIONS:
        lines += section_table(path, model)
    missing = undescribed_fields()
    if missing:
        lines += [
            "## Fields without a description",
            "",
            "These fields have no entry in their model's docstring yet (shown as "
            f"{NO_DESCRIPTION} above). The HYSPLIT ones are SETUP.CFG namelist keys with "
            "HYSPLIT's own meaning and R-STILT's default; see the HYSPLIT user's guide.",
            "",
        ]
        for model_name, names in missing.items():
            lines.append(f"- {model_name}: {', '.join(f'`{n}`' for n in names)}")
        lines.append("")
    return "\n".join(lines)


#: The deployment defaults, with a comment above each key.
STILT_YAML = Path(pystilt_dask.__file__).with_name("stilt.yaml")


def deployment_settings(path: Path = STILT_YAML) -> list[tuple[str, str, str]]:
    """``(key, default, comment)`` of each setting in the ``stilt`` namespace.

    Keys holding a mapping whose own keys have comments (``local-cluster``) are
    listed key by key; other mappings (``cluster-config``) as one entry.
    """
    data = yaml.safe_load(path.read_text())["stilt"]
    rows: list[tuple[str, str, str]] = []
    comment: list[str] = []
    stack: list[tuple[int, str]] = []
    in_stilt = False
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped:
            comment = []
            continue
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("#").strip())
            continue
        indent = len(line) - len(line.lstrip())
        key = stripped.split(":", 1)[0]
        if indent == 0:
            in_stilt = key == "stilt"
            stack, comment = [], []
            continue
        if not in_stilt:
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parents = [k for _, k in stack]
        stack.append((indent, key))
        value: Any = data
        for part in [*parents, key]:
            value = value[part] if isinstance(value, dict) else None
        listed = {row[0] for row in rows}
        if any(".".join(["stilt", *parents[: i + 1]]) in listed for i in range(len(parents))):
            comment = []
            continue  # inside a mapping listed as one entry
        if isinstance(value, dict) and not comment:
            continue  # a group whose keys carry the comments
        nested = isinstance(value, dict) and any(isinstance(v, dict) for v in value.values())
        flow = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000)
        shown = "see `pystilt_dask/stilt.yaml`" if nested else f"`{_flow(flow)}`"
        rows.append((".".join(["stilt", *parents, key]), shown, " ".join(comment)))
        comment = []
    return rows


def _flow(text: str) -> str:
    return text.strip().removesuffix("...").strip()


def deployment_table() -> str:
    """The markdown table of :func:`deployment_settings`."""
    lines = ["| key | default | what it does |", "| --- | --- | --- |"]
    for key, default, comment in deployment_settings():
        lines.append(f"| `{key}` | {_cell(default)} | {_cell(comment) or NO_DESCRIPTION} |")
    return "\n".join(lines) + "\n"


def write_reference(path: str | Path) -> Path:
    """Write :func:`render` to ``path`` when its content changed (keeps rebuilds incremental)."""
    path = Path(path)
    for target, text in ((path, render()), (path.with_name("deployment.md"), deployment_table())):
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
    return path
