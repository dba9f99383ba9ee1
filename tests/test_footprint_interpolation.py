"""The early-time interpolation (R-STILT §1.3) against a slow direct implementation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from footprint_helpers import (
    HYSPLIT_RUNS,
    hysplit_particles,
    random_walk_particles,
    reference_interpolation,
    reference_should_interpolate,
)

from pystilt_dask.footprint.interpolate import interpolate_early, needs_interpolation


def _arrays(particles: pd.DataFrame):
    pid, _ = pd.factorize(particles["indx"])
    return pid, *(particles[c].to_numpy(dtype=float) for c in ("time", "long", "lati", "foot"))


def _ours(particles: pd.DataFrame) -> pd.DataFrame:
    pid, time, lon, lat, foot = _arrays(particles)
    ids = pd.unique(particles["indx"])
    pid, time, lon, lat, foot = interpolate_early(pid, time, lon, lat, foot, -1.0)
    table = pd.DataFrame({"indx": ids[pid], "time": time, "long": lon, "lati": lat, "foot": foot})
    return table.sort_values(["indx", "time"]).reset_index(drop=True)


@pytest.mark.parametrize("run", HYSPLIT_RUNS)
@pytest.mark.parametrize("res", [0.0005, 0.001, 0.005])
def test_decision_matches_reference(run, res):
    particles = hysplit_particles(run)
    pid, time, lon, lat, _ = _arrays(particles)
    expected = reference_should_interpolate(particles, res, res)
    assert needs_interpolation(pid, time, lon, lat, res, res) == expected


def test_decision_fires_on_fine_grids_only():
    particles = hysplit_particles(HYSPLIT_RUNS[0])
    pid, time, lon, lat, _ = _arrays(particles)
    assert needs_interpolation(pid, time, lon, lat, 0.0005, 0.0005)
    assert not needs_interpolation(pid, time, lon, lat, 0.01, 0.01)


@pytest.mark.parametrize(
    "particles",
    [
        pytest.param(lambda: hysplit_particles(HYSPLIT_RUNS[0]), id="hysplit-np20"),
        pytest.param(lambda: hysplit_particles(HYSPLIT_RUNS[1]), id="hysplit-np5"),
        pytest.param(lambda: random_walk_particles(30, 150, seed=1), id="random-walk"),
    ],
)
def test_interpolated_table_matches_reference(particles):
    particles = particles()
    expected = reference_interpolation(particles).sort_values(["indx", "time"])
    expected = expected.reset_index(drop=True)
    ours = _ours(particles)
    assert len(ours) == len(expected)
    np.testing.assert_array_equal(ours["indx"], expected["indx"])
    np.testing.assert_array_equal(ours["time"], expected["time"])
    np.testing.assert_allclose(ours[["long", "lati"]], expected[["long", "lati"]], rtol=0, atol=0)
    # Reference NaN (0/0 rescale of an all-zero window) is zero here; both drop it (foot > 0).
    np.testing.assert_allclose(ours["foot"], expected["foot"].fillna(0.0), rtol=1e-12)


def test_window_totals_are_preserved():
    particles = random_walk_particles(30, 150, seed=2)
    ours = _ours(particles)
    for lo, hi in ((-1, 10), (10, 20), (20, 100)):
        before = particles["time"].abs().between(lo, hi, inclusive="right")
        after = ours["time"].abs().between(lo, hi, inclusive="right")
        np.testing.assert_allclose(
            ours.loc[after, "foot"].sum(), particles.loc[before, "foot"].sum(), rtol=1e-13
        )
    # 0.1-minute steps from -1 to -10, 0.2 to -20, 0.5 to -100, whole minutes after.
    per_particle = ours.groupby("indx").size()
    assert (per_particle == 91 + 50 + 160 + 50).all()
