"""A self-contained demo project on idealized meteorology (no downloads, no ../shared).

``stilt-dask demo DIR`` writes 12 h of idealized ARL met (5 m/s from the
west-southwest, a diurnal mixed layer), a receptor table of measurements at two
towers, hourly from 06:00 UTC (eight by default), and a ``config.yaml`` with one
footprint grid, then runs it like any project.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd

from .config import ModelConfig
from .errors import ConfigError
from .meteorology.idealized import write_idealized_met

START = datetime(2024, 7, 15, 0)
SITES = ((-100.0, 40.0), (-99.5, 40.3))
MET_HOURS = 12
RUN_HOURS = 6


def make_demo_project(directory: str | Path, n_receptors: int = 8) -> Path:
    """Write the demo project into ``directory`` and return its ``config.yaml``.

    Parameters
    ----------
    directory : path-like
        Created if missing; existing demo files are overwritten (the met is
        deterministic, so this is idempotent).
    n_receptors : int
        Receptors, alternating between two sites, hourly from 06:00 UTC.
    """
    most = len(SITES) * (MET_HOURS - RUN_HOURS)
    if not 1 <= n_receptors <= most:
        raise ConfigError(f"the demo has met for 1 to {most} receptors, not {n_receptors}")
    directory = Path(directory)
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
    pd.DataFrame(rows).to_csv(directory / "receptors.csv", index=False)
    config = ModelConfig.from_dict(
        {
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
    path = directory / "config.yaml"
    config.to_yaml(path)
    return path
