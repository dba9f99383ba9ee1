"""Particle-level enhancements: each particle's ``foot`` times the flux where it is.

Unlike ``foot.stilt.convolve``, nothing is gridded: every particle row meets
the flux cell its position falls in, at the flux step nearest its time, so a
flux finer than the footprint grid keeps its detail. A particle's enhancement
is the sum of ``foot × flux`` along its trajectory, and the receptor's the mean
over its particles, as PYSTILT's ``particles.stilt.enhancement(flux).mean()``
forms them:

* the flux cell is the one whose centre is nearest on each axis (each cell
  reaching half-way to its neighbours, the outer ones as far beyond their
  centres; a position half-way between two centres takes the lower one);
  longitudes are wrapped to the flux's convention (-180..180 or 0..360);
  positions outside the flux, and missing (NaN) flux cells, meet no flux;
* the flux step is the one whose ``time`` is nearest the row's time (receptor
  time + ``time`` minutes); half-way between two steps the later one; before
  the first or after the last, the first or the last.

:func:`particle_enhancement` does it for one particle table,
:func:`enhancement_from_particles` for every stored simulation of a model as
one lazy computation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from .convolve import ENHANCEMENT_ATTRS

if TYPE_CHECKING:
    from ..model import Model

#: Simulations per task of :func:`enhancement_from_particles`.
SIMULATIONS_PER_TASK = 32


def particle_enhancement(
    particles: pd.DataFrame, flux: xr.DataArray, receptor_time: Any = None
) -> pd.Series:
    """Each particle's enhancement: ``foot`` times the flux at its positions, summed.

    The mean over particles is the receptor's enhancement (see the module's notes
    for how positions and times meet the flux).

    Parameters
    ----------
    particles : pandas.DataFrame
        A particle table as the store keeps it (``model.trajectories.load(sim_id)``):
        ``indx`` (particle number), ``time`` (minutes since release), ``long``,
        ``lati`` and ``foot``.
    flux : xarray.DataArray
        Surface flux on a ``lat``/``lon`` grid (1-D coordinates, either
        direction), in µmol m⁻² s⁻¹ for ppm; with a ``time`` dimension (UTC,
        increasing) or constant in time.
    receptor_time : datetime-like, optional
        The release time; needed when the flux has a ``time`` dimension.

    Returns
    -------
    pandas.Series
        ``enhancement`` indexed by ``particle`` (sorted); 0 for a particle that
        never meets the flux.

    Raises
    ------
    ValueError
        If the flux is not on ``lat``/``lon`` (and ``time``), or varies in time
        and no ``receptor_time`` is given.
    """
    field = _Field.of(flux)
    if field.times is not None and receptor_time is None:
        raise ValueError("the flux varies in time: give the particles' receptor_time")
    ids, sums = _per_particle(particles, field, receptor_time)
    return pd.Series(sums, index=pd.Index(ids, name="particle"), name="enhancement")


def enhancement_from_particles(model: Model, flux: xr.DataArray) -> xr.DataArray:
    """The particle-level enhancement of every registered simulation, lazily.

    Each task reads the stored particles of :data:`SIMULATIONS_PER_TASK`
    simulations and reduces them against the flux, which every task shares
    (sent once to each worker). Runs on the active Dask client, if any.

    Parameters
    ----------
    model : pystilt_dask.Model
        The project whose stored particles to use.
    flux : xarray.DataArray
        As for :func:`particle_enhancement`; may be dask-backed.

    Returns
    -------
    xarray.DataArray
        ``enhancement(simulation)`` in ppm (the mean over each simulation's
        particles), with the receptor coordinates; NaN for a simulation with no
        stored particles yet.
    """
    field = _Field.of(flux)
    table = model.registry().table
    sim_ids = np.asarray(table.index, dtype=object)
    release = table["time"].to_numpy("datetime64[ns]")
    ids = da.from_array(sim_ids, chunks=SIMULATIONS_PER_TASK)
    times = da.from_array(release, chunks=SIMULATIONS_PER_TASK)
    values = flux.transpose(*(["time"] if field.times is not None else []), "lat", "lon").data
    values = values if isinstance(values, da.Array) else da.from_array(np.asarray(values))
    out = da.blockwise(
        _simulations, "s", ids, "s", times, "s", values.astype(np.float64).rechunk(-1), None,
        dtype=np.float64, meta=np.empty(0), trajectories=model.trajectories,
        field=field.without_values(),
    )  # fmt: skip
    coords = {
        "simulation": ("simulation", sim_ids),
        **{f"receptor_{k}": ("simulation", table[k].to_numpy()) for k in
           ("time", "longitude", "latitude", "altitude")},
    }  # fmt: skip
    return xr.DataArray(out, dims=("simulation",), coords=coords, name="enhancement",
                        attrs={**ENHANCEMENT_ATTRS, "long_name": "modelled enhancement "
                               "(particle foot times flux, mean over particles)"})  # fmt: skip


class _Field:
    """A flux's axes (increasing, with the order back to the flux's) and values."""

    def __init__(self, lat, lon, times, values) -> None:
        self.lat, self.lon, self.times, self.values = lat, lon, times, values

    @classmethod
    def of(cls, flux: xr.DataArray) -> _Field:
        if not isinstance(flux, xr.DataArray):
            raise TypeError(f"flux must be an xarray.DataArray, not {type(flux).__name__}")
        if not {"lat", "lon"} <= set(flux.dims) or not set(flux.dims) <= {"time", "lat", "lon"}:
            raise ValueError(
                f"flux dimensions must be (time, lat, lon) or (lat, lon), not {flux.dims}"
            )
        times = None
        if "time" in flux.dims:
            times = np.asarray(flux["time"].values).astype("datetime64[ns]")
            if times.size > 1 and (np.diff(times) <= np.timedelta64(0)).any():
                raise ValueError("the flux's time coordinate must increase")
        order = "time", "lat", "lon"
        values = flux.transpose(*(d for d in order if d in flux.dims))
        return cls(
            np.asarray(flux["lat"].values, np.float64),
            np.asarray(flux["lon"].values, np.float64),
            times,
            values,
        )

    def without_values(self) -> _Field:
        return _Field(self.lat, self.lon, self.times, None)

    def sample(self, values: np.ndarray, lon, lat, when) -> np.ndarray:
        """The flux at each point (0 outside it or in a missing cell)."""
        if self.lon.max() > 180.0:
            lon = np.mod(lon, 360.0)
        else:
            lon = np.mod(lon + 180.0, 360.0) - 180.0
        ix, iy = _nearest_cell(self.lon, lon), _nearest_cell(self.lat, lat)
        inside = (ix >= 0) & (iy >= 0)
        ix, iy = np.where(inside, ix, 0), np.where(inside, iy, 0)
        if self.times is None:
            picked = values[iy, ix]
        else:
            picked = values[_nearest_step(self.times, when), iy, ix]
        return np.where(inside & ~np.isnan(picked), picked, 0.0)


def _nearest_cell(centres: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of the cell each value falls in (cells reach half-way to neighbours), -1 outside."""
    order = np.argsort(centres, kind="stable")
    c = centres[order]
    if c.size == 1:
        return np.where(np.isfinite(values), order[0], -1)
    middles = (c[1:] + c[:-1]) / 2
    low = c[0] - (c[1] - c[0]) / 2
    high = c[-1] + (c[-1] - c[-2]) / 2
    index = np.searchsorted(middles, values, side="left")  # half-way: the lower cell
    inside = (values >= low) & (values <= high)
    return np.where(inside, order[np.minimum(index, c.size - 1)], -1)


