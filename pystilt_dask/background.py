"""Backgrounds: a mole-fraction field sampled where each particle's trajectory ends.

A receptor's background is the field (CarbonTracker, CAMS, ... as any xarray
``DataArray``, lazy or not) at each particle's endpoint, the row farthest in time
from the release, averaged over the particles with the weights the footprint's
transforms give them, so that it adds to the enhancement of the same footprint.
It is PYSTILT's ``sim.background(field)`` (``stilt.particles.background``) on our
particle tables, whose columns keep R-STILT's names: ``long``, ``lati``, ``indx``
and ``time`` in minutes since release where PYSTILT has ``lon``, ``lat``,
``particle``, ``age`` and a UTC ``time``.

How the field is read, as PYSTILT reads it:

* **horizontal**: dimensions ``lat``/``lon`` (also ``latitude``/``longitude``) or
  ``y``/``x``, in degrees. The nearest cell centre wins; each cell reaches halfway
  to its neighbours and, at the edges, as far out as it reaches in; an endpoint
  beyond that is outside the field (a dimension of one cell has no edges).
  On ``lon``/``longitude`` (not ``x``) endpoint longitudes are first brought into
  the field's convention: [0, 360) when its centres reach east of 180°, else
  [-180, 180). A tie goes to the lower coordinate.
* **vertical**: at most one more dimension, named after the particle column it is
  matched against (``pres`` in hPa, ``zagl`` in m, or any other stored column);
  the nearest level, the first of the field's order on a tie, the top or bottom
  level beyond them.
* **time**: a ``time`` dimension is matched to the endpoint's UTC time (receptor
  time plus ``time`` minutes): the nearest, the later on a tie, the first or last
  beyond them.

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
from typing import TYPE_CHECKING, Any

import dask
import dask.array as da
import fsspec
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import xarray as xr
from dask.base import tokenize

from .errors import ConfigError, StoreError
from .footprint.column import first_rows
from .footprint.transforms import CustomTransform, Transform, apply_transforms
from .receptors import Receptor
from .store import layout, registry
from .store.paths import Location

if TYPE_CHECKING:
    from .model import Model

__all__ = ["Background", "background", "endpoint_rows", "particle_background", "particle_weights"]

#: Horizontal dimension pairs a field may have, and whether longitudes wrap on them.
_HORIZONTAL = (("lat", "lon", True), ("latitude", "longitude", True), ("y", "x", False))
#: Particle columns every background reads.
_COLUMNS = ("indx", "time", "long", "lati")
_NS_PER_MINUTE = 60_000_000_000


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


@dataclass(frozen=True)
class _Axes:
    """Which dimension of a field is what."""

    lat: str
    lon: str
    wraps: bool
    vertical: str | None
    time: str | None


def _field_axes(field: xr.DataArray) -> _Axes:
    """Name the horizontal, vertical and time dimensions of a background field.

    Raises
    ------
    TypeError
        If ``field`` is not a DataArray.
    ValueError
        If it has no horizontal pair, more than one other dimension besides
        ``time``, a dimension without coordinates, or a ``time`` that is not datetimes.
    """
    if not isinstance(field, xr.DataArray):
        raise TypeError(
            f"a background field is an xarray.DataArray, not {type(field).__name__} "
            "(pick one variable of a Dataset: ds['co2'])"
        )
    dims = field.dims
    pair = next((p for p in _HORIZONTAL if p[0] in dims and p[1] in dims), None)
    if pair is None:
        raise ValueError(
            f"a background field needs dimensions lat/lon, latitude/longitude or y/x; "
            f"it has {list(dims)}"
        )
    lat, lon, wraps = pair
    time = "time" if "time" in dims else None
    others = [d for d in dims if d not in (lat, lon, time)]
    if len(others) > 1:
        raise ValueError(
            f"a background field has at most one vertical dimension besides {lat}/{lon} "
            f"and time; it has {others}"
        )
    for dim in dims:
        if dim not in field.coords:
            raise ValueError(f"the background field's dimension {dim!r} has no coordinates")
    if time is not None and not np.issubdtype(field[time].dtype, np.datetime64):
        raise ValueError(f"the background field's time is {field[time].dtype}, not datetimes")
    return _Axes(lat, lon, wraps, others[0] if others else None, time)


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


def _sample(
    field: xr.DataArray, endpoints: pd.DataFrame, receptor_time: Any, axes: _Axes | None = None
) -> np.ndarray:
    """The field at each endpoint row (``long``, ``lati``, ``time`` and the vertical column).

    ``receptor_time`` (naive UTC) turns ``time`` (minutes since release) into the
    UTC time a ``time`` dimension is matched against; it may also be one time per row.
    NaN where an endpoint is outside the field horizontally. Only the cells needed
    are read from a lazy field.
    """
    axes = axes or _field_axes(field)
    n = len(endpoints)
    lat, lat_in = _nearest_cell(field[axes.lat].to_numpy(), _column(endpoints, "lati"), False)
    lon, lon_in = _nearest_cell(field[axes.lon].to_numpy(), _column(endpoints, "long"), axes.wraps)
    inside = lat_in & lon_in
    where = {axes.lat: np.where(inside, lat, 0), axes.lon: np.where(inside, lon, 0)}
    if axes.vertical is not None:
        if axes.vertical not in endpoints.columns:
            raise ValueError(
                f"the background field's vertical dimension {axes.vertical!r} is not a particle "
                f"column (rename it after one: pres in hPa, zagl in m; or add the column)"
            )
        where[axes.vertical] = _nearest_level(
            field[axes.vertical].to_numpy(), _column(endpoints, axes.vertical)
        )
    if axes.time is not None:
        released = np.asarray(receptor_time, dtype="datetime64[ns]").view(np.int64)
        minutes = _column(endpoints, "time")
        utc = released + np.rint(minutes * _NS_PER_MINUTE).astype(np.int64)
        stamps = field[axes.time].to_numpy().astype("datetime64[ns]").view(np.int64)
        where[axes.time] = _nearest_time(stamps, utc)
    if n == 0:
        return np.zeros(0)
    points = {dim: xr.DataArray(index, dims="_endpoint") for dim, index in where.items()}
    with dask.config.set(scheduler="sync"):
        values = field.isel(points).to_numpy().astype(np.float64, copy=False)
    return np.where(inside, values, np.nan)


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
    axes = _field_axes(field)
    weights = particle_weights(particles, receptor, transforms)
    ends = particles.iloc[endpoint_rows(particles)]
    values = pd.Series(_sample(field, ends, receptor.time, axes), index=weights.index)
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
    """
    axes = _field_axes(field)
    transforms, needed = _footprint_transforms(model, footprint)
    if axes.vertical is not None and axes.vertical not in model.config.hysplit.varsiwant:
        raise ConfigError(
            f"the background field's vertical dimension {axes.vertical!r} is not a stored "
            f"particle variable (hysplit.varsiwant: {', '.join(model.config.hysplit.varsiwant)})"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    columns = sorted({*_COLUMNS, *needed, *([axes.vertical] if axes.vertical else [])})
    # Built-in transforms read a particle's release row only, so its release and
    # endpoint rows weight it as its whole trajectory does; a custom one may read any.
    whole = any(isinstance(t, CustomTransform) for t in transforms)
    table = model.registry().table
    token = tokenize(
        model.location.url(), table["sim_id"].tolist(), table["row"].tolist(),
        json.dumps([t.model_dump(mode="json") for t in transforms]), field,
    )  # fmt: skip
    name = f"stilt-background-{token}"
    field_key = f"{name}-field"
    graph: dict[Any, Any] = {field_key: _Held(field)}
    starts = range(0, len(table), batch_size)
    for i, start in enumerate(starts):
        entries = table.iloc[start : start + batch_size].reset_index(drop=True)
        graph[(name, i)] = (
            _batch, model.location, entries, field_key, transforms, columns, whole,
        )  # fmt: skip
    sizes = tuple(min(batch_size, len(table) - s) for s in starts)
    data = da.Array(graph, name, (sizes,), meta=np.empty((0,)), dtype=np.float64)
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


class _Held:
    """The field, held in a dask graph as a plain value (not a collection to compute)."""

    __slots__ = ("field",)

    def __init__(self, field: xr.DataArray) -> None:
        self.field = field


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
    location: Location,
    entries: pd.DataFrame,
    held: _Held,
    transforms: tuple[Transform, ...],
    columns: list[str],
    whole: bool,
) -> np.ndarray:
    """The background of each simulation in ``entries`` (registry rows); NaN without particles."""
    axes = _field_axes(held.field)
    out = np.full(len(entries), np.nan)
    found, weights, ends, times = [], [], [], []
    for i, entry in entries.iterrows():
        table = _read_rows(location, str(entry["sim_id"]), None if whole else columns)
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
    values = _sample(held.field, pd.concat(ends, ignore_index=True), np.concatenate(times), axes)
    bounds = np.cumsum([0] + [len(end) for end in ends])
    for i, w, lo, hi in zip(found, weights, bounds[:-1], bounds[1:], strict=True):
        out[i] = _weighted(values[lo:hi], w)
    return out


