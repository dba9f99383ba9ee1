"""Numba kernels of the analysis: one block of simulations at a time.

Each kernel loops over a ``(simulation, lag, y, x)`` block of footprints and
writes into an output array its caller allocates, accumulating in float64.
``bins[s, l]`` is the flux step (or time bin) layer ``l`` of simulation ``s``
falls in, ``-1`` for a layer to leave out. A footprint that was never computed
(NaN) gives NaN, never a silent zero.

A block that is one stored chunk read as its non-zero cells
(:class:`~pystilt_dask.store.chunks.Cells`, or a
:class:`~pystilt_dask.store.chunks.Chunk` that holds them) is reduced from
those cells alone: the public functions here choose, and give the same sums
either way.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..store.chunks import nonzero_cells


def convolve_block(foot, bins, flux, out):
    """``out[s] = Σ_l Σ_yx foot[s, l] · flux[bins[s, l]]``: footprints times a flux."""
    cells = nonzero_cells(foot)
    if cells is None:
        _convolve_dense(foot, bins, flux, out)
    else:
        n_grid = foot.shape[2] * foot.shape[3]
        out[0] = _convolve_cells(*cells, n_grid, bins[0], flux.reshape(flux.shape[0], n_grid))


def aggregate_block(foot, bins, y_src, y_dst, y_w, x_src, x_dst, x_w, out):
    """Sum footprints onto target cells and time bins: ``out[s, bin, iy, ix]``.

    The overlap of source cell ``(y_src[k], x_src[m])`` with target cell
    ``(y_dst[k], x_dst[m])`` is the fraction ``y_w[k] · x_w[m]`` of the source
    cell (grids are rectilinear, so overlaps factor by axis). ``out`` must be
    zeroed; a simulation with any NaN value gets NaN everywhere.
    """
    cells = nonzero_cells(foot)
    if cells is None:
        _aggregate_dense(foot, bins, y_src, y_dst, y_w, x_src, x_dst, x_w, out)
        return
    _, _, ny, nx = foot.shape
    y_order, y_ptr = _by_source(y_src, ny)
    x_order, x_ptr = _by_source(x_src, nx)
    _aggregate_cells(
        *cells, ny, nx, bins[0], y_dst[y_order], y_w[y_order], y_ptr,
        x_dst[x_order], x_w[x_order], x_ptr, out[0],
    )  # fmt: skip


def aggregate_targets_block(foot, bins, indptr, target, weight, out):
    """Sum footprints onto targets and time bins: ``out[s, bin, target]``.

    Footprint cell ``c = y * nx + x`` has the fraction ``weight[k]`` of itself in
    target ``target[k]`` for ``k`` in ``indptr[c]:indptr[c + 1]`` (the CSR
    weights of :mod:`.weights`). ``out`` must be zeroed; a simulation with any
    NaN value gets NaN everywhere.
    """
    cells = nonzero_cells(foot)
    if cells is None:
        _aggregate_targets_dense(foot, bins, indptr, target, weight, out)
    else:
        n_grid = foot.shape[2] * foot.shape[3]
        _aggregate_targets_cells(*cells, n_grid, bins[0], indptr, target, weight, out[0])


def _by_source(src: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The overlaps ordered by source cell, and where each source cell's begin (CSR)."""
    order = np.argsort(src, kind="stable")
    return order, np.searchsorted(src[order], np.arange(n + 1)).astype(np.int64)


@njit(nogil=True, cache=True)
def _convolve_cells(gaps, values, n_grid, bins, flux):
    total = 0.0
    lag, c = 0, 0  # the cell's layer, and its index within the layer
    for k in range(gaps.size):
        c += gaps[k]
        while c >= n_grid:  # indices increase: step to their layer without dividing
            lag, c = lag + 1, c - n_grid
        b = bins[lag]
        if b >= 0:
            total += np.float64(values[k]) * flux[b, c]
    return total


@njit(nogil=True, cache=True)
def _aggregate_cells(gaps, values, ny, nx, bins, y_dst, y_w, y_ptr, x_dst, x_w, x_ptr, out):
    missing = False
    lag, c = 0, 0
    for k in range(gaps.size):
        c += gaps[k]
        while c >= ny * nx:
            lag, c = lag + 1, c - ny * nx
        b = bins[lag]
        if b < 0:
            continue
        j, i = divmod(c, nx)
        value = np.float64(values[k])
        for p in range(y_ptr[j], y_ptr[j + 1]):
            for q in range(x_ptr[i], x_ptr[i + 1]):
                if value != value:
                    missing = True
                else:
                    out[b, y_dst[p], x_dst[q]] += value * y_w[p] * x_w[q]
    if missing:
        out[:] = np.nan


@njit(nogil=True, cache=True)
def _aggregate_targets_cells(gaps, values, n_grid, bins, indptr, target, weight, out):
    missing = False
    lag, c = 0, 0
    for k in range(gaps.size):
        c += gaps[k]
        while c >= n_grid:
            lag, c = lag + 1, c - n_grid
        b = bins[lag]
        if b < 0:
            continue
        value = np.float64(values[k])
        if value != value:
            missing = True
        else:
            for p in range(indptr[c], indptr[c + 1]):
                out[b, target[p]] += value * weight[p]
    if missing:
        out[:] = np.nan


@njit(nogil=True, cache=True)
def _convolve_dense(foot, bins, flux, out):
    n_sim, n_lag, ny, nx = foot.shape
    for s in range(n_sim):
        total = 0.0
        for lag in range(n_lag):
            b = bins[s, lag]
            if b < 0:
                continue
            for j in range(ny):
                for i in range(nx):
                    value = foot[s, lag, j, i]
                    # Most cells of a footprint are zero: skipping them skips reading
                    # the flux there (twice as fast on realistic footprints). NaN passes.
                    if value != 0:
                        total += np.float64(value) * flux[b, j, i]
        out[s] = total


@njit(nogil=True, cache=True)
def _aggregate_dense(foot, bins, y_src, y_dst, y_w, x_src, x_dst, x_w, out):
    n_sim, n_lag = bins.shape
    for s in range(n_sim):
        missing = False
        for lag in range(n_lag):
            b = bins[s, lag]
            if b < 0:
                continue
            for k in range(y_src.size):
                jy, iy, wy = y_src[k], y_dst[k], y_w[k]
                for m in range(x_src.size):
                    value = np.float64(foot[s, lag, jy, x_src[m]])
                    if value != value:
                        missing = True
                    elif value != 0.0:
                        out[s, b, iy, x_dst[m]] += value * wy * x_w[m]
        if missing:
            out[s] = np.nan


@njit(nogil=True, cache=True)
def _aggregate_targets_dense(foot, bins, indptr, target, weight, out):
    n_sim, n_lag, ny, nx = foot.shape
    for s in range(n_sim):
        missing = False
        for lag in range(n_lag):
            b = bins[s, lag]
            if b < 0:
                continue
            for j in range(ny):
                for i in range(nx):
                    value = np.float64(foot[s, lag, j, i])
                    if value != value:
                        missing = True
                    elif value != 0.0:
                        c = j * nx + i
                        for k in range(indptr[c], indptr[c + 1]):
                            out[s, b, target[k]] += value * weight[k]
        if missing:
            out[s] = np.nan
