"""Shared helpers for the store tests: small configs, receptors and a synthetic simulator.

The store tests drive the real :func:`~pystilt_dask.simulation.run_simulation`;
only HYSPLIT is replaced, by :func:`synthetic_trajectories`, whose particles
depend on the receptor alone, so footprints are real ``calc_footprint`` results.
"""

from __future__ import annotations

import functools
import sys
import time
import zlib
from datetime import timedelta

import numpy as np
import pandas as pd

from pystilt_dask.config import ModelConfig
from pystilt_dask.footprint import calc_footprint
from pystilt_dask.receptors import PointReceptor
from pystilt_dask.simulation import run_simulation
from pystilt_dask.store import footprints, layout, registry
from pystilt_dask.store.paths import Location
from pystilt_dask.trajectory import Trajectories

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


def synthetic_particles(receptor, seed: int, n: int = 50, offset=(0.0, 0.0)) -> pd.DataFrame:
    """A small particle table with R-STILT's column names, around the receptor + ``offset``."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "time": -np.repeat(np.arange(1.0, n // 10 + 1), 10)[:n] * 30,
            "indx": np.arange(n, dtype=np.int32) % 10 + 1,
            "long": receptor.longitude + offset[0] + rng.normal(0, 0.05, n),
            "lati": receptor.latitude + offset[1] + rng.normal(0, 0.05, n),
            "zagl": rng.random(n) * 500,
            "foot": rng.random(n) * 0.01,
        }
    )


#: Particle offsets (degrees) that leave footprints empty: outside "fine" only, or every grid.
OUTSIDE = {"fine": (-0.55, -0.62), "all": (10.0, 10.0)}


def synthetic_trajectories(receptor, config, met, outside: str | None = None) -> Trajectories:
    """A simulator for ``run_simulation`` where HYSPLIT is not the point.

    Particles depend only on the receptor, so repeated attempts write identical
    bytes; ``outside`` places them where footprint ``"fine"`` (or every footprint)
    is empty.
    """
    seed = zlib.crc32(receptor.sim_id.encode())
    table = synthetic_particles(receptor, seed, offset=OUTSIDE.get(outside, (0.0, 0.0)))
    return Trajectories(table, None, f"synthetic run of {receptor.sim_id}\n", ())


def run_synthetic(
    location: Location, sim_id: str, config: ModelConfig, skip_existing: bool = True, outside=None
) -> str:
    """The real ``run_simulation`` with synthetic particles."""
    simulate = functools.partial(synthetic_trajectories, outside=outside)
    return run_simulation(location, sim_id, config, skip_existing, simulate=simulate)


def expected_chunk(model, sim_id: str, name: str) -> np.ndarray:
    """The chunk ``run_synthetic`` stores for a simulation, computed afresh."""
    receptor = model.registry().entry(sim_id)
    receptor = registry.receptor(receptor)
    fp = model.config.footprints[name]
    foot = calc_footprint(synthetic_trajectories(receptor, None, None).particles, receptor, fp)
    return footprints.to_chunk(foot, fp, model.config.hysplit, receptor.time)


def chunk_path(location: Location, name: str, row: int) -> str:
    """Local path of a footprint chunk."""
    return location.url(layout.chunk_key(name, row))


class RaiseIfComputes:
    """A dask scheduler that fails the test if anything is computed."""

    def __call__(self, dsk, keys, **kwargs):
        raise AssertionError("dask computed something that should have stayed lazy")


def main(argv: list[str]) -> None:
    """Run synthetic simulations in this process: ``project sim_id [sim_id ...]``.

    Prints each simulation id when it is done, so a parent process can follow.
    """
    from pystilt_dask.model import Model

    project, *sim_ids = argv
    model = Model(project)
    for sim_id in sim_ids:
        # A simulation a killed writer claimed is free once that claim expires.
        while run_synthetic(model.location, sim_id, model.config) == "running":
            time.sleep(0.1)
        print(sim_id, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
