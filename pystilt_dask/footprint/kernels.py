"""Numba kernels of the footprint calculation.

Every kernel is a plain loop with explicit output arrays (allocated by the
caller, so peak memory stays visible and bounded), compiled with
``nogil=True`` so Dask's threaded workers can run footprints concurrently, and
cached on disk. None uses ``parallel=True``: footprints are parallelised one per
task, and nested thread pools would oversubscribe a worker.
"""

from __future__ import annotations

import os

from ..defaults import numba_cache_dir

# numba reads NUMBA_CACHE_DIR when it is first imported; the default (beside the
# installed package) is often read-only, so point it at the user cache first.
if "NUMBA_CACHE_DIR" not in os.environ:
    _cache = numba_cache_dir()
    _cache.mkdir(parents=True, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = str(_cache)

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402


@njit(nogil=True, cache=True)
def group_min_abs(codes, values, out):
    """Set ``out[c]`` to the smallest ``|values|`` of the rows whose code is ``c``.

    ``out`` must be filled with ``inf`` by the caller.
    """
    for i in range(codes.size):
        v = abs(values[i])
        c = codes[i]
        if v < out[c]:
            out[c] = v


@njit(nogil=True, cache=True)
def group_moments(codes, x, y, count, mean_x, mean_y, var_x, var_y):
    """Per-code count, means and sample variances (n - 1) of ``x`` and ``y``.

    Two passes (means, then squared deviations) keep the variance accurate for
    coordinates far from zero, like longitudes near -112 with a 0.01 spread.
    Codes with fewer than two rows get a NaN variance, as R's ``var`` gives NA.
    All outputs must be zero-filled by the caller.
    """
    for i in range(codes.size):
        c = codes[i]
        count[c] += 1
        mean_x[c] += x[i]
        mean_y[c] += y[i]
    for c in range(count.size):
        mean_x[c] /= count[c]
        mean_y[c] /= count[c]
    for i in range(codes.size):
        c = codes[i]
        dx = x[i] - mean_x[c]
        dy = y[i] - mean_y[c]
        var_x[c] += dx * dx
        var_y[c] += dy * dy
    for c in range(count.size):
        if count[c] < 2:
            var_x[c] = np.nan
            var_y[c] = np.nan
        else:
            var_x[c] /= count[c] - 1
            var_y[c] /= count[c] - 1


@njit(nogil=True, cache=True)
def _find_interval(v, origin, res, n):
    # Index i of the half-open bin [origin + i*res, origin + (i+1)*res) holding v,
    # with edges computed exactly as R's seq() does, so a particle sitting on an
    # edge lands where R's findInterval puts it. The division only guesses.
    i = int(np.floor((v - origin) / res))
    if i < 0:
        i = 0
    if i > n - 1:
        i = n - 1
    while i + 1 < n and origin + (i + 1) * res <= v:
        i += 1
    while i > 0 and origin + i * res > v:
        i -= 1
    return i


@njit(nogil=True, cache=True)
def classify_rows(x, y, foot, time, bounds, origin, res, shape, hourly, cell_out):
    """Keep the rows that can reach the grid and give each its buffered-grid cell.

    A row is kept when ``foot > 0`` and ``bounds[0] <= x < bounds[1]`` and
    ``bounds[2] <= y < bounds[3]`` (R-STILT's half-kernel margin). Its cell is
    ``row * shape[1] + col`` on the buffered grid whose lower-left edge is
    ``origin`` and cell size ``res`` (both ``(x, y)``); dropped rows get -1.

    Returns
    -------
    (n_kept, first_layer, last_layer)
        Layers are ``floor(time / 60)`` (0 when ``hourly`` is false).
    """
    n_kept = 0
    first = np.iinfo(np.int64).max
    last = np.iinfo(np.int64).min
    ny, nx = shape[0], shape[1]
    for i in range(x.size):
        f = foot[i]
        xi = x[i]
        yi = y[i]
        # Written so NaN positions or foot fail every test and are dropped.
        if not (
            f > 0 and xi >= bounds[0] and xi < bounds[1] and yi >= bounds[2] and yi < bounds[3]
        ):
            cell_out[i] = -1
            continue
        col = _find_interval(xi, origin[0], res[0], nx)
        row = _find_interval(yi, origin[1], res[1], ny)
        cell_out[i] = row * nx + col
        layer = int(np.floor(time[i] / 60.0)) if hourly else 0
        first = min(first, layer)
        last = max(last, layer)
        n_kept += 1
    return n_kept, first, last


@njit(nogil=True, cache=True)
def order_rows(cell, time, rcode, n_rtimes, first_layer, hourly, scratch, order, layer_counts):
    """Order kept rows by (layer, rtime code) with two stable counting sorts.

    ``order`` and ``scratch`` hold at least as many entries as kept rows;
    ``layer_counts`` (zero-filled, one per layer from ``first_layer``) receives
    the number of kept rows per layer. Rows with ``cell < 0`` are skipped.
    """
    starts = np.zeros(n_rtimes + 1, dtype=np.int64)
    for i in range(cell.size):
        if cell[i] >= 0:
            starts[rcode[i] + 1] += 1
    for c in range(n_rtimes):
        starts[c + 1] += starts[c]
    for i in range(cell.size):
        if cell[i] >= 0:
            c = rcode[i]
            scratch[starts[c]] = i
            starts[c] += 1
    n_kept = starts[n_rtimes]
    n_layers = layer_counts.size
    for j in range(n_kept):
        i = scratch[j]
        layer = int(np.floor(time[i] / 60.0)) - first_layer if hourly else 0
        layer_counts[layer] += 1
    offsets = np.zeros(n_layers, dtype=np.int64)
    for k in range(1, n_layers):
        offsets[k] = offsets[k - 1] + layer_counts[k - 1]
    for j in range(n_kept):
        i = scratch[j]
        layer = int(np.floor(time[i] / 60.0)) - first_layer if hourly else 0
        order[offsets[layer]] = i
        offsets[layer] += 1


@njit(nogil=True, cache=True)
def fill_gauss_kernel(sigma, xres, yres, out):
    """Write R-STILT's normalised Gaussian kernel for bandwidth ``sigma`` into ``out``.

    ``out`` has shape ``(1 + 2*floor(3*sigma/yres), 1 + 2*floor(3*sigma/xres))``:
    rows run along y and columns along x (the orientation R-STILT intends; its
    Fortran transposes non-square stencils, uataq/stilt#116). Weights are
    ``exp(-(dx**2 + dy**2) / (2 sigma**2))`` at cell-centre offsets, normalised
    to sum to one; a zero ``sigma`` gives the 1x1 identity, and NaN weights
    become 1 as in R.
    """
    ny, nx = out.shape
    if sigma == 0:
        out[0, 0] = 1.0
        return
    hy = (ny - 1) // 2
    hx = (nx - 1) // 2
    two_var = 2.0 * sigma * sigma
    total = 0.0
    for r in range(ny):
        dy = (r - hy) * yres
        for c in range(nx):
            dx = (c - hx) * xres
            w = np.exp(-(dx * dx + dy * dy) / two_var)
            out[r, c] = w
            total += w
    for r in range(ny):
        for c in range(nx):
            w = out[r, c] / total
            out[r, c] = 1.0 if np.isnan(w) else w


@njit(nogil=True, cache=True)
def _stamp_group(acc, cells, weights, kernel, buf_nx, buf_x, buf_y):
    # Add weights[j] * kernel centred on each buffered cell, clipped to acc.
    ny, nx = acc.shape
    ky_n, kx_n = kernel.shape
    hy = (ky_n - 1) // 2
    hx = (kx_n - 1) // 2
    for j in range(cells.size):
        f = weights[j]
        # Output-grid position of the kernel's lower-left corner.
        y0 = cells[j] // buf_nx - buf_y - hy
        x0 = cells[j] % buf_nx - buf_x - hx
        r_lo = max(0, -y0)
        r_hi = min(ky_n, ny - y0)
        c_lo = max(0, -x0)
        c_hi = min(kx_n, nx - x0)
        for r in range(r_lo, r_hi):
            row = acc[y0 + r]
            for c in range(c_lo, c_hi):
                row[x0 + c] += f * kernel[r, c]


@njit(nogil=True, cache=True)
def accumulate_layers(
    order,
    layer_counts,
    cell,
    rcode,
    foot,
    sigma,
    res,
    buf_nx,
    buf,
    n_particles,
    kernel_buf,
    acc,
    out,
):
    """Smooth and sum the ordered rows, one hourly layer at a time, into ``out``.

    Rows come in (layer, rtime code) runs from :func:`order_rows`. Within a run
    the ``foot`` of rows sharing a cell is summed first, then the run's kernel
    (bandwidth ``sigma[rtime code]``) is stamped once per occupied cell into
    ``acc`` (float64, output-sized), dropping what falls off the grid. A finished
    layer is divided by ``n_particles`` into the next float32 layer of ``out``;
    layers without rows are skipped, as R-STILT omits them. ``kernel_buf`` is
    scratch space the size of the widest kernel; ``buf`` is the buffer width
    ``(x, y)`` in cells and ``buf_nx`` the buffered grid's width.
    """
    start = 0
    k_out = 0
    for layer in range(layer_counts.size):
        stop = start + layer_counts[layer]
        if stop == start:
            continue
        run = start
        while run < stop:
            code = rcode[order[run]]
            end = run + 1
            while end < stop and rcode[order[end]] == code:
                end += 1
            rows = order[run:end]
            run_cells = cell[rows]
            by_cell = np.argsort(run_cells, kind="mergesort")
            cells = np.empty(by_cell.size, dtype=np.int64)
            weights = np.empty(by_cell.size, dtype=np.float64)
            n_cells = -1
            for j in range(by_cell.size):
                i = rows[by_cell[j]]
                if n_cells < 0 or cell[i] != cells[n_cells]:
                    n_cells += 1
                    cells[n_cells] = cell[i]
                    weights[n_cells] = 0.0
                weights[n_cells] += foot[i]
            s = sigma[code]
            ny_k = 1 + 2 * int(np.floor(3.0 * s / res[1]))
            nx_k = 1 + 2 * int(np.floor(3.0 * s / res[0]))
            kernel = kernel_buf[:ny_k, :nx_k]
            fill_gauss_kernel(s, res[0], res[1], kernel)
            n = n_cells + 1
            _stamp_group(acc, cells[:n], weights[:n], kernel, buf_nx, buf[0], buf[1])
            run = end
        for r in range(acc.shape[0]):
            for c in range(acc.shape[1]):
                out[k_out, r, c] = acc[r, c] / n_particles
                acc[r, c] = 0.0
        k_out += 1
        start = stop
