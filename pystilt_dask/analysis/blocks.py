"""The lazy footprints as the analysis sees them: grid, layer times and blocks.

Stored footprints come one simulation per dask chunk (that is how they are
written). Each analysis task reduces the chunk it reads at once, the array
itself (never a concatenated copy, which for 24-hour 300 x 300 footprints cost
more than the arithmetic); the much smaller results are then grouped, as many
simulations per block as fit in dask's ``array.chunk-size``.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from dask.utils import parse_bytes

from . import timebins

_SPATIAL = (("lat", "lon"), ("y", "x"))


def check_footprint(foot: xr.DataArray) -> tuple[str, str]:
    """The ``(y, x)`` dimension names of a stored footprint, checked.

    Raises
    ------
    ValueError
        If ``foot`` is not ``foot(simulation, lag, lat, lon)`` (or ``y, x``) with
        its ``time(simulation, lag)`` coordinate, as ``Footprint.load()`` gives.
    """
    for dims in _SPATIAL:
        if foot.dims == ("simulation", "lag", *dims) and (
            "time" in foot.coords and foot["time"].dims == ("simulation", "lag")
        ):
            return dims
    raise ValueError(
        "expected stored footprints foot(simulation, lag, lat, lon) (or y, x) with a "
        f"time(simulation, lag) coordinate, as model.footprints[name].load() gives; got {foot.dims}"
    )


def check_hourly(foot: xr.DataArray, what: str) -> None:
    """Refuse ``what`` (something that needs hourly layers) on a time-integrated footprint.

    Raises
    ------
    ValueError
        If the footprint was made with ``time_integrate``: its one layer holds
        every hour of the run, so it cannot meet time-varying fluxes or bins.
    """
    if int(foot.attrs.get("footprint_time_integrate", 0)):
        raise ValueError(
            f"this footprint is time-integrated (one layer for the whole run): {what} needs "
            "hourly layers; use a flux without a time dimension, or no time_bins"
        )


def stored(foot: xr.DataArray) -> da.Array:
    """The footprints' dask array in its stored chunks, with whole grids per chunk.

    Each task reduces the chunk it reads at once (a simulation, as the store
    keeps them), so no task copies footprints into a bigger block first; the
    results are grouped afterwards (:func:`grouped`).
    """
    data = foot.data if isinstance(foot.data, da.Array) else da.from_array(foot.data)
    return data.rechunk({1: -1, 2: -1, 3: -1})


def grouped(out: da.Array, bytes_per_sim: int) -> da.Array:
    """``out`` with as many simulations per chunk as fit in dask's ``array.chunk-size``.

    Per-simulation results are far smaller than footprints: blocks of many make
    a result that writes (``to_zarr``) and computes as a few large pieces.
    """
    limit = parse_bytes(dask.config.get("array.chunk-size"))
    return out.rechunk({0: int(max(1, limit // max(bytes_per_sim, 1)))})


def whole(block: np.ndarray | list) -> np.ndarray:
    """The one block ``blockwise(..., concatenate=False)`` passes for contracted dimensions.

    Those dimensions are single chunks here (whole grids, all layers, all flux
    steps), so each comes wrapped in one-element lists; unwrapping them, rather
    than letting dask concatenate, passes the array itself instead of a copy.
    """
    while isinstance(block, list):
        (block,) = block
    return block


def bins_like(data: da.Array, bins: np.ndarray) -> da.Array:
    """Per-(simulation, lag) bin indices chunked along ``simulation`` like ``data``."""
    return da.from_array(bins, chunks=(data.chunks[0], -1))


def simulation_coords(foot: xr.DataArray) -> dict:
    """The coordinates along ``simulation`` alone (ids, receptor fields).

    Text is variable-length (object) so results write to zarr v3 without warnings.
    """
    coords = {k: v for k, v in foot.coords.items() if v.dims == ("simulation",)}
    return {k: v.astype(object) if v.dtype.kind == "U" else v for k, v in coords.items()}


def footprint_bins(
    foot: xr.DataArray, time_bins: pd.IntervalIndex | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bin edges and the bin of every (simulation, layer); default one bin holding every layer."""
    layer_start = foot["time"].values
    if time_bins is None:
        left = np.array([layer_start.min()], dtype="datetime64[ns]")
        right = np.array([layer_start.max() + np.timedelta64(1, "h")], dtype="datetime64[ns]")
    else:
        check_hourly(foot, "time_bins")
        left, right = timebins.bin_edges(time_bins)
    return left, right, timebins.layer_bins(layer_start, left, right)
