"""PYSTILT's setting groups translated one at a time (for :mod:`pystilt_dask.migrate`).

Meteorology, HYSPLIT, footprint and execution settings, each from PYSTILT's
spelling to ours. Paths are resolved as PYSTILT resolves them, from ``folder``, the
PYSTILT project folder (``None`` for a ``_settings.yaml``, which names none: the
working directory). What has no equivalent is appended to ``problems`` when it
would change results, or dropped with a :class:`MigrationWarning` when it would not.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

from .config import HysplitConfig

#: PYSTILT's defaults where they differ from ours (``numpar``, ``varsiwant``).
PYSTILT_DEFAULTS: dict[str, Any] = {
    "n_hours": -24,
    "numpar": 200,
    "varsiwant": [
        "time", "indx", "long", "lati", "zagl", "foot", "mlht", "pres", "dens", "samt",
        "sigw", "tlgr",
    ],
}  # fmt: skip

_FOOTPRINT_KEYS = ("grid", "geometry", "cells_per_target", "smooth_factor", "time_integrate",
                   "transforms")  # fmt: skip


class MigrationWarning(UserWarning):
    """A PYSTILT setting that changes no result was dropped: it has no equivalent here."""


def note(message: str) -> None:
    """Warn that a setting that changes no result was dropped (from the caller's caller)."""
    warnings.warn(message, MigrationWarning, stacklevel=4)


def absolute(path: str | Path, base: Path | None = None) -> Path:
    """A path as PYSTILT resolves it: ``~`` and ``$VARIABLES`` expanded, from ``base``."""
    expanded = Path(os.path.expandvars(os.path.expanduser(str(path))))
    return ((base or Path.cwd()) / expanded).resolve()


def location(path: str, base: Path) -> str:
    """PYSTILT's ``output``: a URL as it is, a path resolved from ``base``."""
    if path.startswith("file://"):
        path = path.removeprefix("file://")
    return path.rstrip("/") if "://" in path else str(absolute(path, base))


# -- meteorology ---------------------------------------------------------------


def met_section(
    name: str, met: dict[str, Any], problems: list[str], folder: Path | None
) -> dict[str, Any]:
    """Our ``mets.<name>`` from PYSTILT's, its directory resolved from ``folder``."""
    met = dict(met)
    if met.get("download"):
        problems.append(
            f"mets.{name}.download (fetch the ARL files first, e.g. with arlmet, "
            "and give file_format and file_tres)"
        )
    if met.pop("subgrid_enable", False):
        problems.append(f"mets.{name}.subgrid_enable (crop the met files beforehand)")
    for key in ("download_from", "subgrid_bounds", "subgrid_levels", "subgrid_dir"):
        if met.pop(key, None) is not None:
            note(f"mets.{name}.{key} dropped: met files are read as they are")
    keep = ("directory", "file_format", "file_tres")
    if not met.get("download"):  # other keys are that archive's options
        problems.extend(f"mets.{name}.{key}" for key in sorted(set(met) - set(keep)))
    if met.get("directory") is not None:
        met["directory"] = str(absolute(met["directory"], folder))
    return {k: met[k] for k in keep if met.get(k) is not None}


# -- HYSPLIT settings ----------------------------------------------------------


def hysplit_section(
    fields: dict[str, Any], problems: list[str], where: str, folder: Path | None
) -> dict[str, Any]:
    """Our ``hysplit`` section from PYSTILT's flat transport keys (unset ones at its defaults)."""
    ours = set(HysplitConfig.model_fields) - {"executable", "timeout"}
    settings = {**PYSTILT_DEFAULTS, **fields}
    hysplit: dict[str, Any] = {}
    for key, value in settings.items():
        if key in _FOOTPRINT_KEYS or key in ("met", "realizations", "model"):
            continue
        if key == "ziscale":
            factors = _ziscale(value, int(settings["n_hours"]), problems)
            if factors is not None:
                hysplit["ziscale"] = factors
        elif key == "exe_dir":
            # PYSTILT starts it from `stilt run`'s working directory; a config here
            # must not depend on one.
            if value is not None:
                hysplit["executable"] = str(absolute(value, folder) / "hycs_std")
        elif key == "data_dir":
            if value is not None:
                problems.append(f"data_dir: {value} (HYSPLIT's data tables come with hycs_std)")
        elif key in ours:
            hysplit[key] = value
        else:
            problems.append(f"{key} (in {where}: no such HYSPLIT setting here)")
    return hysplit


def _ziscale(value: Any, n_hours: int, problems: list[str]) -> list[float] | None:
    """PYSTILT's ``ziscale`` as our hourly factors (``None``: unscaled, no ZICONTROL)."""
    if isinstance(value, list) and value and isinstance(value[0], list):
        value = value[0]  # STILT-R's one-element nested list
    # PYSTILT repeats a scalar over every hour of the run.
    factors = (
        [float(v) for v in value] if isinstance(value, list) else [float(value)] * abs(n_hours)
    )
    if any(f < 0 for f in factors):
        problems.append("ziscale < 0 (the met's own PBL height is not supported)")
        return None
    return None if all(f == 1.0 for f in factors) else factors


# -- footprints ----------------------------------------------------------------


def footprint_section(
    fields: dict[str, Any], problems: list[str], where: str, folder: Path | None
) -> dict[str, Any] | None:
    """One named footprint from PYSTILT's footprint keys; ``None`` for particles only."""
    if fields.get("geometry") is not None:
        problems.append(f"{where}.geometry (give a grid: xmin, xmax, ymin, ymax, xres)")
        return None
    grid = fields.get("grid")
    if grid is None:
        return None
    footprint = {k: v for k, v in grid.items() if k not in ("crs", "projection")}
    projection = grid.get("crs", grid.get("projection"))
    if projection is not None:
        footprint["projection"] = projection
    for key in ("smooth_factor", "time_integrate"):
        if key in fields:
            footprint[key] = fields[key]
    if fields.get("transforms"):  # the same spelling: passed through, tables located
        footprint["transforms"] = [_kernel_table(t, folder, problems) for t in fields["transforms"]]
    return footprint


def _kernel_table(transform: Any, folder: Path | None, problems: list[str]) -> Any:
    """A transform with its kernel ``table`` where PYSTILT reads it."""
    table = transform.get("table") if isinstance(transform, dict) else None
    if table is None or "://" in str(table) or Path(str(table)).is_absolute():
        return transform
    if folder is None:
        problems.append(
            f"transforms table {table!r} (relative to the PYSTILT project folder, "
            "which a _settings.yaml does not record: migrate the project's config.yaml)"
        )
        return transform
    if re.fullmatch(r"[A-Za-z0-9_-]+", str(table)):  # a project table's name
        table = f"tables/{table}.parquet"
    return {**transform, "table": str(folder / table)}


# -- execution -----------------------------------------------------------------


def execution_section(execution: dict[str, Any], hysplit: dict[str, Any]) -> dict[str, Any]:
    """Our ``execution`` (and ``hysplit.timeout``) from PYSTILT's run controls."""
    execution = dict(execution)
    backend = execution.pop("backend", "local")
    ours: dict[str, Any] = {"backend": backend}
    cluster: dict[str, Any] = {}
    cpus = execution.pop("cpus", None)
    n_workers = execution.pop("n_workers", None)
    if backend == "local" and cpus is not None:
        ours["n_workers"] = cpus
    elif backend == "slurm":
        if n_workers is not None:
            ours["n_workers"] = n_workers
        if cpus is not None:
            note("execution.cpus dropped: each Dask worker runs one simulation at a time")
    if isinstance(execution.get("time"), int):  # Slurm minutes, as PYSTILT takes them
        execution["time"] = f"{execution['time'] // 60:02d}:{execution['time'] % 60:02d}:00"
    for theirs, key in (("time", "walltime"), ("mem", "memory"), ("partition", "queue"),
                        ("account", "account")):  # fmt: skip
        if execution.get(theirs) is not None:
            cluster[key] = execution.pop(theirs)
    directives = [f"--{k}={v}" for k, v in (execution.pop("slurm", None) or {}).items()]
    if execution.get("qos") is not None:
        directives.append(f"--qos={execution.pop('qos')}")
    if directives:
        cluster["job_extra_directives"] = directives
    if execution.get("setup"):
        cluster["job_script_prologue"] = list(execution.pop("setup"))
    if execution.get("timeout") is not None:
        hysplit["timeout"] = execution.pop("timeout")
    if execution.pop("keep_workdir", False):
        note(
            "execution.keep_workdir dropped: failed work directories are kept with "
            "dask.config stilt.keep-failed-workdirs; successful ones never are"
        )
    for key, value in execution.items():
        if value not in (None, [], {}):
            note(f"execution.{key} dropped: no equivalent (Dask schedules the simulations)")
    if cluster:
        ours["cluster"] = cluster
    return ours if ours != {"backend": "local"} else {}
