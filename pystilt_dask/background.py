"""Backgrounds: a mole-fraction field sampled where each particle's trajectory ends.

A receptor's background is the field (CarbonTracker, CAMS, ... as any xarray
``DataArray``, lazy or not) at each particle's endpoint, the row farthest in time
from the release, averaged over the particles with the weights the footprint's
transforms give them, so that it adds to the enhancement of the same footprint.
It is PYSTILT's ``sim.background(field)`` (``stilt.particles.background``) on our
particle tables, whose columns keep R-STILT's names: ``long``, ``lati``, ``indx``
and ``time`` in minutes since release where PYSTILT has ``lon``, ``lat``,
``particle``, ``age`` and a UTC ``time``.

The field is read as PYSTILT reads it: nearest cell, level and time
(:mod:`pystilt_dask.fields`).

An endpoint outside the field, or in a cell holding NaN, has no value and counts
as the weighted mean of the others. Each particle's weight is its endpoint's
``foot`` after the transforms are applied to the particles with ``foot`` set to
one, divided by the number of particles: ``1/N`` without transforms, shares of the
column's air mass with pressure weighting (summing to ``(p_sfc - p_top) / p_sfc``).

:func:`background` computes it for every simulation of a project as one lazy dask
array, reading from each particle file only the rows it needs (each particle's
release and endpoint rows) and only the columns it needs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import xarray as xr
from dask.base import tokenize

from .errors import ConfigError, StoreError
from .fields import Held, batches, field_axes, sample
from .footprint.column import first_rows
from .footprint.transforms import CustomTransform, Transform, apply_transforms
from .receptors import Receptor
from .store import layout, registry
from .store.particles import stored as stored_particles
from .store.paths import Location

if TYPE_CHECKING:
    from .model import Model

__all__ = ["Background", "background", "endpoint_rows", "particle_background", "particle_weights"]

#: Particle columns every background reads.
_COLUMNS = ("indx", "time", "long", "lati")


@dataclass(frozen=True)
class Background:
    """The background at one receptor, as :func:`particle_background` returns it.

    Attributes
    ----------
    value : float
        ``Σ weights × per_particle``, a particle without a value counting as the
        weighted mean of the others; NaN when no particle has one.
    per_particle : pandas.Series
        The field at each particle's endpoint, indexed by ``indx``; NaN outside it.
    weights : pandas.Series
        Each particle's weight, indexed by ``indx``.
    """

    value: float
    per_particle: pd.Series
    weights: pd.Series


def endpoint_rows(particles: pd.DataFrame) -> np.ndarray:
    """Position of each particle's endpoint, the row farthest in time from release.

    Particles come in ascending ``indx``. A particle that left the meteorology early
    ends where it left.
    """
    indx = particles["indx"].to_numpy()
    order = np.lexsort((np.abs(particles["time"].to_numpy(dtype=np.float64)), indx))
    ids = indx[order]
    return order[np.append(ids[1:] != ids[:-1], True)] if ids.size else order


def particle_weights(
    particles: pd.DataFrame, receptor: Receptor, transforms: Sequence[Transform] = ()
) -> pd.Series:
    """Each particle's background weight, indexed by ``indx``.

    The endpoint's ``foot`` after ``transforms`` are applied to the particles with
    ``foot`` set to one, over the number of particles.
    """
    weighted = apply_transforms(particles.assign(foot=1.0), tuple(transforms), receptor)
    rows = endpoint_rows(weighted)
    foot = weighted["foot"].to_numpy(dtype=np.float64)[rows]
    index = pd.Index(weighted["indx"].to_numpy()[rows], name="indx")
    return pd.Series(foot / max(rows.size, 1), index=index, name="weight")


def particle_background(
    particles: pd.DataFrame,
    field: xr.DataArray,
    receptor: Receptor,
    transforms: Sequence[Transform] = (),
) -> Background:
    """The background at one receptor: ``field`` at its particles' endpoints, weighted.

    PYSTILT's ``stilt.particles.background(particles, field, transforms=…,
    receptor=…)`` on our particle table (see the module docstring for how the
    field is read).

    Parameters
    ----------
    particles : pandas.DataFrame
        The simulation's particles with R-STILT's columns (``model.trajectories.load``):
        ``indx``, ``time`` (minutes since release), ``long``, ``lati``, the field's
        vertical column, and what the transforms read.
    field : xarray.DataArray
        The mole-fraction field.
    receptor : Receptor
        The receptor the particles were released from: its time dates the
        endpoints, and the transforms read it.
    transforms : sequence of Transform, optional
        The footprint's transforms (``config.footprints[name].transforms``), so the
        background adds to that footprint's enhancement; none for a tower.

    Returns
    -------
    Background

    Examples
    --------
    >>> ct = xr.open_dataarray("ct_co2.nc").rename(level="pres")  # doctest: +SKIP
    >>> particle_background(model.trajectories.load(sim_id), ct, receptor).value  # doctest: +SKIP
    """
    axes = field_axes(field)
    weights = particle_weights(particles, receptor, transforms)
    ends = particles.iloc[endpoint_rows(particles)]
    values = pd.Series(sample(field, ends, receptor.time, axes), index=weights.index)
    return Background(
        _weighted(values.to_numpy(), weights.to_numpy()), values.rename("background"), weights
    )


def background(
    model: Model, field: xr.DataArray, footprint: str | None = None, *, batch_size: int = 64
) -> xr.DataArray:
    """The background of every registered simulation of a project, lazily.

    One dask computation: a task per ``batch_size`` simulations reads each one's
    release and endpoint rows (only the columns needed) from its particle file,
    samples the field there and weights it (:func:`particle_background`). Nothing
    is read until the result is computed.

    Parameters
    ----------
    model : Model
        The project.
    field : xarray.DataArray
        The mole-fraction field; a lazy one (``xr.open_zarr``, ``open_dataset`` with
        chunks) is read only where the endpoints fall.
    footprint : str, optional
        The footprint whose transforms weight the particles; default: none (a
        plain mean over particles, as for a tower).
    batch_size : int
        Simulations per task.

    Returns
    -------
    xarray.DataArray
        ``background(simulation)`` backed by dask, with the receptor fields as
        coordinates; NaN for simulations without particles yet.

    Raises
    ------
    ConfigError
        If ``footprint`` is not configured, or the field's vertical dimension is
        not among ``hysplit.varsiwant``.
    ValueError
        If ``batch_size`` is less than 1.
    """
    axes = field_axes(field)
    transforms, needed = _footprint_transforms(model, footprint)
    if axes.vertical is not None and axes.vertical not in model.config.hysplit.varsiwant:
        raise ConfigError(
            f"the background field's vertical dimension {axes.vertical!r} is not a stored "
            f"particle variable (hysplit.varsiwant: {', '.join(model.config.hysplit.varsiwant)})"
        )
    columns = sorted({*_COLUMNS, *needed, *([axes.vertical] if axes.vertical else [])})
    # Built-in transforms read a particle's release row only, so its release and
    # endpoint rows weight it as its whole trajectory does; a custom one may read any.
    whole = any(isinstance(t, CustomTransform) for t in transforms)
    table = model.registry().table
    token = tokenize(
        model.location.url(), table["sim_id"].tolist(), table["row"].tolist(),
        json.dumps([t.model_dump(mode="json") for t in transforms]), field,
    )  # fmt: skip
    data = batches(
        f"stilt-background-{token}", table, batch_size, _batch, field,
        model.location, transforms, columns, whole,
    )  # fmt: skip
    coords = {
        "simulation": ("simulation", table["sim_id"].to_numpy(dtype=object)),
        "receptor_time": ("simulation", table["time"].to_numpy("datetime64[ns]")),
        "receptor_longitude": ("simulation", table["longitude"].to_numpy()),
        "receptor_latitude": ("simulation", table["latitude"].to_numpy()),
        "receptor_kind": ("simulation", table["kind"].to_numpy(str)),
    }
    attrs = {"footprint": footprint or "", "long_name": "background at the particles' endpoints"}
    attrs.update({k: v for k, v in field.attrs.items() if k == "units"})
    return xr.DataArray(data, dims="simulation", coords=coords, name="background", attrs=attrs)


def _footprint_transforms(
    model: Model, footprint: str | None
) -> tuple[tuple[Transform, ...], set[str]]:
    if footprint is None:
        return (), set()
    configured = model.config.footprints
    if footprint not in configured:
        known = ", ".join(configured) or "none configured"
        raise ConfigError(f"no footprint named {footprint!r} ({known})")
    return configured[footprint].transforms, configured[footprint].needed_variables()


def _batch(
    entries: pd.DataFrame,
    held: Held,
    location: Location,
    transforms: tuple[Transform, ...],
    columns: list[str],
    whole: bool,
) -> np.ndarray:
    """The background of each simulation in ``entries`` (registry rows); NaN without particles."""
    axes = field_axes(held.field)
    out = np.full(len(entries), np.nan)
    found, weights, ends, times = [], [], [], []
    for i, entry in entries.iterrows():
        table = _read_rows(
            location, str(entry["sim_id"]), int(entry["row"]), None if whole else columns
        )
        if table is None:
            continue
        receptor = registry.receptor(entry)
        found.append(i)
        weights.append(particle_weights(table, receptor, transforms).to_numpy())
        end = table.iloc[endpoint_rows(table)]
        ends.append(end)
        times.append(np.full(len(end), np.datetime64(receptor.time, "ns")))
    if not found:
        return out
    # One read of the field for the whole batch.
    values = sample(held.field, pd.concat(ends, ignore_index=True), np.concatenate(times), axes)
    bounds = np.cumsum([0] + [len(end) for end in ends])
    for i, w, lo, hi in zip(found, weights, bounds[:-1], bounds[1:], strict=True):
        out[i] = _weighted(values[lo:hi], w)
    return out


def _read_rows(
    location: Location, sim_id: str, row: int, columns: list[str] | None
) -> pd.DataFrame | None:
    """A simulation's stored particles: all of them (``columns=None``), or only each
    particle's release and endpoint rows of ``columns``; ``None`` when not stored."""
    key = layout.particles_key(sim_id)
    try:
        source = location.open(key)
    except FileNotFoundError:
        return _packed_rows(location, key, row, columns)
    try:
        with source:
            parquet = pq.ParquetFile(source, page_checksum_verification=True)
            if columns is None:
                return parquet.read().to_pandas()
            keys = parquet.read(columns=["indx", "time"]).to_pandas()
            rows = np.union1d(first_rows(keys)[0], endpoint_rows(keys))
            return _take(parquet, rows, columns)
    except (OSError, ValueError) as exc:
        raise StoreError(
            f"the particle file of simulation {sim_id!r} cannot be read ({exc}); "
            "run `stilt-dask verify --repair`"
        ) from None


