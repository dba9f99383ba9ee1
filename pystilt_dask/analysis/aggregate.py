"""Footprints on coarser cells and time bins, and the Jacobian they make.

:func:`aggregate` sums every footprint onto the cells of a target grid
(:mod:`.regrid`) and into time bins (:mod:`.timebins`), one stored chunk per
task (:func:`.kernels.aggregate_block`); :func:`jacobian` is the
same numbers as one (simulation × state element) matrix, state elements ordered
time bin first, then target cell (``y`` then ``x``).
"""

from __future__ import annotations

from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from . import blocks, regrid, timebins
from .kernels import aggregate_block

_BIN_ATTRS = {"standard_name": "time", "long_name": "start of the time bin (UTC)"}


def aggregate(
    foot: xr.DataArray,
    target_grid: xr.DataArray | xr.Dataset | None = None,
    time_bins: pd.IntervalIndex | None = None,
) -> xr.DataArray:
    """Footprints summed onto target cells and time bins: see ``FootprintAccessor.aggregate``."""
    dims = blocks.check_footprint(foot)
    foot_axes = {d: np.asarray(foot[d].values, dtype=np.float64) for d in dims}
    target = foot_axes if target_grid is None else regrid.target_axes(target_grid, dims)
    overlap_y, overlap_x = regrid.weights(foot_axes, target)
    layer_start = foot["time"].values
    if time_bins is None:  # one bin: every layer
        left = np.array([layer_start.min()], dtype="datetime64[ns]")
        right = np.array([layer_start.max() + np.timedelta64(1, "h")], dtype="datetime64[ns]")
    else:
        blocks.check_hourly(foot, "time_bins")
        left, right = timebins.bin_edges(time_bins)
    bins = timebins.layer_bins(layer_start, left, right)

    shape = (len(left), target[dims[0]].size, target[dims[1]].size)
    data = blocks.stored(foot)
    out = da.blockwise(
        _aggregate, "stuv",
        data, "slyx",
        blocks.bins_like(data, bins), "sl",
        new_axes=dict(zip("tuv", shape, strict=True)),
        concatenate=False, dtype=np.float64, meta=np.empty((0, 0, 0, 0), np.float64),
        shape=shape, overlap_y=overlap_y, overlap_x=overlap_x,
    )  # fmt: skip
    coords: dict[str, Any] = {
        **blocks.simulation_coords(foot),
        "time": ("time", left, _BIN_ATTRS),
        "time_end": ("time", right, {"long_name": "end of the time bin (UTC), excluded"}),
        **{d: (d, target[d], foot[d].attrs) for d in dims},
    }
    attrs = {**foot.attrs, "cell_methods": "time: sum area: sum"}
    return xr.DataArray(
        blocks.grouped(out, 8 * int(np.prod(shape))),
        dims=("simulation", "time", *dims),
        coords=coords,
        name="foot",
        attrs=attrs,
    )


def _aggregate(
    foot: list,
    bins: list,
    shape: tuple[int, int, int],
    overlap_y: regrid.Overlap,
    overlap_x: regrid.Overlap,
) -> np.ndarray:
    foot, bins = blocks.whole(foot), blocks.whole(bins)
    out = np.zeros((foot.shape[0], *shape), dtype=np.float64)
    aggregate_block(foot, bins, *overlap_y, *overlap_x, out)
    return out


def jacobian(
    foot: xr.DataArray,
    target_grid: xr.DataArray | xr.Dataset | None = None,
    time_bins: pd.IntervalIndex | None = None,
) -> xr.DataArray:
    """The Jacobian H (simulation × state element): see ``FootprintAccessor.jacobian``."""
    agg = aggregate(foot, target_grid, time_bins)
    _, n_time, ny, nx = agg.shape
    y_dim, x_dim = agg.dims[2:]
    data = agg.data.reshape(agg.shape[0], n_time * ny * nx)
    cells = ny * nx
    state = {
        "state_time": ("state", np.repeat(agg["time"].values, cells), _BIN_ATTRS),
        f"state_{y_dim}": ("state", np.tile(np.repeat(agg[y_dim].values, nx), n_time),
                           agg[y_dim].attrs),
        f"state_{x_dim}": ("state", np.tile(agg[x_dim].values, ny * n_time), agg[x_dim].attrs),
    }  # fmt: skip
    coords = {**blocks.simulation_coords(foot), **state}
    attrs = {**agg.attrs, "long_name": "Jacobian of the enhancement with respect to the flux"}
    return xr.DataArray(data, dims=("simulation", "state"), coords=coords, name="H", attrs=attrs)


def to_sparse(jacobian: xr.DataArray) -> Any:
    """Compute a Jacobian as a ``scipy.sparse.csr_array`` (for small cases).

    Each block of simulations is computed and made sparse on its own, so the
    dense matrix is never whole in memory. Needs ``scipy``.

    Parameters
    ----------
    jacobian : xarray.DataArray
        What :meth:`~pystilt_dask.accessor.FootprintAccessor.jacobian` returns.

    Returns
    -------
    scipy.sparse.csr_array
        Rows in ``simulation`` order, columns in ``state`` order. A simulation
        not computed yet is a row of NaN.
    """
    from scipy import sparse

    parts = [dask.delayed(sparse.csr_array)(b) for b in jacobian.data.to_delayed().ravel()]
    return sparse.vstack(dask.compute(*parts), format="csr")
