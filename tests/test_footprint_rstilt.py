"""Parity with R-STILT's own footprint files (../shared/rstilt_by_id)."""

from __future__ import annotations

import datetime as dt

import netCDF4
import numpy as np
import pytest
from footprint_helpers import read_rstilt_particles, shared_dir

from pystilt_dask.config import FootprintConfig
from pystilt_dask.footprint import calc_footprint, to_rstilt_netcdf
from pystilt_dask.footprint.interpolate import needs_interpolation
from pystilt_dask.receptors import ColumnReceptor, PointReceptor

BOX = {"xmin": -112.2, "xmax": -111.6, "ymin": 40.6, "ymax": 41.0}
CASES = {
    "201507050000_-111.85_40.77_5": (
        PointReceptor(time=dt.datetime(2015, 7, 5), longitude=-111.85, latitude=40.77, altitude=5),
        FootprintConfig(**BOX, xres=0.02, yres=0.025),
    ),
    "201507051800_-111.9_40.7_X": (
        ColumnReceptor(
            time=dt.datetime(2015, 7, 5, 18, 0, 30),
            longitude=-111.9,
            latitude=40.7,
            bottom=0,
            top=1000,
        ),
        FootprintConfig(**BOX, xres=0.02, time_integrate=True),
    ),
}


def _golden(sim_id: str) -> netCDF4.Dataset:
    return netCDF4.Dataset(shared_dir("rstilt_by_id") / sim_id / f"{sim_id}_foot.nc")


def _recompute(sim_id: str):
    receptor, config = CASES[sim_id]
    # R-STILT's simulation_step passes calc_footprint only these five columns.
    particles = read_rstilt_particles(sim_id)[["time", "indx", "long", "lati", "foot"]]
    return calc_footprint(particles, receptor, config)


@pytest.mark.parametrize("sim_id", CASES)
def test_matches_rstilt_per_cell(sim_id):
    foot = _recompute(sim_id)
    with _golden(sim_id) as ref:
        expected = ref["foot"][:].filled(np.nan)
        np.testing.assert_allclose(foot["lon"], ref["lon"][:], rtol=0, atol=1e-9)
        np.testing.assert_allclose(foot["lat"], ref["lat"][:], rtol=0, atol=1e-9)
        seconds = (foot["time"].values - np.datetime64("1970-01-01")) / np.timedelta64(1, "s")
        np.testing.assert_array_equal(seconds, ref["time"][:])
    assert foot.dtype == np.float32
    assert foot.dims == ("time", "lat", "lon")
    np.testing.assert_allclose(foot.values, expected, rtol=1e-7, atol=0)


@pytest.mark.parametrize("sim_id", CASES)
def test_golden_cases_do_not_interpolate(sim_id):
    """Document the regime the golden files cover: particles move < 1 cell per minute."""
    receptor, config = CASES[sim_id]
    p = read_rstilt_particles(sim_id)
    pid = p["indx"].to_numpy(dtype=np.int64)
    args = (p[c].to_numpy(dtype=float) for c in ("time", "long", "lati"))
    assert not needs_interpolation(pid, *args, config.xres, config.yres)


@pytest.mark.parametrize("sim_id", CASES)
def test_rstilt_netcdf_layout_round_trips(sim_id, tmp_path):
    foot = _recompute(sim_id)
    path = tmp_path / f"{sim_id}_foot.nc"
    to_rstilt_netcdf(foot, path)
    with netCDF4.Dataset(path) as ours, _golden(sim_id) as ref:
        assert ours.data_model == ref.data_model == "NETCDF4"
        assert list(ours.dimensions) == list(ref.dimensions)
        assert list(ours.variables) == list(ref.variables)
        for name, var in ref.variables.items():
            mine = ours[name]
            assert mine.dimensions == var.dimensions
            assert mine.dtype == var.dtype
            assert mine.chunking() == "contiguous"
            assert not mine.filters()["zlib"]
            assert {k: mine.getncattr(k) for k in var.ncattrs()} == {
                k: var.getncattr(k) for k in var.ncattrs()
            }
            np.testing.assert_allclose(mine[:], var[:], rtol=1e-7)
        for key in ("crs", "crs_format", "documentation", "title"):
            assert ours.getncattr(key) == ref.getncattr(key)
        assert set(ours.ncattrs()) == set(ref.ncattrs())
