"""Modelled columns for N soundings (issue #23), beside PYSTILT's per-simulation loop.

The soundings: the synthetic OCO-2 overpass of the satellite notebook
(:func:`pystilt_dask.observations.demo.write_demo_overpass`) sized up to N
soundings (``N / 8`` frames of eight footprints over 2° of latitude), read with
``read_oco2``; column receptors to 3 km and their kernels with
``receptors_from_soundings``. The project runs them with the stand-in transport
(:mod:`pystilt_dask.hysplit.standin`: invented particles, 50 per simulation,
2 h back; ``pres`` among the particle variables) and an X-STILT footprint
(``pressure_weighting``, then ``averaging_kernel`` from the kernel table on
``pres``) on a 0.02° grid, on a LocalCluster of two one-thread processes. The
run is setup, not measured.

Measured, on dask's threaded scheduler (2 threads), wall, the process's peak
resident memory during the call (sampled every 10 ms) and its rise over the
resident memory at the call's start:

* ours: ``modelled_columns(model, soundings, flux, receptors=..., background=co2)
  .compute()``: every footprint convolved with a flux, every background read from
  the particle files (a CO2 field by time, pressure, latitude and longitude, in
  zarr, opened lazily), the field above each receptor and the prior term;
* ours, the background alone: ``background(model, co2, "xco2").compute()``;
* PYSTILT 0.1.0a25: the loop its documentation gives, over the same particles,
  written where it reads them (its column names, ``add_release_heights``, its
  ``write_particles``) in a PYSTILT project with the same receptors and
  transforms (a kernel table keyed by its receptor ids): for each sounding
  ``sim.background(co2).value`` (the field loaded in memory) and
  ``modelled_column(enhancement, background + above, ak=, pressure_weight=,
  prior=)``, with our enhancement and field above as inputs, so the loop holds
  its background and the arithmetic only.

Both sides' backgrounds and modelled columns are checked equal (1e-6).

N from ``STILT_BENCH_OBSERVATIONS_N`` (default 1000; the issue's size is 10⁴, whose
stand-in run alone takes about 25 minutes here).
Run: ``python -m pytest benchmarks/bench_observations.py --benchmark-only -s``.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from datetime import datetime
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import psutil
import pytest
import xarray as xr
from distributed import Client, LocalCluster

from pystilt_dask import observations as obs
from pystilt_dask.background import background
from pystilt_dask.config import ModelConfig
from pystilt_dask.hysplit.standin import write_standin
from pystilt_dask.meteorology.idealized import write_idealized_met
from pystilt_dask.model import Model
from pystilt_dask.observations.demo import write_demo_overpass

stilt = pytest.importorskip("stilt", reason="PYSTILT is the baseline")
from stilt.observations import modelled_column  # noqa: E402

N = int(os.environ.get("STILT_BENCH_OBSERVATIONS_N", "1000"))
GROUP = "modelled-columns"
OVERPASS = datetime(2024, 7, 15, 20)
GRID = {"xmin": -101.0, "xmax": -99.0, "ymin": 38.8, "ymax": 41.2, "xres": 0.02}
VARSIWANT = ["time", "indx", "long", "lati", "zagl", "foot", "pres", "mlht", "dens", "samt",
             "sigw", "tlgr"]  # fmt: skip
TOP = 3000.0


class PeakRSS:
    """The process's peak resident memory while the block runs, sampled every 10 ms."""

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = psutil.Process().memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, me.memory_info().rss)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _co2(folder: Path) -> xr.DataArray:
    """A CO2 field over the domain in zarr, opened lazily."""
    coords = {
        "time": pd.date_range("2024-07-15 12:00", periods=3, freq="6h"),
        "pres": [1000.0, 900, 800, 700, 600, 500, 400, 300, 200, 100, 10],
        "lat": np.arange(37.0, 43.01, 0.1),
        "lon": np.arange(-103.0, -96.99, 0.1),
    }
    rng = np.random.default_rng(0)
    values = 412.0 + rng.normal(0.0, 1.0, [len(v) for v in coords.values()])
    field = xr.DataArray(values, coords=coords, name="co2", attrs={"units": "ppm"})
    field.to_dataset().to_zarr(folder / "co2.zarr", consolidated=False)
    return xr.open_zarr(folder / "co2.zarr", consolidated=False)["co2"]


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """N soundings run with the stand-in, their receptors and kernels, the field and flux."""
    folder = tmp_path_factory.mktemp("observations")
    write_idealized_met(folder / "met", datetime(2024, 7, 15, 12), 12, center=(-100.0, 40.0))
    path = write_demo_overpass(folder, time=OVERPASS, frames=N // 8, latitudes=(39.0, 41.0))
    soundings = obs.read_oco2(path)
    receptors, kernels = obs.receptors_from_soundings(soundings, "column", top=TOP)
    kernels.to_parquet(folder / "kernels.parquet")
    transforms = [
        {"kind": "pressure_weighting"},
        {
            "kind": "averaging_kernel",
            "table": str(folder / "kernels.parquet"),
            "coordinate": "pres",
        },
    ]
    config = ModelConfig.from_dict(
        {
            "mets": {"idealized": {"directory": str(folder / "met"), "file_format": "%Y%m%d_%H"}},
            "hysplit": {
                "n_hours": -2, "numpar": 50, "seed": 7, "varsiwant": VARSIWANT,
                "executable": str(write_standin(folder / "standin")),
            },
            "footprints": {"xco2": {**GRID, "transforms": transforms}},
        }
    )  # fmt: skip
    model = Model(folder / "project", receptors, config)
    model.register_pending()
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0") as cluster,
        Client(cluster) as client,
    ):
        states = model.run(client=client, quiet=True)
    assert set(states.values()) == {"complete"}, pd.Series(states).value_counts()
    foot = model.footprints["xco2"].load()
    flux = 0.2 + 50.0 * np.exp(-(((foot.lon + 100.4) / 0.1) ** 2 + ((foot.lat - 39.9) / 0.1) ** 2))
    flux = flux.transpose("lat", "lon").rename("flux")
    return folder, model, soundings, receptors, transforms, _co2(folder), flux


