"""Footprint arrays: one zarr v3 group per named footprint, one chunk per simulation.

Each group ``footprints/<name>.zarr`` holds ``foot(simulation, lag, lat, lon)``
(``y, x`` on projected grids), float32, chunked ``(1, n_lag, ny, nx)`` with the
``.`` chunk-key separator, so a simulation's chunk ``foot/c.<row>.0.0.0`` is its
completion key. The fill value is NaN: a simulation never computed reads back as
NaN, never as zeros, and an all-zero footprint always differs from the fill value,
so its chunk is written. Writers also set ``write_empty_chunks`` (runtime config,
not stored) to be safe. Nothing is sharded: a shard is one object, and writers of
different simulations would race on it.

``lag`` is the start of each hourly layer in hours relative to the receptor time
(``-n .. -1`` for backward runs, ``0 .. n`` forward, whose last output minute
starts layer ``n``; ``0`` alone when time-integrated). ``time(simulation, lag)``
is the absolute start of each layer. Layers a footprint does not reach
(particles left the grid) are zero.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import xarray as xr
import zarr
from zarr.codecs import ZstdCodec

from ..config import FootprintConfig, HysplitConfig, ModelConfig
from ..errors import ConfigError, StoreError
from ..footprint import UNITS, Grid
from . import layout, manifest
from .paths import Location

#: Rows per chunk of the per-simulation coordinate arrays.
COORD_CHUNK = 65536
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_SEPARATOR = {"name": "default", "configuration": {"separator": "."}}
_CONFIG_ATTR = "pystilt_dask:footprint"
_LAG_ATTRS = {
    "long_name": "start of the hourly layer relative to the receptor time",
    "units": "hours",
}
_TIME_ATTRS = {
    "standard_name": "time",
    "long_name": "start of the footprint layer (UTC)",
    "units": "minutes since 1970-01-01 00:00:00",
    "calendar": "proleptic_gregorian",
}


def check_name(name: str) -> str:
    """Return ``name`` if it is usable as a footprint name (letters, digits, ``_``, ``-``)."""
    if not _NAME_RE.match(name):
        raise ConfigError(f"footprint name {name!r} must be letters, digits, '_' or '-'")
    return name


def lags(config: FootprintConfig, hysplit: HysplitConfig) -> np.ndarray:
    """Hourly layer offsets (hours from the receptor time) of a footprint's ``lag`` axis."""
    if config.time_integrate:
        return np.zeros(1, dtype="int32")
    n = abs(hysplit.n_hours)
    if hysplit.n_hours < 0:
        return np.arange(-n, 0, dtype="int32")
    # Forward output at exactly n hours falls in layer floor(60 n / 60) = n.
    return np.arange(n + 1, dtype="int32")


def _settings(config: FootprintConfig, hysplit: HysplitConfig) -> str:
    return json.dumps({"footprint": config.model_dump(mode="json"), "n_hours": hysplit.n_hours})


