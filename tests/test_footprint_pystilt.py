"""Parity with PYSTILT's ``stilt.calc_footprint`` on real and synthetic particles.

PYSTILT never runs R-STILT's early-time interpolation in practice: its table
always carries extra columns, so R's ``na.omit`` step deletes every inserted
row. Our side is therefore run with interpolation off (``_interpolate=False``)
on the raw tables, and the interpolation regime is compared by feeding PYSTILT
a table interpolated by the slow reference of R-STILT §1.3.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from footprint_helpers import (
    HYSPLIT_RELEASE,
    HYSPLIT_RUNS,
    as_pystilt_table,
    assert_footprint_equal,
    hysplit_particles,
    pystilt_grid,
    random_walk_particles,
    read_rstilt_particles,
    reference_interpolation,
)

from pystilt_dask.config import FootprintConfig
from pystilt_dask.footprint import calc_footprint, is_empty
from pystilt_dask.receptors import PointReceptor

stilt = pytest.importorskip("stilt")
pytestmark = pytest.mark.pystilt

RECEPTOR = PointReceptor(**HYSPLIT_RELEASE)
WBB_BOX = {"xmin": -112.1, "xmax": -111.5, "ymin": 40.5, "ymax": 40.9}
SETTINGS = {
    "0.01deg": {"xres": 0.01},
    "0.005deg": {"xres": 0.005},
    "smooth0": {"xres": 0.005, "smooth_factor": 0.0},
    "smooth0.5": {"xres": 0.005, "smooth_factor": 0.5},
    "smooth2": {"xres": 0.005, "smooth_factor": 2.0},
    "integrated": {"xres": 0.005, "time_integrate": True},
    "nonsquare": {"xres": 0.01, "yres": 0.004, "smooth_factor": 2.0},
    "utm": {"xres": 500.0, "projection": "+proj=utm +zone=12 +datum=WGS84"},
    # A box east of the receptor that cuts the plume: buffer-edge particles matter.
    "cut": {"xres": 0.005, "xmin": -111.84, "xmax": -111.7, "ymin": 40.7, "ymax": 40.8},
}


def _pystilt(particles, config: FootprintConfig):
    grid = pystilt_grid(config)
    receptor = stilt.PointReceptor(**HYSPLIT_RELEASE)
    return stilt.calc_footprint(
        as_pystilt_table(particles),
        receptor,
        grid,
        smooth_factor=config.smooth_factor,
        time_integrate=config.time_integrate,
    )


def _ours(particles, config: FootprintConfig, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # projected-grid bandwidth notice
        return calc_footprint(particles, RECEPTOR, config, **kwargs)


def assert_matches_pystilt(ours, reference):
    assert ours.dims == reference.dims
    for dim in ours.dims[1:]:
        np.testing.assert_allclose(ours[dim].values, reference[dim].values, rtol=1e-12)
    assert_footprint_equal(ours, reference)
    mine, expected = ours.values.astype(np.float64), reference.values
    np.testing.assert_allclose(mine.sum(), expected.sum(), rtol=1e-7)


def _config(name: str) -> FootprintConfig:
    settings = {**WBB_BOX, **SETTINGS[name]}
    return FootprintConfig(**settings)


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("run", HYSPLIT_RUNS)
def test_real_hysplit_particles(run, setting):
    particles = hysplit_particles(run)
    config = _config(setting)
    assert_matches_pystilt(
        _ours(particles, config, _interpolate=False), _pystilt(particles, config)
    )


@pytest.fixture(scope="module")
def spreading_particles():
    """Six hours of 200 synthetic particles: wide, non-square kernels and several layers."""
    return random_walk_particles(n_particles=200, n_minutes=360, seed=3)


@pytest.mark.parametrize("setting", SETTINGS)
def test_spreading_particles(spreading_particles, setting):
    config = _config(setting)
    ours = _ours(spreading_particles, config, _interpolate=False)
    assert ours.sizes["time"] > 1 or config.time_integrate
    assert_matches_pystilt(ours, _pystilt(spreading_particles, config))


@pytest.mark.parametrize("sim_id", ["201507050000_-111.85_40.77_5", "201507051800_-111.9_40.7_X"])
def test_rstilt_fixture_particles_on_fine_grid(sim_id):
    """Golden R particles on a 0.002 deg grid, where their kernels are wider than a cell."""
    particles = read_rstilt_particles(sim_id)
    config = FootprintConfig(xmin=-112.0, xmax=-111.7, ymin=40.6, ymax=40.9, xres=0.002)
    ours = _ours(particles, config, _interpolate=False)
    assert_matches_pystilt(ours, _pystilt(particles, config))


def test_interpolation_regime_matches_pystilt_on_reference_table():
    """With a grid finer than a minute's motion our interpolation fires; PYSTILT, fed the
    slow reference's interpolated table, must then give the same footprint."""
    particles = hysplit_particles(HYSPLIT_RUNS[0])
    config = FootprintConfig(
        xmin=-111.86, xmax=-111.83, ymin=40.755, ymax=40.775, xres=0.0005, smooth_factor=1.0
    )
    ours = _ours(particles, config)
    reference = _pystilt(reference_interpolation(particles), config)
    assert_matches_pystilt(ours, reference)
    # And it is not the uninterpolated footprint.
    plain = _ours(particles, config, _interpolate=False)
    assert not np.allclose(plain.values, ours.values)


def test_empty_footprint_where_pystilt_raises():
    particles = hysplit_particles(HYSPLIT_RUNS[0])
    config = FootprintConfig(xmin=-100.0, xmax=-99.0, ymin=30.0, ymax=31.0, xres=0.01)
    with pytest.raises(stilt.exceptions.EmptyFootprint):
        _pystilt(particles, config)
    assert is_empty(_ours(particles, config))
