"""Behaviour of calc_footprint beyond parity: layout, metadata, empties, R defects."""

from __future__ import annotations

import datetime as dt
import os

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from footprint_helpers import random_walk_particles

from pystilt_dask.config import FootprintConfig, HysplitConfig
from pystilt_dask.errors import StoreError
from pystilt_dask.footprint import calc_footprint, footprint_layers, is_empty, to_rstilt_netcdf
from pystilt_dask.footprint.bandwidth import gauss_kernel, kernel_shape, nearest
from pystilt_dask.footprint.grid import Grid, cell_count
from pystilt_dask.receptors import MultiPointReceptor, PointReceptor
from pystilt_dask.store.footprints import lags, place_layers, to_chunk

RECEPTOR = PointReceptor(
    time=dt.datetime(2019, 5, 30, 10, 30), longitude=-111.85, latitude=40.77, altitude=5
)
BOX = {"xmin": -113.0, "xmax": -111.0, "ymin": 40.0, "ymax": 41.5}


@pytest.fixture(scope="module")
def particles():
    return random_walk_particles(n_particles=100, n_minutes=240, seed=7)


def test_layout_and_metadata(particles):
    foot = calc_footprint(particles, RECEPTOR, FootprintConfig(**BOX, xres=0.01))
    assert foot.name == "foot" and foot.dtype == np.float32
    assert foot.dims == ("time", "lat", "lon")
    assert foot.sizes == {"time": 4, "lat": 150, "lon": 200}
    # Layers -4..-1 stamped at the start of each hour, the receptor's minute kept.
    expected = pd.date_range("2019-05-30 06:30", periods=4, freq="h").to_numpy()
    np.testing.assert_array_equal(foot["time"].values, expected)
    np.testing.assert_allclose(foot["lon"][:2], [-112.995, -112.985])
    assert foot["lat"].attrs["standard_name"] == "latitude"
    assert foot.attrs["units"] == "ppm m2 s umol-1"
    assert foot.attrs["Conventions"] == "CF-1.8"
    assert foot.attrs["receptor_sim_id"] == RECEPTOR.sim_id
    assert foot.attrs["footprint_xres"] == 0.01
    assert foot.attrs["footprint_time_integrate"] == 0
    assert "grid_mapping" not in foot.attrs


def test_total_is_foot_over_particles_when_nothing_leaves(particles):
    foot = calc_footprint(particles, RECEPTOR, FootprintConfig(**BOX, xres=0.01))
    expected = particles["foot"].sum() / particles["indx"].nunique()
    np.testing.assert_allclose(float(foot.values.astype(float).sum()), expected, rtol=1e-6)


def test_time_integrate_is_the_sum_of_layers(particles):
    hourly = calc_footprint(particles, RECEPTOR, FootprintConfig(**BOX, xres=0.01))
    total = calc_footprint(
        particles, RECEPTOR, FootprintConfig(**BOX, xres=0.01, time_integrate=True)
    )
    np.testing.assert_array_equal(total["time"].values, [np.datetime64("2019-05-30T10:30", "ns")])
    np.testing.assert_allclose(total[0], hourly.astype(float).sum("time"), rtol=1e-5, atol=1e-12)


def test_empty_footprint_is_explicit(particles, tmp_path):
    receptor = MultiPointReceptor(
        time=RECEPTOR.time, longitudes=(-111.8, -111.9), latitudes=(40.7, 40.8), altitudes=(5, 50)
    )
    foot = calc_footprint(
        particles, receptor, FootprintConfig(xmin=0, xmax=1, ymin=0, ymax=1, xres=0.1)
    )
    assert is_empty(foot)
    assert foot.sizes == {"time": 0, "lat": 10, "lon": 10}
    assert foot.attrs["receptor_longitudes"] == [-111.8, -111.9]
    assert not is_empty(calc_footprint(particles, RECEPTOR, FootprintConfig(**BOX, xres=0.01)))
    with pytest.raises(ValueError, match="empty"):
        to_rstilt_netcdf(foot, tmp_path / "empty.nc")
    zero_foot = particles.assign(foot=0.0)
    assert is_empty(calc_footprint(zero_foot, RECEPTOR, FootprintConfig(**BOX, xres=0.01)))