def _read_rows(location: Location, sim_id: str, columns: list[str] | None) -> pd.DataFrame | None:
    """A simulation's stored particles: all of them (``columns=None``), or only each
    particle's release and endpoint rows of ``columns``; ``None`` when not stored."""
    key = layout.particles_key(sim_id)
    try:
        source = _open(location, key)
    except FileNotFoundError:
        return None
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


def _open(location: Location, key: str) -> Any:
    if location.is_local:
        return open(location.url(key), "rb")  # noqa: SIM115 (closed by the caller)
    return fsspec.open(location.url(key), "rb", **(location.storage_options or {})).open()


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


def _column(table: pd.DataFrame, name: str) -> np.ndarray:
    return table[name].to_numpy(dtype=np.float64)


def _nearest_cell(centres: np.ndarray, x: np.ndarray, wraps: bool) -> tuple[np.ndarray, np.ndarray]:
    """Index of the cell holding each ``x``, and whether it is inside the field at all."""
    order = np.argsort(centres, kind="stable")
    ordered = centres[order].astype(np.float64)
    if wraps:
        # Into the field's convention: [0, 360) when it reaches east of 180, else [-180, 180).
        west = 0.0 if ordered[-1] > 180.0 else -180.0
        x = np.where((x >= west) & (x < west + 360.0), x, (x - west) % 360.0 + west)
    if ordered.size == 1:
        return np.zeros(x.size, dtype=np.int64), np.ones(x.size, dtype=bool)
    # side="left": a point halfway between two centres belongs to the lower cell.
    cell = np.searchsorted((ordered[:-1] + ordered[1:]) / 2.0, x, side="left")
    low = ordered[0] - (ordered[1] - ordered[0]) / 2.0
    high = ordered[-1] + (ordered[-1] - ordered[-2]) / 2.0
    return order[cell], (x >= low) & (x <= high)


def _nearest_level(levels: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Index of the nearest level (the first in the field's order on a tie), clamped
    to the field's levels; the first level for a missing value."""
    order = np.argsort(levels, kind="stable")
    ordered = levels[order].astype(np.float64)
    above = np.searchsorted(ordered, v)
    high = np.minimum(above, ordered.size - 1)
    low = np.maximum(above - 1, 0)
    to_low, to_high = np.abs(v - ordered[low]), np.abs(ordered[high] - v)
    first = np.minimum(order[low], order[high])
    nearest = np.where(to_low < to_high, order[low], np.where(to_high < to_low, order[high], first))
    return np.where(np.isnan(v), 0, nearest)


def _nearest_time(stamps: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Index of the nearest time (the later on a tie), clamped to the field's times."""
    order = np.argsort(stamps, kind="stable")
    ordered = stamps[order]
    if ordered.size == 1:
        return np.zeros(t.size, dtype=np.int64)
    after = np.clip(np.searchsorted(ordered, t), 1, ordered.size - 1)
    later = ordered[after] - t <= t - ordered[after - 1]
    return order[np.where(later, after, after - 1)]
