"""Starter projects: a commented template, and a demo on idealized meteorology.

``stilt-dask init DIR`` writes :func:`write_template_project`: a commented
``config.yaml`` and a receptor table with one example row, for a user to edit.

``stilt-dask init --demo DIR`` writes :func:`make_demo_project`: 12 h of idealized
ARL met (5 m/s from the west-southwest, a diurnal mixed layer), a receptor table
of measurements at two towers, hourly from 06:00 UTC (eight by default), and a
commented ``config.yaml`` with one footprint grid (no downloads, no ../shared).
``stilt-dask demo DIR`` is the same followed by ``stilt-dask run DIR``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from .config import ModelConfig
from .errors import ConfigError
from .meteorology.idealized import write_idealized_met

START = datetime(2024, 7, 15, 0)
SITES = ((-100.0, 40.0), (-99.5, 40.3))
MET_HOURS = 12
RUN_HOURS = 6

#: The file a project folder holds its configuration in.
CONFIG_NAME = "config.yaml"
#: The receptor table beside it, which ``config.yaml`` uses when ``receptors`` is unset.
RECEPTORS_NAME = "receptors.csv"

_HEADER = """\
# A STILT project (pystilt_dask.ModelConfig). Relative paths resolve against this
# file's folder. Unknown keys are errors; unset keys take R-STILT's defaults.
# Run it with `stilt-dask run FOLDER`; `stilt-dask status FOLDER` reports progress.
"""

#: What each top-level section is, written above it in a generated ``config.yaml``.
SECTION_NOTES = {
    "receptors": (
        "Receptor table, CSV or Parquet: columns time (UTC), longitude, latitude,\n"
        "altitude (m above ground); or bottom and top for columns."
    ),
    "mets": (
        "Meteorology: named archives of ARL files; simulations use the first.\n"
        "file_format is the strftime pattern the start of each file name matches;\n"
        "file_tres is the period one file covers."
    ),
    "hysplit": (
        "HYSPLIT-STILT transport. n_hours < 0 runs backward in time; numpar is the\n"
        "particles per simulation; equal seeds give identical particles. Any other\n"
        "SETUP.CFG key (lower case) may be set here too."
    ),
    "footprints": (
        "Footprint grids, by name (bounds in degrees; xres in projection units).\n"
        "An empty mapping keeps particles only."
    ),
    "variants": (
        "Other transport settings run beside the plain ones, by name, each into its\n"
        "own results: {name: {hysplit: {overrides}, footprints: {...}}}. Ensembles:\n"
        "hysplit.realizations (realization k runs with seed + k)."
    ),
    "execution": (
        "Where simulations run: backend local (a LocalCluster), slurm or kubernetes;\n"
        "n_workers, each running one HYSPLIT at a time (null: one per core locally)."
    ),
    "profiles": (
        "Named alternatives to `execution`, chosen with `stilt-dask run --profile NAME`\n"
        '(slurm needs `pip install "pystilt-dask[slurm]"`).'
    ),
    "output": "The project store (folder or fsspec URL such as s3://bucket/project).",
    "storage_options": "fsspec options for a remote output (e.g. endpoint_url).",
}


def commented_config(data: dict[str, Any]) -> str:
    """Render a configuration as YAML with a comment above each top-level section.

    Parameters
    ----------
    data : dict
        Top-level sections of a :class:`~pystilt_dask.config.ModelConfig`, as
        written by hand (relative paths stay relative).

    Returns
    -------
    str
        The YAML text; it loads back into exactly ``data``.

    Raises
    ------
    ConfigError
        When ``data`` is not a valid configuration (checked before writing, so a
        generated file always loads).
    """
    ModelConfig.from_dict(data)
    parts = [_HEADER]
    for key, value in data.items():
        note = "".join(f"# {line}\n" for line in SECTION_NOTES.get(key, "").splitlines())
        parts.append(note + yaml.safe_dump({key: value}, sort_keys=False))
    return "\n".join(parts)


def _refuse_overwrite(directory: Path) -> None:
    if (directory / CONFIG_NAME).exists():
        raise ConfigError(
            f"{directory / CONFIG_NAME} exists; not overwriting it (choose another folder)"
        )


def write_template_project(directory: str | Path) -> Path:
    """Write a commented ``config.yaml`` and a one-row receptor table; return the config.

    Nothing runs and no meteorology is written: the user points ``mets`` at their
    ARL files and replaces the example receptor.

    Parameters
    ----------
    directory : path-like
        Created if missing.

    Raises
    ------
    ConfigError
        When ``directory`` already holds a ``config.yaml`` (a project is never overwritten).
    """
    directory = Path(directory)
    _refuse_overwrite(directory)
    data = {
        "receptors": RECEPTORS_NAME,
        "mets": {
            "hrrr": {"directory": "met/hrrr", "file_format": "%Y%m%d.%Hz.hrrra", "file_tres": "6h"}
        },
        "hysplit": {"n_hours": -24, "numpar": 1000, "seed": 1},
        "footprints": {
            "default": {"xmin": -113.0, "xmax": -111.0, "ymin": 40.0, "ymax": 41.5, "xres": 0.01}
        },
        "variants": {},
        "execution": {"backend": "local", "n_workers": None},
        "profiles": {"hpc": {"backend": "slurm", "adapt": {"minimum": 0, "maximum": 20}}},
        "output": "output",
        "storage_options": {},
    }
    text = commented_config(data)
    directory.mkdir(parents=True, exist_ok=True)
    # An example row (a tower in Salt Lake City) shows the columns and formats.
    example = pd.DataFrame(
        [{"time": "2019-05-30 18:00:00", "longitude": -111.85, "latitude": 40.77, "altitude": 5.0}]
    )
    example.to_csv(directory / RECEPTORS_NAME, index=False)
    path = directory / CONFIG_NAME
    path.write_text(text)
    return path


def make_demo_project(directory: str | Path, n_receptors: int = 8, overwrite: bool = True) -> Path:
    """Write the demo project into ``directory`` (without running it); return its ``config.yaml``.

    Parameters
    ----------
    directory : path-like
        Created if missing.
    n_receptors : int
        Receptors, alternating between two sites, hourly from 06:00 UTC.
    overwrite : bool
        Replace an existing ``config.yaml`` (the demo files are deterministic, so
        rewriting them is idempotent); ``False`` refuses, as ``stilt-dask init`` does.

    Raises
    ------
    ConfigError
        For a receptor count the met does not cover, or an existing config when
        ``overwrite`` is false.
    """
    most = len(SITES) * (MET_HOURS - RUN_HOURS)
    if not 1 <= n_receptors <= most:
        raise ConfigError(f"the demo has met for 1 to {most} receptors, not {n_receptors}")
    directory = Path(directory)
    if not overwrite:
        _refuse_overwrite(directory)
    text = commented_config(
        {
            "receptors": RECEPTORS_NAME,
            "mets": {
                "idealized": {"directory": "met", "file_format": "%Y%m%d_%H", "file_tres": "6h"}
            },
            "hysplit": {"n_hours": -RUN_HOURS, "numpar": 100, "seed": 1},
            "footprints": {
                "default": {"xmin": -103.0, "xmax": -98.0, "ymin": 38.5, "ymax": 41.5, "xres": 0.05}
            },
            "execution": {"backend": "local", "n_workers": 2},
            "output": "output",
        }
    )
    directory.mkdir(parents=True, exist_ok=True)
    write_idealized_met(
        directory / "met", START, MET_HOURS, u=5.0, v=2.0, center=(-100.0, 40.0), half_width_deg=4.0
    )
    rows = [
        {
            "time": (START + pd.Timedelta(hours=RUN_HOURS + i // len(SITES))).isoformat(sep=" "),
            "longitude": SITES[i % len(SITES)][0],
            "latitude": SITES[i % len(SITES)][1],
            "altitude": 10.0,
        }
        for i in range(n_receptors)
    ]
    pd.DataFrame(rows).to_csv(directory / RECEPTORS_NAME, index=False)
    path = directory / CONFIG_NAME
    path.write_text(text)
    return path
