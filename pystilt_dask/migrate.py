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

from pathlib import Path
from typing import Any

from .config import HysplitConfig, ModelConfig, load_yaml
from .errors import ConfigError
from .migrate_receptors import migrate_receptors
from .migrate_sections import (
    MigrationWarning,
    absolute,
    execution_section,
    footprint_section,
    hysplit_section,
    location,
    met_section,
)

__all__ = ["MigrationWarning", "from_pystilt", "is_pystilt_config"]

#: The settings file a PYSTILT run writes in each ``settings=`` folder.
SETTINGS_FILE = "_settings.yaml"

#: Our receptor table, written beside PYSTILT's ``receptors.csv`` by default.
RECEPTORS_FILE = "receptors-stilt-dask.csv"

_TOP_KEYS = ("model", "mets", "variants", "execution", "output")


def from_pystilt(
    source: str | Path,
    *,
    variant: str | None = None,
    mets: dict[str, dict[str, Any]] | None = None,
    output: str | None = None,
    receptors: str | Path | None = None,
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
        variant comes over: variants of one set of HYSPLIT settings as named
        footprints, else the first as the plain settings and the others as
        ``variants`` (each its differing HYSPLIT settings and its footprint); all
        must run on one met.
    mets : dict, optional
        Meteorology (:class:`~pystilt_dask.config.MetConfig` fields by name); needed
        for a ``_settings.yaml``, which records which weather a run used but not
        where its files are. A relative directory starts from the working directory.
    output : str, optional
        The project store; default: PYSTILT's ``output`` with ``-stilt-dask``
        appended (PYSTILT's own layout stays untouched).
    receptors : str or pathlib.Path, optional
        Where to write the project's ``receptors.csv`` as our receptor table
        (:func:`~pystilt_dask.migrate_receptors.migrate_receptors`); default:
        ``receptors-stilt-dask.csv`` beside it.

    Returns
    -------
    ModelConfig
        Every path absolute: PYSTILT's relative paths (met directories, receptors,
        ``output``, ``exe_dir``, kernel tables) resolved against the PYSTILT
        project folder, as PYSTILT resolves them, whatever the working directory.

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
    path = absolute(source)
    if path.is_dir():
        path = path / "config.yaml"
    raw = _read(path)
    problems: list[str] = []
    if SETTINGS_FILE == path.name:
        data = _from_settings(path, raw, mets, problems)
    else:
        data = _from_project(raw, variant, problems, path.parent)
        if mets is not None:
            data["mets"] = {
                name: met_section(name, met, problems, None) for name, met in mets.items()
            }
    if output is not None:
        data["output"] = output
    if problems:
        raise ConfigError(
            f"{path} has settings with no equivalent in pystilt_dask: "
            + "; ".join(dict.fromkeys(problems))
        )
    table = path.parent / "receptors.csv"
    if SETTINGS_FILE != path.name and table.is_file():
        target = absolute(receptors) if receptors is not None else table.with_name(RECEPTORS_FILE)
        migrate_receptors(table, target)
        data["receptors"] = str(target)
    return ModelConfig.from_dict(data, base=path.parent)


def is_pystilt_config(path: str | Path) -> bool:
    """Whether a YAML file is a PYSTILT ``config.yaml`` (it declares ``variants``).

    ``variants`` is required by PYSTILT and unknown here, so it tells the two apart.
    """
    try:
        data = load_yaml(Path(path).read_text(), str(path))
    except (OSError, ConfigError):
        return False
    return isinstance(data, dict) and "variants" in data


def _read(path: Path) -> dict[str, Any]:
    try:
        data = load_yaml(path.read_text(), str(path))
    except FileNotFoundError:
        raise ConfigError(f"PYSTILT config {path} does not exist") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of settings")
    return data


# -- a project's config.yaml ---------------------------------------------------


def _from_project(
    raw: dict[str, Any], variant: str | None, problems: list[str], folder: Path
) -> dict[str, Any]:
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

    transports = {
        name: hysplit_section(fields, problems, name, folder) for name, fields in resolved.items()
    }
    for name, fields in resolved.items():
        if fields.get("realizations") is not None:
            transports[name]["realizations"] = int(fields["realizations"])
    used_mets = {name: _variant_met(name, fields, met_configs) for name, fields in resolved.items()}
    if len(set(used_mets.values())) > 1:
        raise ConfigError(
            f"variants {', '.join(variants)} run on different mets "
            f"({', '.join(sorted(set(used_mets.values())))}); a project here runs one met: "
            "migrate each variant on its own (variant=NAME, `stilt-dask migrate --variant NAME`)"
        )
    first_met = next(iter(used_mets.values()))
    mets = {first_met: met_configs[first_met]} | {
        k: v for k, v in met_configs.items() if k != first_met
    }
    footprints = {
        name: footprint_section(fields, problems, f"variants.{name}", folder)
        for name, fields in resolved.items()
    }
    data: dict[str, Any] = {
        "mets": {name: met_section(name, met, problems, folder) for name, met in mets.items()},
    }
    data.update(_variants(transports, footprints))
    execution = execution_section(raw.get("execution") or {}, data["hysplit"])
    if execution:
        data["execution"] = execution
    data["output"] = f"{location(str(raw.get('output', 'output')), folder)}-stilt-dask"
    return data


def _variants(
    transports: dict[str, dict[str, Any]], footprints: dict[str, dict[str, Any] | None]
) -> dict[str, Any]:
    """PYSTILT's variants as our ``hysplit``, ``footprints`` and ``variants`` sections.

    Variants of one set of HYSPLIT settings become named footprints of the plain
    settings, as before. Otherwise the first variant is the plain settings and each
    other one a variant holding the HYSPLIT settings in which it differs and its
    footprint (named after it, as PYSTILT's footprints are); one differing only
    in its footprint shares the plain particles.
    """
    first, *others = transports
    base = transports[first]
    if all(transports[name] == base for name in others):
        named = {name: fp for name, fp in footprints.items() if fp is not None}
        return {"hysplit": base, "footprints": named}
    variants = {}
    for name in others:
        own = transports[name]
        changed = {
            key: own.get(key, _default(key))
            for key in sorted(set(base) | set(own))
            if own.get(key, _default(key)) != base.get(key, _default(key))
        }
        variant: dict[str, Any] = {"hysplit": changed} if changed else {}
        variant["footprints"] = {name: footprints[name]} if footprints[name] is not None else {}
        variants[name] = variant
    plain = {first: footprints[first]} if footprints[first] is not None else {}
    return {"hysplit": base, "footprints": plain, "variants": variants}


def _default(key: str) -> Any:
    """Our default of a HYSPLIT setting (what a variant without it runs with)."""
    field = HysplitConfig.model_fields.get(key)
    return None if field is None else field.get_default(call_default_factory=True)


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
    settings.pop("realization", None)
    realizations = None
    if settings.pop("ensemble", False):
        # The record says "an ensemble", its folder how many: one realization=<k> each.
        realizations = len(list(path.parent.glob("realization=*")))
        if not realizations:
            problems.append(f"ensemble (no realization=<k> folders beside {path})")
    if mets is None:
        raise ConfigError(
            f"{path} records which weather its run used (source {met.get('source')!r}), "
            "not where the files are: give mets (`stilt-dask migrate --mets FILE`, "
            "a YAML file with a mets: mapping such as the PYSTILT config.yaml)"
        )
    footprints = {
        name: fp
        for name, fields in footprints.items()
        if (fp := footprint_section(fields, problems, f"footprint {name}", None)) is not None
    }
    output = tree.parent
    hysplit = hysplit_section(settings, problems, str(path), None)
    if realizations:
        hysplit["realizations"] = realizations
    return {
        "mets": {name: met_section(name, met, problems, None) for name, met in mets.items()},
        "hysplit": hysplit,
        "footprints": footprints,
        "output": f"{str(output).rstrip('/')}-stilt-dask",
    }
