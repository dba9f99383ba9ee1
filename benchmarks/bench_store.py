"""Benchmarks of the project store: status, lazy open and bytes per footprint.

Run with ``pytest benchmarks/bench_store.py --benchmark-only``. The comparison
section printed at the end gives both sides of every ratio.

* **status** of 100,000 registered simulations on local disk (goal < 1 s). The
  store holds real keys: 80,000 complete (particles file + footprint chunk),
  4,000 of them empty, 2,000 failure records, the rest pending. PYSTILT's
  side is the figure in ``research/pystilt_anchor.md``: 8.8 s for 233,660
  simulations, compared per simulation.
* **lazy open** of a 10,000-simulation footprint store (goal < 1 s).
* **bytes per stored footprint**: our zarr chunk against PYSTILT's sparse
  Parquet file (written by PYSTILT's own ``write_footprint``) for the same
  footprints, computed by each package's ``calc_footprint`` from one real
  1000-particle, 24-hour HYSPLIT run (goal ≤ 1×).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pystilt_dask.config import FootprintConfig, ModelConfig
from pystilt_dask.footprint import Grid, calc_footprint
from pystilt_dask.hysplit.particles import read_particle_file
from pystilt_dask.model import Model
from pystilt_dask.receptors import PointReceptor
from pystilt_dask.store import footprints, layout, publish

PYSTILT_STATUS_SECONDS = 8.8  # research/pystilt_anchor.md: status of 233,660 simulations
PYSTILT_STATUS_SIMULATIONS = 233_660
SMALL_GRID = {"xmin": -112.0, "xmax": -111.0, "ymin": 40.0, "ymax": 41.0, "xres": 0.1}


def receptors(n: int) -> list[PointReceptor]:
    """``n`` receptors: hourly times at 139 sites, as a month of a dense network."""
    t0 = datetime(2023, 7, 1)
    return [
        PointReceptor(
            time=t0 + timedelta(hours=i // 139),
            longitude=-111.9 + 0.001 * (i % 139),
            latitude=40.7,
            altitude=5,
        )
        for i in range(n)
    ]


def make_model(root, n: int) -> Model:
    config = ModelConfig.from_dict(
        {
            "mets": {"met": {"directory": str(root / "met"), "file_format": "%Y%m%d"}},
            "hysplit": {"n_hours": -24},
            "footprints": {"slv": SMALL_GRID},
        }
    )
    model = Model(root / "project", receptors(n), config)
    model.register_pending()
    return model


def fill(model: Model, rows: np.ndarray, empty: np.ndarray, failed: np.ndarray) -> None:
    """Write real keys: one real published simulation's files copied to ``rows``."""
    ids = model.simulations.ids()
    receptor = receptors(1)[0]
    fp = model.config.footprints["slv"]
    chunk = footprints.to_chunk(zero_footprint(fp), fp, model.config.hysplit, receptor.time)
    publish.publish_footprint(model.location, "slv", ids[0], 0, chunk, empty=False)
    chunk_bytes = model.location.read_bytes(layout.chunk_key("slv", 0))
    for folder in (layout.PARTICLES, layout.empty_folder("slv"), layout.FAILURES):
        os.makedirs(model.location.url(folder), exist_ok=True)
    for row in rows:
        sim_id = ids[row]
        for key, data in (
            (layout.particles_key(sim_id), b"p"),
            (layout.chunk_key("slv", row), chunk_bytes),
        ):
            with open(model.location.url(key), "wb") as f:
                f.write(data)
    for row in empty:
        model.location.write_bytes(layout.empty_key("slv", ids[row]), b"")
    for row in failed:
        model.location.write_bytes(layout.failure_key(ids[row]), b"{}")


def zero_footprint(config: FootprintConfig) -> xr.DataArray:
    """An all-zero 24-layer footprint on ``config``'s grid (content is irrelevant here)."""
    grid = Grid.from_config(config)
    times = pd.Timestamp(receptors(1)[0].time) - pd.to_timedelta(np.arange(24, 0, -1), unit="h")
    return xr.DataArray(
        np.zeros((24, grid.ny, grid.nx), dtype="float32"),
        dims=("time", *grid.dims),
        coords={"time": times, grid.dims[0]: grid.y_centres, grid.dims[1]: grid.x_centres},
    )


@pytest.fixture(scope="module")
def status_model(tmp_path_factory) -> Model:
    n = 100_000
    model = make_model(tmp_path_factory.mktemp("status"), n)
    rows = np.arange(0, n, 5)[:, None] + np.arange(4)  # 4 of every 5 rows complete
    rows = rows.ravel()
    fill(model, rows, empty=rows[::20], failed=np.arange(4, n, 5)[::10])
    return model


