"""Numba kernels of the analysis: one block of simulations at a time.

Each kernel loops over a ``(simulation, lag, y, x)`` block of footprints and
writes into an output array its caller allocates, accumulating in float64.
``bins[s, l]`` is the flux step (or time bin) layer ``l`` of simulation ``s``
falls in, ``-1`` for a layer to leave out. A footprint that was never computed
(NaN) gives NaN, never a silent zero.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def convolve_block(foot, bins, flux, out):
    """``out[s] = Σ_l Σ_yx foot[s, l] · flux[bins[s, l]]``: footprints times a flux."""
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
def aggregate_block(foot, bins, y_src, y_dst, y_w, x_src, x_dst, x_w, out):
    """Sum footprints onto target cells and time bins: ``out[s, bin, iy, ix]``.

    The overlap of source cell ``(y_src[k], x_src[m])`` with target cell
    ``(y_dst[k], x_dst[m])`` is the fraction ``y_w[k] · x_w[m]`` of the source
    cell (grids are rectilinear, so overlaps factor by axis). ``out`` must be
    zeroed; a simulation with any NaN value gets NaN everywhere.
    """
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
def aggregate_targets_block(foot, bins, indptr, target, weight, out):
    """Sum footprints onto targets and time bins: ``out[s, bin, target]``.

    Footprint cell ``c = y * nx + x`` has the fraction ``weight[k]`` of itself in
    target ``target[k]`` for ``k`` in ``indptr[c]:indptr[c + 1]`` (the CSR
    weights of :mod:`.weights`). ``out`` must be zeroed; a simulation with any
    NaN value gets NaN everywhere.
    """
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