def _packed_rows(
    location: Location, key: str, row: int, columns: list[str] | None
) -> pd.DataFrame | None:
    """:func:`_read_rows` of a simulation packed by ``stilt-dask compact`` (its row group whole)."""
    try:
        table, _ = stored_particles(location, key, row)
    except FileNotFoundError:
        return None
    if columns is None:
        return table
    rows = np.union1d(first_rows(table)[0], endpoint_rows(table))
    return table.iloc[rows][columns].reset_index(drop=True)


def _take(parquet: pq.ParquetFile, rows: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """Rows ``rows`` (ascending file positions) of ``columns``, reading only their row groups."""
    sizes = [parquet.metadata.row_group(g).num_rows for g in range(parquet.num_row_groups)]
    starts = np.concatenate(([0], np.cumsum(sizes)))
    group = np.searchsorted(starts, rows, side="right") - 1
    groups = np.unique(group)
    read_sizes = np.asarray(sizes)[groups]
    read_starts = np.concatenate(([0], np.cumsum(read_sizes)))[np.searchsorted(groups, group)]
    table = parquet.read_row_groups(groups.tolist(), columns=columns)
    return table.take(rows - starts[group] + read_starts).to_pandas()


def _weighted(values: np.ndarray, weights: np.ndarray) -> float:
    """``Σ w v``, values missing counting as the weighted mean of the others."""
    valid = ~np.isnan(values)
    if not valid.any():
        return float("nan")
    mean = np.sum(weights[valid] * values[valid]) / np.sum(weights[valid])
    return float(mean * np.sum(weights))