def test_status_100k(benchmark, status_model, bench_report):
    result = benchmark.pedantic(status_model.status, rounds=5, iterations=1, warmup_rounds=1)
    counts = result.counts()
    assert counts == {
        "pending": 18_000, "running": 0, "complete": 76_000, "complete-empty": 4_000,
        "failed": 2_000, "footprints": {"slv": {
            "pending": 18_000, "running": 0, "complete": 76_000, "complete-empty": 4_000,
            "failed": 2_000}},
    }  # fmt: skip
    seconds = benchmark.stats.stats.median
    n = len(result)
    bench_report.ours(
        "status (local disk)",
        simulations=str(n),
        seconds=seconds,
        us_per_simulation=seconds / n * 1e6,
    )
    bench_report.baseline(
        "status (local disk)",
        "PYSTILT (notes)",
        simulations=str(PYSTILT_STATUS_SIMULATIONS),
        seconds=PYSTILT_STATUS_SECONDS,
        us_per_simulation=PYSTILT_STATUS_SECONDS / PYSTILT_STATUS_SIMULATIONS * 1e6,
    )
    assert seconds < 1.0


@pytest.fixture(scope="module")
def open_model(tmp_path_factory) -> Model:
    n = 10_000
    model = make_model(tmp_path_factory.mktemp("open"), n)
    fill(model, np.arange(n), empty=np.array([], int), failed=np.array([], int))
    return model


def test_lazy_open_10k(benchmark, open_model, bench_report):
    foot = benchmark.pedantic(
        lambda: open_model.footprints["slv"].load(), rounds=5, iterations=1, warmup_rounds=1
    )
    assert foot.sizes["simulation"] == 10_000 and foot.chunks[0] == (1,) * 10_000
    seconds = benchmark.stats.stats.median
    bench_report.ours("lazy open, 10,000 simulations", seconds=seconds, goal_seconds=1.0)
    assert seconds < 1.0


VARIANTS = {
    "hourly 0.01deg 700x400x24": {"xres": 0.01},
    "hourly 0.05deg 140x80x24": {"xres": 0.05},
    "integrated 0.01deg 700x400": {"xres": 0.01, "time_integrate": True},
    "hourly 0.01deg unsmoothed": {"xres": 0.01, "smooth_factor": 0.0},
}
DAY_BOX = {"xmin": -106.0, "xmax": -99.0, "ymin": 38.0, "ymax": 42.0}


@pytest.fixture(scope="module")
def day_particles(day_particle_file):
    return read_particle_file(day_particle_file.path, day_particle_file.hysplit.varsiwant)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_bytes_per_footprint(
    benchmark, variant, day_particle_file, day_particles, tmp_path, bench_report
):
    stilt = pytest.importorskip("stilt")
    from stilt.footprint.io import write_footprint

    receptor = day_particle_file.receptor
    config = FootprintConfig(**DAY_BOX, **VARIANTS[variant])
    ours = calc_footprint(day_particles, receptor, config)
    model = Model(
        tmp_path / "project",
        [receptor],
        ModelConfig.from_dict(
            {
                "mets": {"met": {"directory": str(tmp_path), "file_format": "%Y%m%d"}},
                "hysplit": day_particle_file.hysplit.model_dump(exclude_defaults=True),
                "footprints": {"day": config.model_dump(exclude_defaults=True)},
            }
        ),
    )
    model.register_pending()
    chunk = footprints.to_chunk(ours, config, model.config.hysplit, receptor.time)
    benchmark.pedantic(
        publish.publish_footprint,
        args=(model.location, "day", receptor.sim_id, 0, chunk, False),
        rounds=3,
        iterations=1,
    )
    our_bytes = os.path.getsize(model.location.url(layout.chunk_key("day", 0)))
    np.testing.assert_array_equal(
        model.footprints["day"].load().isel(simulation=0).sel(lag=ours_lags(ours, receptor)),
        ours.values,
    )

    bounds = config.model_dump(include={"xmin", "xmax", "ymin", "ymax", "xres", "yres"})
    grid = stilt.Grid(**bounds, crs=config.projection)
    their_receptor = stilt.PointReceptor(**receptor.model_dump(exclude={"kind"}))
    table = day_particles.rename(
        columns={"indx": "particle", "time": "age", "long": "lon", "lati": "lat"}
    )
    theirs = stilt.calc_footprint(
        table,
        their_receptor,
        grid,
        smooth_factor=config.smooth_factor,
        time_integrate=config.time_integrate,
    )
    assert int((theirs.values > 0).sum()) == int((ours.values > 0).sum())
    path = tmp_path / "pystilt_footprint.parquet"
    write_footprint(path, theirs)
    their_bytes = os.path.getsize(path)

    group = f"bytes per stored footprint: {variant} ({int((ours.values > 0).sum())} non-zero)"
    bench_report.ours(group, bytes=float(our_bytes))
    bench_report.baseline(group, "PYSTILT", bytes=float(their_bytes))
    assert our_bytes <= their_bytes


def ours_lags(foot, receptor) -> list[int]:
    """The ``lag`` labels of a footprint's layers."""
    hours = (foot["time"].values - np.datetime64(receptor.time, "ns")) / np.timedelta64(1, "h")
    return [int(h) for h in hours]
