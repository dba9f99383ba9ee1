"""Particle-level enhancement against PYSTILT's ``particles.stilt.enhancement(flux)``.

Real particles: the demo project (idealized met, real ``hycs_std``), run once
per module. PYSTILT's side is its own accessor on the same particles, in its
own columns (``particle``, ``age``, ``lon``, ``lat``, ``foot``, ``time``), and
the receptor's enhancement is the mean over particles, as it forms it.
"""

from __future__ import annotations

import pickle
import shutil

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from demo_helpers import small_demo

import pystilt_dask as stilt
from pystilt_dask.analysis import enhancement_from_particles, particle_enhancement
from pystilt_dask.errors import StoreError
from pystilt_dask.store import layout

pystilt = pytest.importorskip("stilt")  # registers its DataFrame accessor

pytestmark = pytest.mark.pystilt


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> stilt.Model:
    model = stilt.Model.from_yaml(small_demo(tmp_path_factory.mktemp("demo"), 4))
    assert set(dask.compute(*model.to_delayed(), scheduler="threads")) == {"complete"}
    return model


def _fine_flux(lat_decreasing: bool = False, lon_360: bool = False, seed: int = 0):
    """Hourly flux on 0.01° cells (finer than the 0.05° footprints), some cells missing.

    It covers part of where the particles go only: the rest meets no flux.
    """
    rng = np.random.default_rng(seed)
    lat = np.arange(39.6, 40.6, 0.01) + 0.005
    lon = np.arange(-101.5, -99.4, 0.01) + 0.005
    times = pd.date_range("2024-07-14 22:00", "2024-07-15 09:00", freq="1h")
    values = rng.gamma(2.0, 1.0, (len(times), lat.size, lon.size))
    values[:, 10:20, 30:50] = np.nan  # missing cells count as no flux
    flux = xr.DataArray(values, coords={"time": times, "lat": lat, "lon": lon}, name="flux")
    if lat_decreasing:
        flux = flux.isel(lat=slice(None, None, -1))
    if lon_360:
        flux = flux.assign_coords(lon=flux["lon"] + 360.0)
    return flux


def _as_pystilt(particles: pd.DataFrame, receptor_time) -> pd.DataFrame:
    """The same particles in PYSTILT's columns."""
    age = particles["time"].to_numpy()
    return pd.DataFrame(
        {
            "particle": particles["indx"].astype(np.int32),
            "age": age.astype(np.int32),
            "lon": particles["long"],
            "lat": particles["lati"],
            "foot": particles["foot"],
            "time": pd.Timestamp(receptor_time) + pd.to_timedelta(age, unit="min"),
        }
    )


@pytest.mark.parametrize(
    "flux",
    [_fine_flux(), _fine_flux(lat_decreasing=True, lon_360=True), _fine_flux().isel(time=3)],
    ids=["hourly", "decreasing-lat-0-360", "constant"],
)
def test_equals_pystilt_per_particle_and_per_receptor(demo, flux):
    table = demo.registry().table
    lazy = enhancement_from_particles(demo, flux)
    assert isinstance(lazy.data, dask.array.Array)
    got = lazy.compute()
    for sim_id in demo.simulations.ids():
        particles = demo.trajectories.load(sim_id)
        receptor_time = table.loc[sim_id, "time"]
        theirs = _as_pystilt(particles, receptor_time).stilt.enhancement(flux)
        ours = particle_enhancement(particles, flux, receptor_time)
        np.testing.assert_array_equal(ours.index.to_numpy(), theirs.index.to_numpy())
        np.testing.assert_allclose(ours.values, theirs.values, rtol=1e-6, atol=1e-12)
        assert (theirs > 0).sum() > 10  # particles do meet the flux
        np.testing.assert_allclose(got.sel(simulation=sim_id), theirs.mean(), rtol=1e-6)
    assert got.attrs["units"] == "ppm"
    np.testing.assert_array_equal(got["receptor_time"].values, table["time"].to_numpy())


def test_half_way_times_take_the_later_step_and_positions_the_lower_cell():
    flux = xr.DataArray(
        np.arange(2 * 2 * 2, dtype=float).reshape(2, 2, 2),
        coords={"time": pd.to_datetime(["2024-01-01 00:00", "2024-01-01 01:00"]),
                "lat": [0.5, 1.5], "lon": [10.5, 11.5]},
    )  # fmt: skip
    particles = pd.DataFrame(
        {
            "indx": [1, 2, 3, 4],
            "time": [-30.0, -60.0, -90.0, -30.0],
            "foot": 1.0,
            "long": [11.0, 10.5, 12.0, 12.01],
            "lati": [1.0, 0.5, 2.0, 0.5],
        }  # fmt: skip
    )
    got = particle_enhancement(particles, flux, "2024-01-01 01:00")
    # 00:30 is half-way: the 01:00 step (4 + ...); (11.0, 1.0) half-way: cell (0, 0);
    # 00:00 exactly; 23:30 before the first step: the first; 12.01 outside: nothing.
    np.testing.assert_array_equal(got.values, [4.0, 0.0, 3.0, 0.0])
    theirs = _as_pystilt(particles, "2024-01-01 01:00").stilt.enhancement(flux)
    np.testing.assert_array_equal(got.values, theirs.values)


def test_on_a_cluster_simulations_without_particles_are_nan(demo, tmp_path, client):
    pending = stilt.Model(tmp_path / "pending", demo.receptors()[:1], demo.config)
    pending.register_pending()
    flux = _fine_flux()
    assert np.isnan(enhancement_from_particles(pending, flux).values).all()
    # The graph (a lazy flux, the store) pickles whole, as it must to reach worker processes.
    lazy = enhancement_from_particles(demo, flux.chunk({"time": 4}))
    on_cluster = client.compute(pickle.loads(pickle.dumps(lazy))).result()
    np.testing.assert_allclose(
        on_cluster.values, enhancement_from_particles(demo, flux).values, rtol=1e-12
    )


def test_a_damaged_particle_file_is_an_error_not_a_missing_simulation(demo, tmp_path):
    copy = stilt.Model(shutil.copytree(demo.location.root, tmp_path / "copy"), demo.receptors(),
                       demo.config)  # fmt: skip
    damaged = copy.location.url(layout.particles_key(copy.simulations.ids()[0]))
    with open(damaged, "r+b") as f:
        f.truncate(100)
    with pytest.raises(StoreError):
        enhancement_from_particles(copy, _fine_flux()).compute(scheduler="sync")


def test_building_reads_nothing(demo):
    def refuse(*args, **kwargs):
        raise AssertionError("dask computed while an analysis was being built")

    with dask.config.set(scheduler=refuse):
        lazy = enhancement_from_particles(demo, _fine_flux().chunk({"time": 2}))
    assert isinstance(lazy.data, dask.array.Array)


def test_bad_input_is_a_clear_error(demo):
    particles = demo.trajectories.load(demo.simulations.ids()[0])
    with pytest.raises(ValueError, match="give the particles' receptor_time"):
        particle_enhancement(particles, _fine_flux())
    with pytest.raises(ValueError, match=r"flux dimensions must be \(time, lat, lon\)"):
        particle_enhancement(particles, _fine_flux().rename(lat="y"))
    with pytest.raises(ValueError, match="lacks the column"):
        particle_enhancement(particles.drop(columns="foot"), _fine_flux().isel(time=0))
