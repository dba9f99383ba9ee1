"""Particle-level enhancements: each particle's ``foot`` times the flux where it is.

Unlike ``foot.stilt.convolve``, nothing is gridded: every particle row meets
the flux cell its position falls in, at the flux step nearest its time, so a
flux finer than the footprint grid keeps its detail. A particle's enhancement
is the sum of ``foot × flux`` along its trajectory, and the receptor's the mean
over its particles, as PYSTILT's ``particles.stilt.enhancement(flux).mean()``
forms them. The flux cell and step are the nearest, as :mod:`pystilt_dask.fields`
reads any field (longitudes wrapped to the flux's convention; half-way, the
lower cell and the later step); positions outside the flux, and missing (NaN)
flux cells, meet no flux.

:func:`particle_enhancement` does it for one particle table,
:func:`enhancement_from_particles` for every stored simulation of a model as
one lazy computation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr
from dask.base import tokenize

from ..fields import FieldAxes, Held, batches, field_axes, sample
from ..store import layout
from ..store import particles as particle_files
from ..store.paths import Location
from .convolve import ENHANCEMENT_ATTRS

if TYPE_CHECKING:
    from ..model import Model

#: Simulations per task of :func:`enhancement_from_particles`.
SIMULATIONS_PER_TASK = 32
#: Particle columns an enhancement reads.
_COLUMNS = {"indx", "time", "long", "lati", "foot"}


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
        direction), in µmol m⁻² s⁻¹ for ppm; with a ``time`` dimension (UTC)
        or constant in time.
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
    axes = _flux_axes(flux)
    if axes.time is not None and receptor_time is None:
        raise ValueError("the flux varies in time: give the particles' receptor_time")
    ids, sums = _per_particle(particles, flux, _naive_utc(receptor_time), axes)
    return pd.Series(sums, index=pd.Index(ids, name="particle"), name="enhancement")


def enhancement_from_particles(model: Model, flux: xr.DataArray) -> xr.DataArray:
    """The particle-level enhancement of every registered simulation, lazily.

    Each task reads the stored particles of :data:`SIMULATIONS_PER_TASK`
    simulations and the flux where they go (the graph holds the flux once; a
    lazy one is read only in the cells and steps the particles meet). Runs on
    the active Dask client, if any.

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

    Raises
    ------
    ValueError
        If the flux is not on ``lat``/``lon`` (and ``time``).
    """
    _flux_axes(flux)
    table = model.registry().table
    token = tokenize(model.location.url(), table["sim_id"].tolist(), table["row"].tolist(), flux)
    data = batches(
        f"stilt-enhancement-{token}", table, SIMULATIONS_PER_TASK, _simulations, flux,
        model.location,
    )  # fmt: skip
    coords = {
        "simulation": ("simulation", np.asarray(table.index, dtype=object)),
        **{f"receptor_{k}": ("simulation", table[k].to_numpy()) for k in
           ("time", "longitude", "latitude", "altitude")},
    }  # fmt: skip
    return xr.DataArray(data, dims=("simulation",), coords=coords, name="enhancement",
                        attrs={**ENHANCEMENT_ATTRS, "long_name": "modelled enhancement "
                               "(particle foot times flux, mean over particles)"})  # fmt: skip


def _flux_axes(flux: xr.DataArray) -> FieldAxes:
    if isinstance(flux, xr.DataArray) and (
        not {"lat", "lon"} <= set(flux.dims) or not set(flux.dims) <= {"time", "lat", "lon"}
    ):
        raise ValueError(f"flux dimensions must be (time, lat, lon) or (lat, lon), not {flux.dims}")
    return field_axes(flux, "flux")


def _naive_utc(time: Any) -> np.datetime64 | None:
    if time is None:
        return None
    stamp = pd.Timestamp(time)
    if stamp.tz is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return np.datetime64(stamp, "ns")


def _per_particle(
    table: pd.DataFrame, flux: xr.DataArray, release: Any, axes: FieldAxes
) -> tuple[np.ndarray, np.ndarray]:
    """Particle ids and each one's ``Σ foot × flux``."""
    missing = _COLUMNS - set(table.columns)
    if missing:
        raise ValueError(f"the particle table lacks the column(s) {', '.join(sorted(missing))}")
    return _sums(table, sample(flux, table, release, axes))


def _sums(table: pd.DataFrame, flux: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Particle ids and each one's ``Σ foot × flux``, a missing flux (NaN) counting 0."""
    contribution = table["foot"].to_numpy(np.float64) * np.where(np.isnan(flux), 0.0, flux)
    ids, inverse = np.unique(table["indx"].to_numpy(), return_inverse=True)
    return ids, np.bincount(inverse, weights=contribution, minlength=ids.size)


def _simulations(entries: pd.DataFrame, held: Held, location: Location) -> np.ndarray:
    """Each registry row's enhancement (mean over its particles); NaN without particles."""
    out = np.full(len(entries), np.nan)
    found, tables, releases = [], [], []
    for i, entry in entries.iterrows():
        try:
            table = particle_files.read(location, layout.particles_key(str(entry["sim_id"])))
        except FileNotFoundError:  # not stored yet (a damaged file raises StoreError)
            continue
        found.append(i)
        tables.append(table)
        releases.append(np.full(len(table), _naive_utc(entry["time"])))
    if not found:
        return out
    # One read of the flux for the whole batch.
    flux = sample(
        held.field, pd.concat(tables, ignore_index=True), np.concatenate(releases),
        field_axes(held.field, "flux"),
    )  # fmt: skip
    bounds = np.cumsum([0] + [len(table) for table in tables])
    for i, table, lo, hi in zip(found, tables, bounds[:-1], bounds[1:], strict=True):
        _, sums = _sums(table, flux[lo:hi])
        out[i] = sums.mean() if sums.size else 0.0
    return out
