"""Shared helpers for the store tests: small configs, receptors and synthetic results.

Synthetic footprints have the shape ``calc_footprint`` returns: ``foot(time, lat,
lon)`` float32 on the configured grid, ``time`` = start of each hourly layer,
possibly fewer layers than ``|n_hours|``, and no layers at all when empty.
"""

from __future__ import annotations

import sys
from datetime import timedelta

import numpy as np
import pandas as pd
import xarray as xr

from pystilt_dask.config import FootprintConfig, ModelConfig
from pystilt_dask.footprint import Grid
from pystilt_dask.receptors import PointReceptor
from pystilt_dask.store import footprints, layout, manifest, publish
from pystilt_dask.store.paths import Location
from pystilt_dask.store.status import simulation_state

GRIDS = {
    "coarse": {"xmin": -112.5, "xmax": -111.5, "ymin": 40.0, "ymax": 41.0, "xres": 0.1},
    "fine": {"xmin": -112.2, "xmax": -111.7, "ymin": 40.4, "ymax": 40.9, "xres": 0.05},
    # 800 x 800 cells: 61 MB per 24-hour chunk, slow enough to kill a writer mid-write
    "big": {"xmin": -113.0, "xmax": -111.8, "ymin": 40.0, "ymax": 41.2, "xres": 0.0015},
}


def make_config(
    tmp_path, names=("coarse", "fine"), n_hours: int = -4, **footprint_overrides
) -> ModelConfig:
    """A config with the named footprint grids and a met entry (never read here)."""
    return ModelConfig.from_dict(
        {
            "mets": {"synthetic": {"directory": str(tmp_path / "met"), "file_format": "%Y%m%d"}},
            "hysplit": {"n_hours": n_hours, "numpar": 10, "seed": 1},
            "footprints": {name: {**GRIDS[name], **footprint_overrides} for name in names},
        }
    )


def make_receptors(n: int, start: str = "2023-07-15 18:00") -> list[PointReceptor]:
    """``n`` distinct point receptors, hourly from ``start``."""
    t0 = pd.Timestamp(start).to_pydatetime()
    return [
        PointReceptor(
            time=t0 + timedelta(hours=i),
            longitude=-111.85 + 0.001 * (i % 97),
            latitude=40.77,
            altitude=5 + i // 97,
        )
        for i in range(n)
    ]


def synthetic_footprint(
    receptor, config: FootprintConfig, n_hours: int, seed: int, n_layers: int | None = None
) -> xr.DataArray:
    """A footprint like ``calc_footprint``'s: sparse positive values, ``n_layers`` hours."""
    grid = Grid.from_config(config)
    (ydim, xdim), y, x = grid.dims, grid.y_centres, grid.x_centres
    n = abs(n_hours) if n_layers is None else n_layers
    hours = np.arange(-1, -n - 1, -1) if n_hours < 0 else np.arange(n)
    if config.time_integrate:
        hours = np.zeros(min(n, 1), dtype=int)
    rng = np.random.default_rng(seed)
    values = rng.random((len(hours), len(y), len(x)), dtype=np.float32)
    values[values < 0.8] = 0
    times = pd.Timestamp(receptor.time) + pd.to_timedelta(hours, unit="h")
    foot = xr.DataArray(
        values, dims=("time", ydim, xdim), coords={"time": times, ydim: y, xdim: x}, name="foot"
    )
    return foot.sortby("time")


def synthetic_particles(receptor, seed: int, n: int = 50) -> pd.DataFrame:
    """A small particle table with R-STILT's column names."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "time": -np.arange(1, n + 1, dtype=np.float64),
            "indx": np.arange(n, dtype=np.int32) % 10 + 1,
            "long": receptor.longitude + rng.normal(0, 0.1, n),
            "lati": receptor.latitude + rng.normal(0, 0.1, n),
            "zagl": rng.random(n) * 500,
            "foot": rng.random(n) * 0.01,
        }
    )


def fake_simulation(
    location: Location, sim_id: str, config: ModelConfig, skip_existing: bool = True, empty=()
) -> str:
    """``run_simulation`` with synthetic results: the same checks and write protocol.

    Footprints named in ``empty`` come out empty. Results depend only on the row,
    so repeated attempts write identical bytes.
    """
    entry = manifest.lookup(location, sim_id)
    receptor, row = manifest.receptor(entry), int(entry["row"])
    names = list(config.footprints)
    todo = names
    if skip_existing:
        state, foot_states = simulation_state(location, sim_id, row, names)
        if state.done:
            return state.value
        todo = [name for name in names if not foot_states[name].done]
    else:
        publish.invalidate(location, sim_id, row, names)
    publish.publish_particles(
        location, receptor, entry["met"], synthetic_particles(receptor, row), log="log\n"
    )
    for name in todo:
        fp = config.footprints[name]
        layers = 0 if name in empty else None
        foot = synthetic_footprint(receptor, fp, config.hysplit.n_hours, row, layers)
        chunk = footprints.to_chunk(foot, fp, config.hysplit, receptor.time)
        publish.publish_footprint(location, name, sim_id, row, chunk, foot.sizes["time"] == 0)
    publish.clear_failure(location, sim_id)
    return simulation_state(location, sim_id, row, names)[0].value


def chunk_path(location: Location, name: str, row: int) -> str:
    """Local path of a footprint chunk."""
    return location.url(layout.chunk_key(name, row))


class RaiseIfComputes:
    """A dask scheduler that fails the test if anything is computed."""

    def __call__(self, dsk, keys, **kwargs):
        raise AssertionError("dask computed something that should have stayed lazy")


def main(argv: list[str]) -> None:
    """Run fake simulations in this process: ``project sim_id [sim_id ...]``.

    Prints each simulation id when it is done, so a parent process can follow.
    """
    from pystilt_dask.model import Model

    project, *sim_ids = argv
    model = Model(project)
    for sim_id in sim_ids:
        fake_simulation(model.location, sim_id, model.config)
        print(sim_id, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