def _pystilt_project(folder: Path, model: Model, receptors: pd.DataFrame, transforms: list):
    """A PYSTILT project of the same column receptors, our particles written where it reads them."""
    theirs = {
        sim_id: stilt.ColumnReceptor(
            time=row.time, longitude=row.longitude, latitude=row.latitude, bottom=row.bottom,
            top=row.top,
        )
        for sim_id, row in receptors.set_index("sim_id").iterrows()
    }  # fmt: skip
    kernels = pd.read_parquet(transforms[1]["table"])
    kernels["receptor"] = kernels["receptor"].map({k: r.id for k, r in theirs.items()})
    kernels.to_parquet(folder / "kernels_pystilt.parquet")
    variant = [transforms[0], {**transforms[1], "table": str(folder / "kernels_pystilt.parquet")}]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        project = stilt.Project.init(
            folder / "pystilt",
            receptors=list(theirs.values()),
            mets={
                "m": {
                    "directory": str(folder / "met"),
                    "file_format": "%Y%m%d_%H",
                    "file_tres": "6h",
                }
            },
            variants={"xco2": {"transforms": variant}},
            n_hours=-2,
            grid={k: GRID[k] for k in ("xmin", "xmax", "ymin", "ymax", "xres")} | {"yres": 0.02},
        )
        for sim_id, receptor in theirs.items():
            table = model.trajectories.load(sim_id).rename(
                columns={"indx": "particle", "time": "age", "long": "lon", "lati": "lat"}
            )
            table = stilt.particles.add_release_heights(table, receptor)
            sim = project.simulation(receptor.id, "xco2")
            sim.output.write_particles(sim.variant, sim.receptor, table, met_files=[])
    return project, theirs


def test_modelled_columns_against_pystilt(benchmark, campaign, bench_report):
    folder, model, soundings, receptors, transforms, co2, flux = campaign
    result = {}

    def ours() -> None:
        with PeakRSS() as rss, dask.config.set(scheduler="threads", num_workers=2):
            started = time.perf_counter()
            result["ours"] = obs.modelled_columns(
                model, soundings, flux, receptors=receptors, background=co2
            ).compute()
            result["wall"] = time.perf_counter() - started
        result["peak"], result["rise"] = rss.peak, rss.peak - rss.start

    benchmark.group = GROUP
    benchmark.pedantic(ours, rounds=1, iterations=1)
    with PeakRSS() as rss, dask.config.set(scheduler="threads", num_workers=2):
        started = time.perf_counter()
        endpoints = background(model, co2, "xco2").compute()
        bg_wall = time.perf_counter() - started
    bg_peak, bg_rise = rss.peak, rss.peak - rss.start

    ds = result["ours"]
    project, theirs = _pystilt_project(folder, model, receptors, transforms)
    field = co2.load()
    enhancement = ds.enhancement.to_numpy()
    above = ds.background_above.to_numpy()
    sim_ids = ds.simulation.to_numpy()
    rows = list(soundings.itertuples(index=False))
    with PeakRSS() as rss, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        their_bg, their_modelled = [], []
        for i, row in enumerate(rows):
            sim = project.simulation(theirs[sim_ids[i]].id, "xco2")
            value = sim.background(field).value
            their_bg.append(value)
            their_modelled.append(
                modelled_column(
                    enhancement[i], value + above[i], ak=row.ak,
                    pressure_weight=row.pressure_weight, prior=row.apriori,
                )
            )  # fmt: skip
        their_wall = time.perf_counter() - started
    their_peak, their_rise = rss.peak, rss.peak - rss.start

    np.testing.assert_allclose(ds.background_endpoints, their_bg, rtol=1e-6)
    np.testing.assert_allclose(endpoints.sel(simulation=sim_ids), their_bg, rtol=1e-6)
    np.testing.assert_allclose(ds.modelled, their_modelled, rtol=1e-6)
    assert np.isfinite(ds.modelled).all()
    gb = 1e9
    bench_report.ours(
        GROUP, n=float(N), wall_s=result["wall"], per_s=N / result["wall"],
        peak_gb=result["peak"] / gb, rise_gb=result["rise"] / gb, background_wall_s=bg_wall,
        background_peak_gb=bg_peak / gb, background_rise_gb=bg_rise / gb,
    )  # fmt: skip
    bench_report.baseline(
        GROUP, "PYSTILT", n=float(N), wall_s=their_wall, per_s=N / their_wall,
        peak_gb=their_peak / gb, rise_gb=their_rise / gb,
    )  # fmt: skip