def test_missing_column_is_named(particles):
    with pytest.raises(ValueError, match="foot"):
        calc_footprint(particles.drop(columns="foot"), RECEPTOR, FootprintConfig(**BOX, xres=0.01))


def test_non_square_kernel_is_oriented_along_its_axes():
    """uataq/stilt#116: R transposes non-square stencils; ours are x along longitude."""
    kernel = gauss_kernel(0.03, 0.01, 0.02)
    assert kernel.shape == kernel_shape(0.03, 0.01, 0.02) == (9, 19)
    np.testing.assert_allclose(kernel.sum(), 1.0)
    np.testing.assert_allclose(kernel, kernel[::-1, ::-1])
    # One step in x (0.01) weighs more than one step in y (0.02).
    assert kernel[4, 10] > kernel[5, 9]


def test_non_square_cells_spread_further_in_cells_along_the_finer_axis():
    rng = np.random.default_rng(0)
    n = 50
    # Every particle sits in one cell at -120 min, but the ensemble spread (another
    # step far away, foot 0) makes the kernel wide.
    time = np.repeat([-1.0, -120.0], n)
    lon = np.concatenate([rng.normal(-111.5, 0.3, n), np.full(n, -112.005)])
    lat = np.concatenate([rng.normal(40.5, 0.3, n), np.full(n, 40.51)])
    foot = np.concatenate([np.zeros(n), np.ones(n)])
    table = pd.DataFrame(
        {"time": time, "indx": np.tile(np.arange(n), 2), "long": lon, "lati": lat, "foot": foot}
    )
    config = FootprintConfig(xmin=-113, xmax=-111, ymin=40, ymax=41, xres=0.01, yres=0.02)
    layer = calc_footprint(table, RECEPTOR, config).isel(time=0)
    rows, cols = np.nonzero(layer.values)
    assert (cols.max() - cols.min() + 1) == 2 * (rows.max() - rows.min() + 1) - 1
    np.testing.assert_allclose(layer.values.astype(float).sum(), 1.0, rtol=1e-6)


def test_projected_grid_warns_and_carries_a_grid_mapping(particles, tmp_path):
    config = FootprintConfig(**BOX, xres=2000.0, projection="+proj=utm +zone=12 +datum=WGS84")
    with pytest.warns(UserWarning, match="smoothing is effectively off"):
        foot = calc_footprint(particles, RECEPTOR, config)
    assert foot.dims == ("time", "y", "x")
    assert foot.attrs["grid_mapping"] == "crs"
    assert foot["crs"].attrs["grid_mapping_name"] == "transverse_mercator"
    assert foot["x"].attrs["units"] == "m"
    path = tmp_path / "utm.nc"
    to_rstilt_netcdf(foot, path)
    with netCDF4.Dataset(path) as nc:
        assert nc["foot"].dimensions == ("time", "y", "x")
        assert nc["foot"].grid_mapping == "projection"
        assert nc["projection"].grid_mapping_name == "transverse_mercator"
        assert nc.crs == config.projection
    roundtrip = xr.open_dataset(path)["foot"]
    np.testing.assert_array_equal(roundtrip.values, foot.values)


def test_antimeridian_grid_uses_the_0_360_frame():
    n = 20
    rng = np.random.default_rng(1)
    table = pd.DataFrame(
        {
            "time": np.repeat([-1.0, -2.0], n),
            "indx": np.tile(np.arange(n), 2),
            "long": np.concatenate([rng.normal(179.9, 0.05, n), rng.normal(-179.9, 0.05, n)]),
            "lati": rng.normal(10, 0.05, 2 * n),
            "foot": 1.0,
        }
    )
    receptor = PointReceptor(time=RECEPTOR.time, longitude=179.9, latitude=10, altitude=5)
    foot = calc_footprint(
        table, receptor, FootprintConfig(xmin=179, xmax=-179, ymin=9, ymax=11, xres=0.1)
    )
    assert foot["lon"].values[0] == pytest.approx(179.05)
    assert foot["lon"].values[-1] == pytest.approx(180.95)
    np.testing.assert_allclose(foot.values.astype(float).sum(), 2.0, rtol=1e-6)


