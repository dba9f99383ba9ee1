"""Gaussian kernel bandwidths and stencils (R-STILT ``calc_footprint`` §1.7-1.8)."""

from __future__ import annotations

import math

import numpy as np

from .kernels import fill_gauss_kernel

# Bandwidth scale of R-STILT: w = smooth_factor * 0.06 * varsum**0.25 * sqrt(days).
_BANDWIDTH_SCALE = 0.06
_MINUTES_PER_DAY = 1440.0


def kernel_shape(sigma: float, xres: float, yres: float) -> tuple[int, int]:
    """Return the stencil shape ``(ny, nx)`` of a kernel: ``1 + 2*floor(3*sigma/res)`` per axis."""
    if sigma == 0:
        return 1, 1
    return 1 + 2 * math.floor(3.0 * sigma / yres), 1 + 2 * math.floor(3.0 * sigma / xres)


def gauss_kernel(sigma: float, xres: float, yres: float) -> np.ndarray:
    """Return R-STILT's normalised Gaussian kernel, rows along y and columns along x.

    Parameters
    ----------
    sigma : float
        Bandwidth in grid units.
    xres, yres : float
        Cell size in grid units.

    Returns
    -------
    numpy.ndarray
        Shape :func:`kernel_shape`; the weights sum to one.
    """
    out = np.empty(kernel_shape(sigma, xres, yres), dtype=np.float64)
    fill_gauss_kernel(sigma, xres, yres, out)
    return out


def bandwidths(
    rtime: np.ndarray,
    var_x: np.ndarray,
    var_y: np.ndarray,
    mean_y: np.ndarray,
    smooth_factor: float,
    is_longlat: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Return R-STILT's kernel table: the rtimes with a spread, and their bandwidths.

    ``w = smooth_factor * 0.06 * (var_x + var_y)**0.25 * sqrt(|rtime| / 1440) / conv``
    with ``conv = cos(mean latitude)`` on longlat grids and 1 otherwise. Rtimes
    whose variance is undefined (one particle) are dropped, as R's ``na.omit``
    drops them.

    Parameters
    ----------
    rtime : numpy.ndarray
        Distinct times since each particle's first step (minutes), ascending.
    var_x, var_y : numpy.ndarray
        Sample variances of the particle positions at each rtime (grid units²).
    mean_y : numpy.ndarray
        Mean latitude at each rtime (used on longlat grids only).
    smooth_factor : float
        Multiplier of the bandwidth; 0 disables smoothing.
    is_longlat : bool
        Whether the grid is geographic.

    Returns
    -------
    (table_rtime, w) : tuple of numpy.ndarray
    """
    varsum = var_x + var_y
    defined = ~np.isnan(varsum)
    rtime, varsum, mean_y = rtime[defined], varsum[defined], mean_y[defined]
    conv = np.cos(mean_y * np.pi / 180) if is_longlat else 1.0
    w = smooth_factor * _BANDWIDTH_SCALE * varsum**0.25 * (np.abs(rtime) / _MINUTES_PER_DAY) ** 0.5
    return rtime, w / conv


def nearest(values: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Return, for each value, the index of the nearest entry of an ascending table.

    Ties go to the smaller entry, as in R-STILT's ``find_neighbor``.
    """
    if table.size == 1:
        return np.zeros(values.shape, dtype=np.intp)
    lower = np.clip(np.searchsorted(table, values, side="right") - 1, 0, table.size - 2)
    return lower + (2 * values > table[lower] + table[lower + 1])
