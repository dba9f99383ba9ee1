"""Gridded fields (backgrounds, fluxes) read at particle positions, as PYSTILT reads them.

A field is an xarray ``DataArray``, lazy or not. Each particle row meets one
value of it:

* **horizontal**: dimensions ``lat``/``lon`` (also ``latitude``/``longitude``) or
  ``y``/``x``, in degrees. The nearest cell centre wins; each cell reaches halfway
  to its neighbours and, at the edges, as far out as it reaches in; a position
  beyond that, or not a number, is outside the field (a dimension of one cell has
  no edges). On ``lon``/``longitude`` (not ``x``) longitudes are first brought
  into the field's convention: [0, 360) when its centres reach east of 180°, else
  [-180, 180). A tie goes to the lower coordinate.
* **vertical**: at most one more dimension, named after the particle column it is
  matched against (``pres`` in hPa, ``zagl`` in m, or any other stored column);
  the nearest level, the first of the field's order on a tie, the top or bottom
  level beyond them.
* **time**: a ``time`` dimension is matched to the row's UTC time (release time
  plus ``time`` minutes): the nearest, the later on a tie, the first or last
  beyond them.

:func:`batches` makes one lazy value per simulation of a project, each task
reading a batch of simulations against the field, which the graph holds once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

#: Horizontal dimension pairs a field may have, and whether longitudes wrap on them.
_HORIZONTAL = (("lat", "lon", True), ("latitude", "longitude", True), ("y", "x", False))
_NS_PER_MINUTE = 60_000_000_000


@dataclass(frozen=True)
class FieldAxes:
    """Which dimension of a field is what (:func:`field_axes`).

    Attributes
    ----------
    lat, lon : str
        The horizontal dimensions.
    wraps : bool
        Whether longitudes wrap (``lon``, ``longitude``; not ``x``).
    vertical : str or None
        The vertical dimension, named after the particle column it matches.
    time : str or None
        ``time`` when the field varies in time.
    """

    lat: str
    lon: str
    wraps: bool
    vertical: str | None
    time: str | None


@dataclass(frozen=True)
class Held:
    """A field in a dask graph as a plain value that tasks share, not a collection to compute.

    Attributes
    ----------
    field : xarray.DataArray
        The field, read by each task only where its particles fall.
    """

    field: xr.DataArray


def field_axes(field: xr.DataArray, what: str = "background field") -> FieldAxes:
    """Name the horizontal, vertical and time dimensions of a field.

    Parameters
    ----------
    field : xarray.DataArray
        The field.
    what : str
        What the field is, for errors.

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
            f"a {what} is an xarray.DataArray, not {type(field).__name__} "
            "(pick one variable of a Dataset: ds['co2'])"
        )
    dims = field.dims
    pair = next((p for p in _HORIZONTAL if p[0] in dims and p[1] in dims), None)
    if pair is None:
        raise ValueError(
            f"a {what} needs dimensions lat/lon, latitude/longitude or y/x; it has {list(dims)}"
        )
    lat, lon, wraps = pair
    time = "time" if "time" in dims else None
    others = [d for d in dims if d not in (lat, lon, time)]
    if len(others) > 1:
        raise ValueError(
            f"a {what} has at most one vertical dimension besides {lat}/{lon} "
            f"and time; it has {others}"
        )
    for dim in dims:
        if dim not in field.coords:
            raise ValueError(f"the {what}'s dimension {dim!r} has no coordinates")
    if time is not None and not np.issubdtype(field[time].dtype, np.datetime64):
        raise ValueError(f"the {what}'s time is {field[time].dtype}, not datetimes")
    return FieldAxes(lat, lon, wraps, others[0] if others else None, time)