def test_grid_counts_follow_r_seq():
    assert cell_count(40.45, 40.93, 0.01) == 48  # (40.93 - 40.45) / 0.01 = 47.9999999999997
    assert cell_count(0, 1, 0.3) == 3  # a partial edge cell is dropped
    config = FootprintConfig(xmin=-180, xmax=180, ymin=-90, ymax=90, xres=1)
    assert Grid.from_config(config).nx == 360


def test_nearest_ties_go_to_the_smaller_rtime():
    table = np.array([0.0, 2.0, 4.0])
    np.testing.assert_array_equal(
        nearest(np.array([-5.0, 1.0, 1.1, 3.0, 9.0]), table), [0, 0, 1, 1, 2]
    )


def test_numba_cache_is_writable():
    from pystilt_dask.footprint import kernels

    caches = [getattr(kernel, "_cache", None) for kernel in vars(kernels).values()]
    paths = {cache.cache_path for cache in caches if hasattr(cache, "cache_path")}
    assert paths and all(os.access(path, os.W_OK) for path in paths)


def test_geographic_crs_spellings_give_identical_footprints(particles):
    feet = [
        calc_footprint(particles, RECEPTOR, FootprintConfig(**BOX, xres=0.01, projection=p))
        for p in ("+proj=longlat", "EPSG:4326", "OGC:CRS84")
    ]
    for foot in feet[1:]:
        assert foot.dims == ("time", "lat", "lon")
        np.testing.assert_array_equal(foot.values, feet[0].values)
        np.testing.assert_array_equal(foot["lon"].values, feet[0]["lon"].values)


@pytest.mark.parametrize("projection", ["+proj=utm +zone=12 +datum=WGS84", "EPSG:32612"])
def test_utm_grid_is_unchanged(particles, projection):
    """Values computed by the regex-based CRS code before pyproj classified projections
    (commit f171b8b); both spellings of UTM zone 12 gave these."""
    config = FootprintConfig(**BOX, xres=2000.0, projection=projection)
    with pytest.warns(UserWarning, match="smoothing is effectively off"):
        foot = calc_footprint(particles, RECEPTOR, config)
    assert foot.shape == (4, 82, 85)
    assert foot["x"].values[0] == 330274.505728885
    assert foot["y"].values[0] == 4430672.973115527
    assert foot["x"].attrs["units"] == "m"
    sums = foot.values.astype(float).sum(axis=(1, 2))
    expected = [0.47469412893406115, 0.5372734519187361, 0.5262192919617519, 0.6553187138633803]
    np.testing.assert_allclose(sums, expected, rtol=1e-12)
    assert int((foot.values > 0).sum()) == 152
    assert np.unravel_index(foot.values.argmax(), foot.shape) == (3, 41, 48)
    assert float(foot.values.max()) == 0.2320212870836258


@pytest.mark.parametrize("n_hours", [-4, -6, 5])
@pytest.mark.parametrize("time_integrate", [False, True])
def test_store_places_the_core_layers_as_the_dataarray_path_did(particles, n_hours, time_integrate):
    """footprint_layers → place_layers (the store's path) equals calc_footprint → to_chunk."""
    config = FootprintConfig(**BOX, xres=0.01, time_integrate=time_integrate)
    hysplit = HysplitConfig(n_hours=n_hours)
    table = particles if n_hours < 0 else particles.assign(time=particles["time"].abs())
    receptor = RECEPTOR
    layers, values = footprint_layers(table, receptor, config)
    chunk = place_layers(layers, values, config, hysplit)
    expected = to_chunk(calc_footprint(table, receptor, config), config, hysplit, receptor.time)
    assert chunk.shape == (len(lags(config, hysplit)), 150, 200)
    np.testing.assert_array_equal(chunk, expected)
    empty = table.assign(foot=0.0)
    layers, values = footprint_layers(empty, receptor, config)
    assert layers.size == 0
    assert not place_layers(layers, values, config, hysplit).any()


def test_layers_outside_the_lags_are_refused(particles):
    config = FootprintConfig(**BOX, xres=0.01)
    layers, values = footprint_layers(particles, RECEPTOR, config)  # layers -4..-1
    with pytest.raises(StoreError, match="outside lags"):
        place_layers(layers, values, config, HysplitConfig(n_hours=-2))
