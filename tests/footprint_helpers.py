"""Shared data and reference implementations for the footprint tests and benchmark."""

from __future__ import annotations

import datetime as dt
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
HYSPLIT_RUNS = ("wbb_20190530T1000_np20_h-3", "wbb_20190530T1000_np5_h-1_allvars")
# Both shared HYSPLIT runs release at the WBB site.
HYSPLIT_RELEASE = {
    "time": dt.datetime(2019, 5, 30, 10),
    "longitude": -111.848,
    "latitude": 40.766,
    "altitude": 5.0,
}


def shared_dir(name: str) -> Path:
    """Return ``../shared/<name>`` or skip the test when it is absent."""
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"shared test data {path} is absent (it lives beside the repository)")
    return path


def hysplit_particles(run: str) -> pd.DataFrame:
    """Read a shared run's PARTICLE_STILT.DAT, naming columns by its SETUP.CFG VARSIWANT."""
    folder = shared_dir("hysplit_runs") / run
    setup = (folder / "SETUP.CFG").read_text()
    names = re.findall(r"'(\w+)'", re.search(r"VARSIWANT=(.*)", setup).group(1))
    data = np.loadtxt(folder / "PARTICLE_STILT.DAT", skiprows=1)
    return pd.DataFrame(data, columns=names)


def read_rstilt_particles(sim_id: str) -> pd.DataFrame:
    """Read the particle table of an R-STILT golden simulation (``*_traj.rds``)."""
    import rdata

    path = shared_dir("rstilt_by_id") / sim_id / f"{sim_id}_traj.rds"
    with warnings.catch_warnings():
        # rdata has no constructors for POSIXct/tibble classes; plain values suffice.
        warnings.simplefilter("ignore", UserWarning)
        return rdata.read_rds(path)["particle"]


def random_walk_particles(
    n_particles: int = 1000,
    n_minutes: int = 1440,
    seed: int = 0,
    origin: tuple[float, float] = (-111.85, 40.77),
) -> pd.DataFrame:
    """A seeded synthetic backward run shaped like HYSPLIT-STILT output.

    Particles drift west-south-west at ~1.5 m/s under a slowly turning wind,
    each with its own persistent velocity offset (so the ensemble spreads
    roughly linearly in time, ~0.1° std after a day) plus a per-minute random
    walk. ``foot`` mimics particles entering and leaving the surface layer: a
    persistent on/off state (~55 % on) times a magnitude that decays over the
    day. Rows are grouped by time step and ordered by particle, starting at
    -1 min, as in PARTICLE_STILT.DAT.
    """
    rng = np.random.default_rng(seed)
    minutes = np.arange(1, n_minutes + 1)
    heading = np.deg2rad(200 + 40 * np.sin(minutes / 480.0))
    drift = 0.0008 * np.stack([np.cos(heading), np.sin(heading)])  # deg/min
    offsets = rng.normal(0, 0.00012, size=(2, n_particles, 1))
    steps = drift[:, None, :] + offsets + rng.normal(0, 0.0015, size=(2, n_particles, n_minutes))
    lon = origin[0] + np.cumsum(steps[0], axis=1)
    lat = origin[1] + np.cumsum(steps[1], axis=1)
    flips = rng.random((n_particles, n_minutes)) < 0.02
    surface = (np.cumsum(flips, axis=1) + rng.integers(0, 2, (n_particles, 1))) % 2 == 0
    surface |= rng.random((n_particles, n_minutes)) < 0.1
    foot = np.where(surface, 0.02 * np.exp(-minutes / 600.0), 0.0)
    indx = np.arange(1, n_particles + 1)
    return pd.DataFrame(
        {
            "time": -np.repeat(minutes, n_particles).astype(np.float64),
            "indx": np.tile(indx, n_minutes).astype(np.float64),
            "long": lon.T.ravel(),
            "lati": lat.T.ravel(),
            "zagl": 10.0,
            "foot": foot.T.ravel(),
        }
    )


#: An averaging kernel on release heights, and one on pressure (hPa), as configured.
AK = {"kind": "averaging_kernel", "levels": [0, 1000, 2500], "values": [1.1, 0.9, 0.5]}
AK_PRES = {
    "kind": "averaging_kernel",
    "levels": [950, 800, 650],
    "values": [1.05, 0.95, 0.7],
    "coordinate": "pres",
}


def assert_footprint_equal(ours: xr.DataArray, theirs: xr.DataArray) -> None:
    """``ours`` has ``theirs``' layer times and, on each cell above 1e-12 of its peak, its
    values to 1e-6 (relative); on the other cells it stays below 1e-11 of that peak."""
    np.testing.assert_array_equal(ours["time"].values, theirs["time"].values)
    mine, expected = ours.values.astype(np.float64), theirs.values
    significant = expected > 1e-12 * expected.max()
    np.testing.assert_allclose(mine[significant], expected[significant], rtol=1e-6)
    assert np.all(mine[~significant] <= 1e-11 * expected.max())