def sample(
    field: xr.DataArray, rows: pd.DataFrame, release_time: Any, axes: FieldAxes | None = None
) -> np.ndarray:
    """The field at each particle row (``long``, ``lati``, ``time`` and the vertical column).

    Parameters
    ----------
    field : xarray.DataArray
        The field; a lazy one is read only in the cells the rows meet.
    rows : pandas.DataFrame
        Particle rows: ``long``, ``lati``, ``time`` (minutes since release) and
        the column named like the field's vertical dimension.
    release_time : datetime-like or array of datetime64
        Naive UTC release time, or one per row, which dates the rows for a
        field with a ``time`` dimension.
    axes : FieldAxes, optional
        ``field_axes(field)``, when already known.

    Returns
    -------
    numpy.ndarray
        float64, NaN where a row is outside the field horizontally or meets a NaN cell.

    Raises
    ------
    ValueError
        If the rows lack the column of the field's vertical dimension.
    """
    axes = axes or field_axes(field)
    lat, lat_in = nearest_cell(field[axes.lat].to_numpy(), _column(rows, "lati"), False)
    lon, lon_in = nearest_cell(field[axes.lon].to_numpy(), _column(rows, "long"), axes.wraps)
    inside = lat_in & lon_in
    where = {axes.lat: np.where(inside, lat, 0), axes.lon: np.where(inside, lon, 0)}
    if axes.vertical is not None:
        if axes.vertical not in rows.columns:
            raise ValueError(
                f"the field's vertical dimension {axes.vertical!r} is not a particle column "
                "(rename it after one: pres in hPa, zagl in m; or add the column)"
            )
        levels = field[axes.vertical].to_numpy()
        where[axes.vertical] = nearest_level(levels, _column(rows, axes.vertical))
    if axes.time is not None:
        released = np.asarray(release_time, dtype="datetime64[ns]").view(np.int64)
        utc = released + np.rint(_column(rows, "time") * _NS_PER_MINUTE).astype(np.int64)
        stamps = field[axes.time].to_numpy().astype("datetime64[ns]").view(np.int64)
        where[axes.time] = nearest_time(stamps, utc)
    if len(rows) == 0:
        return np.zeros(0)
    points = {dim: xr.DataArray(index, dims="_row") for dim, index in where.items()}
    # Inside a task: read the cells here, not through another scheduler.
    with dask.config.set(scheduler="sync"):
        values = field.isel(points).to_numpy().astype(np.float64, copy=False)
    return np.where(inside, values, np.nan)


def batches(
    name: str,
    table: pd.DataFrame,
    batch_size: int,
    func: Callable[..., np.ndarray],
    field: xr.DataArray,
    *args: Any,
) -> da.Array:
    """One float per registry row, lazily: ``func(rows, Held(field), *args)`` per batch.

    Parameters
    ----------
    name : str
        The graph's key prefix, unique for what it computes (tokenized).
    table : pandas.DataFrame
        Registry rows, one per simulation.
    batch_size : int
        Rows per task.
    func : callable
        Returns one float per row of its batch (``rows`` indexed from 0).
    field : xarray.DataArray
        Held once in the graph, shared by every task (sent once to each worker).
    *args
        Passed to every ``func`` call.

    Raises
    ------
    ValueError
        If ``batch_size`` is less than 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    field_key = f"{name}-field"
    graph: dict[Any, Any] = {field_key: Held(field)}
    starts = range(0, len(table), batch_size)
    for i, start in enumerate(starts):
        rows = table.iloc[start : start + batch_size].reset_index(drop=True)
        graph[(name, i)] = (func, rows, field_key, *args)
    sizes = tuple(min(batch_size, len(table) - s) for s in starts)
    return da.Array(graph, name, (sizes,), meta=np.empty((0,)), dtype=np.float64)


def nearest_cell(centres: np.ndarray, x: np.ndarray, wraps: bool) -> tuple[np.ndarray, np.ndarray]:
    """Index of the cell holding each ``x``, and whether it is inside the field at all."""
    order = np.argsort(centres, kind="stable")
    ordered = centres[order].astype(np.float64)
    if wraps:
        # Into the field's convention: [0, 360) when it reaches east of 180, else [-180, 180).
        west = 0.0 if ordered[-1] > 180.0 else -180.0
        x = np.where((x >= west) & (x < west + 360.0), x, (x - west) % 360.0 + west)
    if ordered.size == 1:
        return np.zeros(x.size, dtype=np.int64), np.isfinite(x)
    # side="left": a point halfway between two centres belongs to the lower cell.
    cell = np.searchsorted((ordered[:-1] + ordered[1:]) / 2.0, x, side="left")
    low = ordered[0] - (ordered[1] - ordered[0]) / 2.0
    high = ordered[-1] + (ordered[-1] - ordered[-2]) / 2.0
    return order[cell], (x >= low) & (x <= high)


def nearest_level(levels: np.ndarray, v: np.ndarray) -> np.ndarray:
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


def nearest_time(stamps: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Index of the nearest time (the later on a tie), clamped to the field's times."""
    order = np.argsort(stamps, kind="stable")
    ordered = stamps[order]
    if ordered.size == 1:
        return np.zeros(t.size, dtype=np.int64)
    after = np.clip(np.searchsorted(ordered, t), 1, ordered.size - 1)
    later = ordered[after] - t <= t - ordered[after - 1]
    return order[np.where(later, after, after - 1)]


def _column(table: pd.DataFrame, name: str) -> np.ndarray:
    return table[name].to_numpy(dtype=np.float64)
