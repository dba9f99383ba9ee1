"""PYSTILT settings as a pystilt_dask configuration (``stilt-dask migrate``).

Two PYSTILT files are read: a project's ``config.yaml`` (flat HYSPLIT and
footprint keys, ``mets``, ``variants``, ``execution``, ``output``), and the
resolved ``_settings.yaml`` a PYSTILT run writes in each settings folder of its
output (``particles/settings=<variant>-<hash>/`` holds every HYSPLIT setting the
particles were made with; ``footprints/settings=…/`` each footprint's, naming its
particles folder). Equal settings give equal particles: both packages run the
same ``hycs_std`` with the same seed convention.

Settings with no equivalent here are each named in one message: those that
would change results make the migration fail (a :class:`ConfigError` listing
them all), the others are dropped with a :class:`MigrationWarning`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import yaml

from .config import HysplitConfig, ModelConfig
from .errors import ConfigError

#: The settings file a PYSTILT run writes in each ``settings=`` folder.
SETTINGS_FILE = "_settings.yaml"

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
_TOP_KEYS = ("model", "mets", "variants", "execution", "output")


class MigrationWarning(UserWarning):
    """A PYSTILT setting that changes no result was dropped: it has no equivalent here."""


def from_pystilt(
    source: str | Path,
    *,
    variant: str | None = None,
    mets: dict[str, dict[str, Any]] | None = None,
    output: str | None = None,
) -> ModelConfig:
    """Translate a PYSTILT configuration into a :class:`ModelConfig`.

    Parameters
    ----------
    source : str or pathlib.Path
        A PYSTILT ``config.yaml``, the project folder holding it, or a
        ``_settings.yaml`` from a PYSTILT output directory (``particles/…``: its
        footprints are those made from these particles; ``footprints/…``: that
        footprint and its particles).
    variant : str, optional
        The PYSTILT variant to take from a ``config.yaml``. Without it, every
        variant must share one set of HYSPLIT settings (they then become named
        footprints); variants that differ in them are separate projects here.
    mets : dict, optional
        Meteorology (:class:`~pystilt_dask.config.MetConfig` fields by name); needed
        for a ``_settings.yaml``, which records which weather a run used but not
        where its files are.
    output : str, optional
        The project store; default: PYSTILT's ``output`` with ``-stilt-dask``
        appended (PYSTILT's own layout stays untouched).

    Returns
    -------
    ModelConfig
        Relative paths resolved against the folder of ``source``.

    Raises
    ------
    ConfigError
        Naming every setting with no equivalent that would change results, or
        an unreadable file.

    Warns
    -----
    MigrationWarning
        One per dropped setting that changes no result.
    """
    path = Path(source)
    if path.is_dir():
        path = path / "config.yaml"
    raw = _read(path)
    problems: list[str] = []
    if SETTINGS_FILE == path.name:
        data = _from_settings(path, raw, mets, problems)
    else:
        data = _from_project(raw, variant, problems)
        if mets is not None:
            data["mets"] = {name: _met(name, met, problems) for name, met in mets.items()}
        receptors = path.parent / "receptors.csv"
        if receptors.is_file():
            data["receptors"] = str(receptors)
    if output is not None:
        data["output"] = output
    if problems:
        raise ConfigError(
            f"{path} has settings with no equivalent in pystilt_dask: "
            + "; ".join(dict.fromkeys(problems))
        )
    return ModelConfig.from_dict(data, base=path.parent)


def is_pystilt_config(path: str | Path) -> bool:
    """Whether a YAML file is a PYSTILT ``config.yaml`` (it declares ``variants``).

    ``variants`` is required by PYSTILT and unknown here, so it tells the two apart.
    """
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "variants" in data


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"PYSTILT config {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of settings")
    return data


def _note(message: str) -> None:
    warnings.warn(message, MigrationWarning, stacklevel=4)


# -- a project's config.yaml ---------------------------------------------------


def _from_project(raw: dict[str, Any], variant: str | None, problems: list[str]) -> dict[str, Any]:
    raw = dict(raw)
    if raw.get("model", "hysplit") != "hysplit":
        problems.append(f"model: {raw['model']!r} (HYSPLIT is the only transport model here)")
    variants = raw.get("variants") or {}
    if not variants:
        raise ConfigError("a PYSTILT config.yaml needs variants (PYSTILT refuses one without)")
    if variant is not None:
        if variant not in variants:
            raise ConfigError(f"no variant {variant!r} (the config has {', '.join(variants)})")
        variants = {variant: variants[variant]}
    met_configs = raw.get("mets") or {}
    defaults = {k: v for k, v in raw.items() if k not in _TOP_KEYS}
    resolved = {name: _merge(defaults, spec or {}) for name, spec in variants.items()}

    transports = {name: _transport(fields, problems, name) for name, fields in resolved.items()}
    distinct = {yaml.safe_dump(t, sort_keys=True) for t in transports.values()}
    used_mets = {name: _variant_met(name, fields, met_configs) for name, fields in resolved.items()}
    if len(distinct) > 1 or len(set(used_mets.values())) > 1:
        differing = sorted(
            key
            for key in set().union(*transports.values())
            if len({repr(t.get(key)) for t in transports.values()}) > 1
        )
        what = ", ".join(differing) if differing else "met"
        raise ConfigError(
            f"variants {', '.join(variants)} differ in HYSPLIT settings or met ({what}); "
            "a project here has one set of them: migrate each variant on its own "
            "(variant=NAME, `stilt-dask migrate --variant NAME`)"
        )
    for name, fields in resolved.items():
        if fields.get("realizations") is not None:
            problems.append(f"variants.{name}.realizations (ensembles are not supported)")
    first_met = next(iter(used_mets.values()))
    mets = {first_met: met_configs[first_met]} | {
        k: v for k, v in met_configs.items() if k != first_met
    }
    data: dict[str, Any] = {
        "mets": {name: _met(name, met, problems) for name, met in mets.items()},
        "hysplit": next(iter(transports.values())),
        "footprints": {
            name: fp
            for name, fields in resolved.items()
            if (fp := _footprint(fields, problems, f"variants.{name}")) is not None
        },
    }
    execution = _execution(raw.get("execution") or {}, data["hysplit"])
    if execution:
        data["execution"] = execution
    data["output"] = f"{str(raw.get('output', 'output')).rstrip('/')}-stilt-dask"
    return data


def _merge(defaults: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    # As PYSTILT merges a variant: a grid mapping updates the default grid field by field.
    merged = {**defaults, **spec}
    if isinstance(spec.get("grid"), dict) and isinstance(defaults.get("grid"), dict):
        merged["grid"] = {**defaults["grid"], **spec["grid"]}
    return merged


def _variant_met(name: str, fields: dict[str, Any], mets: dict[str, Any]) -> str:
    met = fields.get("met") or (name if name in mets else None)
    if met is None and len(mets) == 1:
        met = next(iter(mets))
    if met not in mets:
        raise ConfigError(f"variant {name!r} names no met of the config ({', '.join(mets)})")
    return met


def _met(name: str, met: dict[str, Any], problems: list[str]) -> dict[str, Any]:
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
            _note(f"mets.{name}.{key} dropped: met files are read as they are")
    keep = ("directory", "file_format", "file_tres")
    if not met.get("download"):  # other keys are that archive's options
        problems.extend(f"mets.{name}.{key}" for key in sorted(set(met) - set(keep)))
    if met.get("directory") is not None:  # PYSTILT expands ~ and $VARIABLES
        met["directory"] = os.path.expandvars(os.path.expanduser(str(met["directory"])))
    return {k: met[k] for k in keep if met.get(k) is not None}


# -- HYSPLIT settings ----------------------------------------------------------


def _transport(fields: dict[str, Any], problems: list[str], where: str) -> dict[str, Any]:
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
            if value is not None:
                hysplit["executable"] = str(Path(value) / "hycs_std")
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


def _footprint(fields: dict[str, Any], problems: list[str], where: str) -> dict[str, Any] | None:
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
    if fields.get("transforms"):
        footprint["transforms"] = fields["transforms"]  # the same spelling: passed through
    return footprint


# -- execution -----------------------------------------------------------------


def _execution(execution: dict[str, Any], hysplit: dict[str, Any]) -> dict[str, Any]:
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
            _note("execution.cpus dropped: each Dask worker runs one simulation at a time")
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
        _note(
            "execution.keep_workdir dropped: failed work directories are kept with "
            "dask.config stilt.keep-failed-workdirs; successful ones never are"
        )
    for key, value in execution.items():
        if value not in (None, [], {}):
            _note(f"execution.{key} dropped: no equivalent (Dask schedules the simulations)")
    if cluster:
        ours["cluster"] = cluster
    return ours if ours != {"backend": "local"} else {}


# -- a run's _settings.yaml ----------------------------------------------------


def _from_settings(
    path: Path, record: dict[str, Any], mets: dict[str, Any] | None, problems: list[str]
) -> dict[str, Any]:
    tree = path.parent.parent  # <output>/particles or <output>/footprints
    if "particles" in record:  # a footprint folder's record names its particles folder
        footprints = {record.get("name", "default"): record["settings"]}
        particles_path = tree.parent / "particles" / f"settings={record['particles']}" / path.name
        record = _read(particles_path)
    else:
        footprints = {}
        for other in sorted((tree.parent / "footprints").glob(f"settings=*/{SETTINGS_FILE}")):
            made = _read(other)
            if made.get("particles") == path.parent.name.removeprefix("settings="):
                name = made.get("name", "default")
                key = (
                    name if name not in footprints else other.parent.name.removeprefix("settings=")
                )
                footprints[key] = made["settings"]
    settings = dict(record.get("settings") or {})
    model = settings.pop("model", {}) or {}
    if model.get("name", "hysplit") != "hysplit":
        problems.append(f"model: {model['name']!r} (HYSPLIT is the only transport model here)")
    if model.get("data_files"):
        problems.append(f"model.data_files: {sorted(model['data_files'])} (custom data tables)")
    met = settings.pop("met", {}) or {}
    if met.get("crop"):
        problems.append("met.crop (crop the met files beforehand)")
    if settings.pop("ensemble", False) or settings.pop("realization", None) is not None:
        problems.append("ensemble (realizations are not supported)")
    if mets is None:
        raise ConfigError(
            f"{path} records which weather its run used (source {met.get('source')!r}), "
            "not where the files are: give mets (`stilt-dask migrate --mets FILE`, "
            "a YAML file with a mets: mapping such as the PYSTILT config.yaml)"
        )
    footprints = {
        name: fp
        for name, fields in footprints.items()
        if (fp := _footprint(fields, problems, f"footprint {name}")) is not None
    }
    output = tree.parent
    return {
        "mets": {name: _met(name, met, problems) for name, met in mets.items()},
        "hysplit": _transport(settings, problems, str(path)),
        "footprints": footprints,
        "output": f"{str(output).rstrip('/')}-stilt-dask",
    }
