"""Footprints on coarser cells, polygons or zones and time bins, and the Jacobian they make.

:func:`aggregate` sums every footprint onto the cells of a target grid
(:mod:`.regrid`) or onto polygons and zones (:mod:`.targets`), and into time
bins (:mod:`.timebins`), one stored chunk per task (:mod:`.kernels`);
:func:`jacobian` is the same numbers as one (simulation × state element)
matrix, state elements ordered time bin first, then target (cell ``y`` then
``x`` on a grid), dense in blocks of simulations or sparse (:mod:`.sparse`).
"""

from __future__ import annotations

import functools
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from . import blocks, regrid, targets
from .kernels import aggregate_block, aggregate_targets_block

_BIN_ATTRS = {"standard_name": "time", "long_name": "start of the time bin (UTC)"}
_END_ATTRS = {"long_name": "end of the time bin (UTC), excluded"}


def aggregate(
    foot: xr.DataArray,
    target: Any = None,
    time_bins: pd.IntervalIndex | None = None,
) -> xr.DataArray:
    """Footprints summed onto targets and time bins: see ``FootprintAccessor.aggregate``."""
    dims = blocks.check_footprint(foot)
    left, right, bins = blocks.footprint_bins(foot, time_bins)
    if targets.is_target(target):
        return _onto_targets(foot, targets.resolve(foot, dims, target), left, right, bins)
    foot_axes = {d: np.asarray(foot[d].values, dtype=np.float64) for d in dims}
    grid = foot_axes if target is None else regrid.target_axes(target, dims)
    overlap_y, overlap_x = regrid.weights(foot_axes, grid)
    shape = (len(left), grid[dims[0]].size, grid[dims[1]].size)
    out = _reduced(foot, bins, aggregate_block, shape, (*overlap_y, *overlap_x))
    coords = {
        "time": ("time", left, _BIN_ATTRS),
        "time_end": ("time", right, _END_ATTRS),
        **{d: (d, grid[d], foot[d].attrs) for d in dims},
    }
    return _labelled(foot, out, ("time", *dims), coords)


def _onto_targets(
    foot: xr.DataArray, target: targets.Target, left: np.ndarray, right: np.ndarray, bins
) -> xr.DataArray:
    """``foot(simulation, time_bin, <target>)``: footprints summed onto polygons or zones."""
    if target.dim in foot.coords or target.dim in ("time_bin", "time_bin_end"):
        raise ValueError(
            f"the targets' index is named {target.dim!r}, a name the footprint already "
            "uses; rename the index (e.g. gdf.rename_axis('region'))"
        )
    w = target.weights
    weights = (w.indptr.astype(np.int64), w.indices.astype(np.int64), w.data)
    out = _reduced(foot, bins, aggregate_targets_block, (len(left), len(target.ids)), weights)
    coords = {
        "time_bin": ("time_bin", left, _BIN_ATTRS),
        "time_bin_end": ("time_bin", right, _END_ATTRS),
        target.dim: (target.dim, _labels(target.ids)),
    }
    return _labelled(foot, out, ("time_bin", target.dim), coords)


def _reduced(
    foot: xr.DataArray, bins: np.ndarray, kernel: Any, shape: tuple[int, ...], args: tuple
) -> da.Array:
    """``(simulation, *shape)``: ``kernel(foot, bins, *args, out)`` on each stored chunk.

    ``args`` (weights, up to megabytes for many polygons) are arrays every task
    takes, sent once to each worker rather than inside every task.
    """
    shared = tuple(da.from_array(np.asarray(a), chunks=-1) for a in args)
    func = functools.partial(_reduce_chunk, kernel, shape)
    return blocks.reduced(func, blocks.stored(foot), bins, shared, shape)


def _reduce_chunk(kernel: Any, shape: tuple, foot: Any, bins: np.ndarray, *args) -> np.ndarray:
    out = np.zeros((foot.shape[0], *shape), dtype=np.float64)
    kernel(foot, bins, *args, out)
    return out


def _labelled(foot: xr.DataArray, out: da.Array, dims: tuple, coords: dict) -> xr.DataArray:
    """``out`` as ``foot(simulation, *dims)`` with the simulations' coordinates."""
    bytes_per_sim = 8 * int(np.prod(out.shape[1:]))
    return xr.DataArray(
        blocks.grouped(out, bytes_per_sim),
        dims=("simulation", *dims),
        coords={**blocks.simulation_coords(foot), **coords},
        name="foot",
        attrs={**foot.attrs, "cell_methods": "time: sum area: sum"},
    )


def _labels(ids: pd.Index) -> np.ndarray:
    # Text as objects, so that results write to zarr v3 as variable-length strings.
    values = ids.to_numpy()
    return values.astype(object) if values.dtype.kind == "U" else values


def jacobian(
    foot: xr.DataArray,
    target: Any = None,
    time_bins: pd.IntervalIndex | None = None,
    sparse: bool = False,
) -> Any:
    """The Jacobian H (simulation × state element): see ``FootprintAccessor.jacobian``."""
    if sparse:
        from .sparse import sparse_jacobian

        return sparse_jacobian(foot, target, time_bins)
    agg = aggregate(foot, target, time_bins)
    time_dim, *space = agg.dims[1:]
    n_time = agg.sizes[time_dim]
    cells = int(np.prod([agg.sizes[d] for d in space]))
    data = agg.data.reshape(agg.shape[0], n_time * cells)
    # State elements: time bin first, then the target cells (y, then x on a grid).
    labels = np.meshgrid(*(agg[d].values for d in space), indexing="ij")
    state = {
        "state_time": ("state", np.repeat(agg[time_dim].values, cells), _BIN_ATTRS),
        **{f"state_{d}": ("state", np.tile(v.ravel(), n_time), agg[d].attrs)
           for d, v in zip(space, labels, strict=True)},
    }  # fmt: skip
    coords = {**blocks.simulation_coords(foot), **state}
    attrs = {**agg.attrs, "long_name": "Jacobian of the enhancement with respect to the flux"}
    return xr.DataArray(data, dims=("simulation", "state"), coords=coords, name="H", attrs=attrs)