def as_pystilt_table(particles: pd.DataFrame) -> pd.DataFrame:
    """Rename an R-STILT particle table to PYSTILT's columns (adds ``zagl`` if absent)."""
    table = particles.rename(
        columns={"indx": "particle", "time": "age", "long": "lon", "lati": "lat"}
    )
    if "zagl" not in table.columns:
        table["zagl"] = 0.0
    return table


def pystilt_grid(config):
    """PYSTILT's ``stilt.Grid`` for a :class:`~pystilt_dask.config.FootprintConfig`."""
    import stilt  # the optional test dependency, only where PYSTILT is compared

    return stilt.Grid(
        xmin=config.xmin,
        xmax=config.xmax,
        ymin=config.ymin,
        ymax=config.ymax,
        xres=config.xres,
        yres=config.yres,
        crs=config.projection,
    )


# -- slow, direct implementation of R-STILT §1.3 for checking the fast one ---------

_SCHEDULE = np.round(
    np.concatenate(
        [np.linspace(0, 10, 101), np.linspace(10.2, 20, 50), np.linspace(20.5, 100, 160)]
    ),
    1,
)


def reference_should_interpolate(particles: pd.DataFrame, xres: float, yres: float) -> bool:
    """R's test: median over particles of per-particle median |step| in the first 100 min."""
    early = particles[particles["time"].abs() < 100]
    per = early.groupby("indx", sort=False)[["long", "lati"]].agg(lambda s: s.diff().abs().median())
    return bool(per["long"].median() > xres or per["lati"].median() > yres)


def reference_interpolation(particles: pd.DataFrame) -> pd.DataFrame:
    """Join the schedule onto every particle, interpolate, drop NA, round, rescale.

    One particle at a time with pandas merges, as R's dplyr pipeline reads.
    Interpolation uses R ``approx``'s formula ``y0 + (y1 - y0) * ((t - t0) / (t1 - t0))``
    so positions landing exactly on a cell edge round as they do in R.
    """
    p = particles[["indx", "time", "long", "lati", "foot"]].astype(float)
    sign = np.sign(p["time"].median())
    atime = p["time"].abs()
    windows = [atime <= 10, (atime > 10) & (atime <= 20), (atime > 20) & (atime <= 100)]
    totals = [p.loc[w, "foot"].sum() for w in windows]
    frames = []
    for indx, group in p.groupby("indx"):
        schedule = pd.DataFrame({"indx": indx, "time": _SCHEDULE * sign})
        merged = group.merge(schedule, on=["indx", "time"], how="outer").sort_values("time")
        known = merged["long"].notna().to_numpy()
        t = merged["time"].to_numpy()
        t_known = t[known]
        for col in ("long", "lati", "foot"):
            values = merged[col].to_numpy().copy()
            y_known = values[known]
            for k in np.flatnonzero(~known):
                j = np.searchsorted(t_known, t[k])
                if j == 0 or j == t_known.size:
                    continue  # outside the particle's rows: no extrapolation
                t0, t1, y0, y1 = t_known[j - 1], t_known[j], y_known[j - 1], y_known[j]
                values[k] = y0 + (y1 - y0) * ((t[k] - t0) / (t1 - t0))
            merged[col] = values
        frames.append(merged)
    out = pd.concat(frames).dropna().reset_index(drop=True)
    out["time"] = out["time"].round(1)
    atime = out["time"].abs()
    windows = [atime <= 10, (atime > 10) & (atime <= 20), (atime > 20) & (atime <= 100)]
    with np.errstate(invalid="ignore"):  # an all-zero window gives NaN, as in R
        for window, total in zip(windows, totals, strict=True):
            scale = out.loc[window, "foot"].sum() / total
            out.loc[window, "foot"] = out.loc[window, "foot"] / scale
    return out


@contextmanager
def pystilt_accessor() -> Iterator[None]:
    """PYSTILT's own ``DataArray.stilt`` accessor while PYSTILT's code runs.

    Both packages register an accessor named ``stilt``, and PYSTILT's footprint
    code calls its own (``foot.stilt.receptor``): whichever was registered last in
    the session decides. Ours is registered again afterwards.
    """
    from stilt.footprint.accessor import FootprintAccessor as PystiltAccessor

    from pystilt_dask.accessor import StiltAccessorWarning, register

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xr.core.extensions.AccessorRegistrationWarning)
        xr.register_dataarray_accessor("stilt")(PystiltAccessor)
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StiltAccessorWarning)  # taking it back is the point
            register()