def _nearest_step(times: np.ndarray, when: np.ndarray) -> np.ndarray:
    """Index of the step nearest each time; half-way, the later; outside, the first or last."""
    after = np.clip(np.searchsorted(times, when, side="left"), 0, times.size - 1)
    before = np.clip(after - 1, 0, times.size - 1)
    later = (times[after] - when) <= (when - times[before])
    return np.where(later, after, before)


def _per_particle(particles: pd.DataFrame, field: _Field, receptor_time: Any, values=None):
    missing = {"indx", "time", "long", "lati", "foot"} - set(particles.columns)
    if missing:
        raise ValueError(f"the particle table lacks the column(s) {', '.join(sorted(missing))}")
    values = np.asarray(field.values if values is None else values, dtype=np.float64)
    when = None
    if field.times is not None:
        start = pd.Timestamp(receptor_time)
        if start.tz is not None:
            start = start.tz_convert("UTC").tz_localize(None)
        start = np.datetime64(start, "ns")
        minutes = particles["time"].to_numpy(np.float64)
        when = start + np.round(minutes * 60e9).astype("timedelta64[ns]")
    flux = field.sample(
        values, particles["long"].to_numpy(np.float64), particles["lati"].to_numpy(np.float64), when
    )
    contribution = particles["foot"].to_numpy(np.float64) * flux
    ids, inverse = np.unique(particles["indx"].to_numpy(), return_inverse=True)
    return ids, np.bincount(inverse, weights=contribution, minlength=ids.size)


def _simulations(sim_ids, release, values, trajectories, field: _Field) -> np.ndarray:
    from ..errors import StoreError

    out = np.full(len(sim_ids), np.nan)
    for k, (sim_id, time) in enumerate(zip(sim_ids, release, strict=True)):
        try:
            particles = trajectories.load(sim_id)
        except StoreError:  # not stored yet
            continue
        _, sums = _per_particle(particles, field, time, values)
        out[k] = sums.mean() if sums.size else 0.0
    return out
