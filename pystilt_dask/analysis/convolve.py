"""Footprints times a flux: the modelled enhancement of every simulation, lazily.

Each simulation's layers are matched to the flux's time steps through the small
``time(simulation, lag)`` coordinate (:mod:`.timebins`), so no (simulation,
absolute time, y, x) cube is ever built: a task reads a block of footprints and
reduces it against the flux steps its layers meet (:func:`.kernels.convolve_block`),
in one task (:func:`.blocks.reduced`).
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr

from . import blocks, regrid, timebins
from .kernels import convolve_block

_HOUR = np.timedelta64(1, "h")
ENHANCEMENT_ATTRS = {
    "long_name": "modelled enhancement (footprint times flux, summed over cells and layers)",
    "units": "ppm",
}


def convolve(foot: xr.DataArray, flux: xr.DataArray) -> xr.DataArray:
    """The enhancement of every simulation for ``flux``: see ``FootprintAccessor.convolve``."""
    dims = blocks.check_footprint(foot)
    flux = _check_flux(flux, dims)
    flux_axes = regrid.target_axes(flux, dims)
    flux = flux.sortby(list(dims))
    layer_start = foot["time"].values
    if "time" in flux.dims:
        blocks.check_hourly(foot, "a flux varying in time")
        left, right = timebins.flux_steps(flux["time"].values)
        bins = timebins.layer_bins(layer_start, left, right)
        _check_covered(foot, bins, layer_start, left, right)
        first, last = int(bins.min()), int(bins.max())
        flux = flux.isel(time=slice(first, last + 1))  # only the steps some layer meets
        bins -= first
        values = _as_dask(flux.transpose("time", *dims).data)
    else:
        bins = np.zeros(layer_start.shape, dtype=np.int64)
        values = _as_dask(flux.transpose(*dims).data)[np.newaxis]
    foot_axes = {d: foot[d].values for d in dims}
    if not all(regrid.same_axis(foot_axes[d], flux_axes[d]) for d in dims):
        values = _onto_footprint_grid(values, foot_axes, flux_axes)
    values = values.astype(np.float64).rechunk(-1)

    out = blocks.reduced(_convolve, blocks.stored(foot), bins, (values,), ())
    return xr.DataArray(
        blocks.grouped(out, np.dtype(np.float64).itemsize),
        dims=("simulation",),
        coords=blocks.simulation_coords(foot),
        name="enhancement",
        attrs=ENHANCEMENT_ATTRS,
    )


def _convolve(foot: np.ndarray, bins: np.ndarray, flux: np.ndarray) -> np.ndarray:
    out = np.empty(foot.shape[0], dtype=np.float64)
    convolve_block(foot, bins, np.ascontiguousarray(flux), out)
    return out


def _check_flux(flux: xr.DataArray, dims: tuple[str, str]) -> xr.DataArray:
    if not isinstance(flux, xr.DataArray):
        raise TypeError(f"flux must be an xarray.DataArray, not {type(flux).__name__}")
    if not set(dims) <= set(flux.dims) or not set(flux.dims) <= {"time", *dims}:
        raise ValueError(
            f"flux dimensions must be (time, {', '.join(dims)}) or ({', '.join(dims)}) "
            f"like the footprint's grid, not {flux.dims}"
        )
    if "time" in flux.dims and not np.issubdtype(flux["time"].dtype, np.datetime64):
        raise ValueError("the flux's time coordinate must hold datetimes (UTC)")
    return flux


def _check_covered(foot, bins, layer_start, left, right) -> None:
    uncovered = np.argwhere(bins < 0)
    if uncovered.size:
        s, lag = uncovered[0]
        raise ValueError(
            f"the flux's time steps ({left[0]} to {right[-1]}) do not cover every footprint "
            f"layer: simulation {foot['simulation'].values[s]!r} has a layer starting "
            f"{layer_start[s, lag]}; give a flux covering {layer_start.min()} to "
            f"{layer_start.max() + _HOUR}, or select the simulations it covers"
        )


def _as_dask(values) -> da.Array:
    return values if isinstance(values, da.Array) else da.from_array(np.asarray(values))


def _onto_footprint_grid(values: da.Array, foot_axes: dict, flux_axes: dict) -> da.Array:
    """The flux as area-weighted means over the footprint's cells (conservative).

    Summing footprint × this over footprint cells equals summing the footprint
    aggregated onto the flux's cells × the flux; footprint cells outside the flux
    grid meet no flux.
    """
    y_dim, x_dim = foot_axes
    overlap_y, overlap_x = regrid.weights(foot_axes, flux_axes)
    wy = _dense(overlap_y, foot_axes[y_dim].size, flux_axes[y_dim].size)
    wx = _dense(overlap_x, foot_axes[x_dim].size, flux_axes[x_dim].size)
    values = values.rechunk({1: -1, 2: -1})
    return values.map_blocks(
        _regrid_steps, wy, wx, chunks=(values.chunks[0], (wy.shape[0],), (wx.shape[0],)),
        dtype=np.float64,
    )  # fmt: skip


def _dense(overlap: regrid.Overlap, n_src: int, n_dst: int) -> np.ndarray:
    matrix = np.zeros((n_src, n_dst))
    np.add.at(matrix, (overlap.src, overlap.dst), overlap.weight)
    return matrix


def _regrid_steps(steps: np.ndarray, wy: np.ndarray, wx: np.ndarray) -> np.ndarray:
    return wy @ np.asarray(steps, dtype=np.float64) @ wx.T