def ensure(
    location: Location,
    name: str,
    config: FootprintConfig,
    hysplit: HysplitConfig,
    sim_ids: np.ndarray,
    times: np.ndarray,
) -> None:
    """Create or grow the group of footprint ``name`` to hold every registered simulation.

    Coordinates of new rows are written first and ``foot`` is resized last, so a
    writer never sees a row without its coordinates. Existing chunks are never
    touched (growing a zarr array rewrites only its metadata).

    Raises
    ------
    ConfigError
        When the group was made with a different grid or run length.
    """
    store = location.zarr_store(layout.footprint_group(check_name(name)))
    try:
        group = zarr.open_group(store, mode="r+", zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        group = _create(store, name, config, hysplit)
    if group.attrs.get(_CONFIG_ATTR) != _settings(config, hysplit):
        raise ConfigError(
            f"footprint {name!r} in {location.root} was made with other settings "
            f"({group.attrs.get(_CONFIG_ATTR)}); choose a new footprint name"
        )
    n = len(sim_ids)
    if group["simulation"].shape[0] > n:
        raise StoreError(f"footprint {name!r} has more rows than the manifest ({n})")
    start = group["simulation"].shape[0]
    if start < n:
        group["simulation"].resize((n,))
        group["simulation"][start:] = np.asarray(sim_ids[start:], dtype=str)
    start = group["time"].shape[0]
    if start < n:
        lag = group["lag"][:].astype("int64")
        minutes = np.asarray(times[start:], dtype="datetime64[m]").astype("int64")
        group["time"].resize((n, len(lag)))
        group["time"][start:] = minutes[:, None] + 60 * lag[None, :]
    foot = group[layout.FOOT]
    if foot.shape[0] < n:
        foot.resize((n, *foot.shape[1:]))


def sync(location: Location, config: ModelConfig) -> None:
    """Make every configured footprint array hold every registered simulation."""
    table = manifest.read(location, columns=["sim_id", "time"])
    for name, fp in config.footprints.items():
        ensure(
            location, name, fp, config.hysplit, table["sim_id"].to_numpy(), table["time"].to_numpy()
        )


def _create(store, name: str, config: FootprintConfig, hysplit: HysplitConfig) -> zarr.Group:
    grid = Grid.from_config(config)
    lag = lags(config, hysplit)
    group = zarr.open_group(store, mode="w", zarr_format=3)
    group.attrs.update(
        {
            "Conventions": "CF-1.8",
            "title": f"STILT footprint {name!r}",
            "source": "pystilt_dask",
            _CONFIG_ATTR: _settings(config, hysplit),
        }
    )
    foot_attrs = {
        "long_name": "STILT surface influence footprint",
        "units": UNITS,
        "coordinates": "time",
    }
    if not grid.is_longlat:
        crs = group.create_array("crs", shape=(), dtype="int32", fill_value=0)
        crs.attrs.update(grid.grid_mapping_attrs())
        foot_attrs["grid_mapping"] = "crs"
    for dim, values in zip(grid.dims, (grid.y_centres, grid.x_centres), strict=True):
        arr = group.create_array(
            dim,
            shape=values.shape,
            dtype="float64",
            dimension_names=(dim,),
            fill_value=np.nan,
            attributes=grid.coordinate_attrs[dim],
        )
        arr[:] = values
    lag_arr = group.create_array(
        "lag", shape=lag.shape, dtype="int32", dimension_names=("lag",), attributes=_LAG_ATTRS
    )
    lag_arr[:] = lag
    group.create_array(
        "simulation",
        shape=(0,),
        chunks=(COORD_CHUNK,),
        dtype=str,
        dimension_names=("simulation",),
        attributes={"long_name": "simulation id"},
    )
    group.create_array(
        "time",
        shape=(0, len(lag)),
        chunks=(COORD_CHUNK, len(lag)),
        dtype="int64",
        dimension_names=("simulation", "lag"),
        attributes=_TIME_ATTRS,
    )
    shape = (len(lag), grid.ny, grid.nx)
    group.create_array(
        layout.FOOT,
        shape=(0, *shape),
        chunks=(1, *shape),
        dtype="float32",
        fill_value=np.nan,
        compressors=ZstdCodec(level=3),
        chunk_key_encoding=_SEPARATOR,
        dimension_names=("simulation", "lag", *grid.dims),
        attributes=foot_attrs,
    )
    return group


def to_chunk(
    foot: xr.DataArray, config: FootprintConfig, hysplit: HysplitConfig, receptor_time
) -> np.ndarray:
    """Place a ``calc_footprint`` result on the store's ``(lag, y, x)`` chunk.

    An empty footprint (no ``time`` layers) becomes all zeros.

    Raises
    ------
    StoreError
        When the footprint's grid or layer times do not fit the configured grid.
    """
    grid = Grid.from_config(config)
    lag = lags(config, hysplit)
    if foot.sizes.get("time", 0) == 0:
        return np.zeros((len(lag), grid.ny, grid.nx), dtype="float32")
    if set(foot.dims) != {"time", *grid.dims}:
        raise StoreError(f"footprint dims {foot.dims} do not match the grid dims {grid.dims}")
    foot = foot.transpose("time", *grid.dims)
    for dim, values, res in zip(
        grid.dims, (grid.y_centres, grid.x_centres), (grid.yres, grid.xres), strict=True
    ):
        got = foot[dim].values
        if got.shape != values.shape or not np.allclose(got, values, rtol=0, atol=1e-6 * res):
            raise StoreError(f"footprint {dim} coordinates do not match the configured grid")
    offsets = (pd.DatetimeIndex(foot["time"].values) - pd.Timestamp(receptor_time)) / pd.Timedelta(
        "1h"
    )
    index = np.asarray(offsets, dtype="float64") - lag[0]
    if not np.array_equal(index, np.round(index)) or index.min() < 0 or index.max() >= len(lag):
        raise StoreError(f"footprint layers at {list(offsets)} h are outside lags {list(lag)}")
    values = np.asarray(foot.values, dtype="float32")
    if np.array_equal(index, np.arange(len(lag))):
        return values  # every layer present, in order: no copy of a grid-sized array
    chunk = np.zeros((len(lag), grid.ny, grid.nx), dtype="float32")
    chunk[index.astype(int)] = values
    return chunk


def write_chunk(location: Location, name: str, row: int, chunk: np.ndarray) -> None:
    """Write one simulation's chunk; this publishes the footprint's completion key."""
    array = zarr.open_array(location.zarr_store(layout.foot_array(name)), mode="r+")
    if row >= array.shape[0]:
        raise StoreError(
            f"footprint {name!r} has {array.shape[0]} rows, not {row + 1}; run `stilt-dask rebuild`"
        )
    # A selection with the chunk's own shape is a whole-chunk write: zarr then
    # encodes `chunk` as is, instead of first filling a chunk-sized buffer.
    array.with_config({"write_empty_chunks": True})[row : row + 1] = chunk[np.newaxis]


def n_rows(location: Location, name: str) -> int:
    """How many simulation rows footprint ``name`` holds (0 before it exists)."""
    try:
        return zarr.open_array(location.zarr_store(layout.foot_array(name)), mode="r").shape[0]
    except FileNotFoundError:
        return 0


def delete_chunk(location: Location, name: str, row: int) -> None:
    """Delete one simulation's chunk (its footprint is then pending again)."""
    location.delete(layout.chunk_key(name, row))


def open_footprint(location: Location, name: str) -> xr.DataArray:
    """Open footprint ``name`` lazily: dask-backed, one chunk per simulation."""
    try:
        store = location.zarr_store(layout.footprint_group(name), read_only=True)
        ds = xr.open_zarr(store, consolidated=False, chunks={})
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        raise StoreError(f"footprint {name!r} has no store in {location.root}") from None
    return ds[layout.FOOT]
