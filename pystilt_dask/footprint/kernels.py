"""Numba kernels of the footprint calculation.

Every kernel is a plain loop writing into output arrays the caller allocates
(so the large arrays are numpy's, and peak memory stays visible and bounded;
kernels allocate only small scratch), compiled with
``nogil=True`` so Dask's threaded workers can run footprints concurrently, and
cached on disk. None uses ``parallel=True``: footprints are parallelised one per
task, and nested thread pools would oversubscribe a worker.
"""

from __future__ import annotations

import numpy as np
from numba import njit, uint64


@njit(nogil=True, cache=True)
def integer_range(values):
    """Return ``(all_integers, low, high)`` of a float array (NaN is not an integer)."""
    low = np.inf
    high = -np.inf
    for v in values:
        if not (v == np.floor(v)):
            return False, low, high
        low = min(low, v)
        high = max(high, v)
    return True, low, high


@njit(nogil=True, cache=True)
def dense_codes(values, low, n_slots, out):
    """Rank integer-valued ``values`` (all in ``[low, low + n_slots)``) among their distinct values.

    ``out`` receives the ranks (0 for the smallest value); returns how many
    distinct values there are. O(n + n_slots): the factorisation of particle
    numbers and of whole-minute times.
    """
    rank = np.zeros(n_slots, dtype=np.int64)
    for i in range(values.size):
        k = int(values[i] - low)
        out[i] = k
        rank[k] = 1
    n = 0
    for k in range(n_slots):
        if rank[k]:
            rank[k] = n
            n += 1
    if n < n_slots:  # gaps between the values: renumber densely
        for i in range(values.size):
            out[i] = rank[out[i]]
    return n


@njit(nogil=True, cache=True)
def early_step_medians(codes, lon, lat, n_particles, early_minutes, time, med_x, med_y):
    """Per particle, the medians of |diff(lon)| and |diff(lat)| over its early rows.

    Early rows have ``|time| < early_minutes``; differences are between a
    particle's consecutive early rows in table order (R's ``group_by`` keeps
    that order). Particles with fewer than two early rows get NaN.
    """
    count = np.zeros(n_particles + 1, dtype=np.int64)
    for i in range(codes.size):
        if abs(time[i]) < early_minutes:
            count[codes[i] + 1] += 1
    for p in range(n_particles):
        count[p + 1] += count[p]
    cursor = count[:-1].copy()
    steps_x = np.empty(count[-1], dtype=np.float64)
    steps_y = np.empty(count[-1], dtype=np.float64)
    last = np.full(n_particles, -1, dtype=np.int64)
    for i in range(codes.size):
        if abs(time[i]) < early_minutes:
            p = codes[i]
            if last[p] >= 0:
                steps_x[cursor[p]] = abs(lon[i] - lon[last[p]])
                steps_y[cursor[p]] = abs(lat[i] - lat[last[p]])
                cursor[p] += 1
            last[p] = i
    for p in range(n_particles):
        lo, hi = count[p], cursor[p]
        if hi > lo:
            med_x[p] = np.median(steps_x[lo:hi])
            med_y[p] = np.median(steps_y[lo:hi])
        else:
            med_x[p] = np.nan
            med_y[p] = np.nan


@njit(nogil=True, cache=True)
def relative_time(codes, time, time_sign, first, out):
    """Set ``out`` to R-STILT's rtime: ``time - time_sign * min |time|`` per particle.

    ``codes`` numbers the particles; ``first`` (one per particle, filled with
    ``inf``) receives each particle's smallest ``|time|``. Returns what
    :func:`integer_range` returns for ``out``, saving a pass over it.
    """
    for i in range(codes.size):
        first[codes[i]] = min(first[codes[i]], abs(time[i]))
    integers = True
    low = np.inf
    high = -np.inf
    for i in range(codes.size):
        v = time[i] - time_sign * first[codes[i]]
        out[i] = v
        integers = integers and v == np.floor(v)
        low = min(low, v)
        high = max(high, v)
    return integers, low, high


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


@njit(nogil=True, cache=True, inline="always")
def _find_interval(v, origin, res, n):
    # Index i of the half-open bin [origin + i*res, origin + (i+1)*res) holding v,
    # with edges computed exactly as R's seq() does, so a particle sitting on an
    # edge lands where R's findInterval puts it. The division only guesses.
    i = min(max(int(np.floor((v - origin) / res)), 0), n - 1)
    while i + 1 < n and origin + (i + 1) * res <= v:
        i += 1
    while i > 0 and origin + i * res > v:
        i -= 1
    return i


@njit(nogil=True, cache=True, inline="always")
def _layer(time, hourly, first_layer):
    return int(np.floor(time / 60.0)) - first_layer if hourly else 0


@njit(nogil=True, cache=True)
def classify_rows(
    x,
    y,
    foot,
    time,
    rcode,
    bounds,
    origin,
    res,
    shape,
    hourly,
    first_layer,
    counts,
    rmin,
    rmax,
    cell,
):
    """Find each row's buffered-grid cell, and per layer its kept rows and rtime codes.

    A row is kept when ``foot > 0``, ``bounds[0] <= x < bounds[1]`` and
    ``bounds[2] <= y < bounds[3]`` (R-STILT's half-kernel margin; NaN fails).
    Its ``cell`` is ``row * shape[1] + col`` on the buffered grid with lower-left
    edge ``origin`` and cell size ``res`` (both ``(x, y)``); dropped rows get -1.
    Layers are ``floor(time / 60) - first_layer`` (0 when ``hourly`` is false);
    ``counts`` (zero-filled) receives the kept rows per layer and ``rmin`` /
    ``rmax`` (filled with a large / negative value) their rtime code range.

    Returns
    -------
    int
        The number of kept rows.
    """
    n_kept = 0
    for i in range(x.size):
        xi = x[i]
        yi = y[i]
        if not (
            foot[i] > 0
            and xi >= bounds[0]
            and xi < bounds[1]
            and yi >= bounds[2]
            and yi < bounds[3]
        ):
            cell[i] = -1
            continue
        col = _find_interval(xi, origin[0], res[0], shape[1])
        cell[i] = _find_interval(yi, origin[1], res[1], shape[0]) * shape[1] + col
        layer = _layer(time[i], hourly, first_layer)
        counts[layer] += 1
        rmin[layer] = min(rmin[layer], rcode[i])
        rmax[layer] = max(rmax[layer], rcode[i])
        n_kept += 1
    return n_kept


@njit(nogil=True, cache=True, inline="always")
def _bucket(i, time, rcode, hourly, first_layer, base, rmin):
    # Row i's bucket: buckets run layer by layer and, within a layer, by rtime code.
    layer = _layer(time[i], hourly, first_layer)
    return base[layer] + rcode[i] - rmin[layer]


@njit(nogil=True, cache=True)
def count_buckets(cell, time, rcode, hourly, first_layer, base, rmin, sizes):
    """Count kept rows per (layer, rtime code) bucket into ``sizes[bucket + 1]``.

    Bucket ``base[layer] + code - rmin[layer]`` numbers the buckets layer by
    layer and, within a layer, by rtime code.
    """
    for i in range(cell.size):
        if cell[i] >= 0:
            sizes[_bucket(i, time, rcode, hourly, first_layer, base, rmin) + 1] += 1


@njit(nogil=True, cache=True)
def place_rows(cell, time, rcode, hourly, first_layer, base, rmin, cursor, order, bucket_cell):
    """Put each kept row's index and cell at its bucket's next slot (a counting sort).

    ``cursor[bucket]`` starts at the bucket's first slot (see
    :func:`count_buckets`); rows keep their table order within a bucket.
    """
    for i in range(cell.size):
        if cell[i] >= 0:
            bucket = _bucket(i, time, rcode, hourly, first_layer, base, rmin)
            slot = cursor[bucket]
            cursor[bucket] = slot + 1
            order[slot] = i
            bucket_cell[slot] = cell[i]


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
    # The weights are symmetric in both axes (a negated offset squares to the
    # same double), so one quadrant of exponentials fills the stencil.
    for r in range(hy + 1):
        dy = (r - hy) * yres
        for c in range(hx + 1):
            dx = (c - hx) * xres
            w = np.exp(-(dx * dx + dy * dy) / two_var)
            out[r, c] = w
            out[r, nx - 1 - c] = w
            out[ny - 1 - r, c] = w
            out[ny - 1 - r, nx - 1 - c] = w
    total = 0.0
    for r in range(ny):
        for c in range(nx):
            total += out[r, c]
    for r in range(ny):
        for c in range(nx):
            w = out[r, c] / total
            out[r, c] = 1.0 if np.isnan(w) else w


@njit(nogil=True, cache=True)
def _stamp_group(acc, cells, weights, kernel, buf_nx, buf_x, buf_y):
    # Add weights[j] * kernel centred on each buffered cell, clipped to acc.
    ny, nx = acc.shape
    flat = acc.ravel()
    flat_kernel = kernel.ravel()
    ky_n, kx_n = kernel.shape
    hy = (ky_n - 1) // 2
    hx = (kx_n - 1) // 2
    for j in range(cells.size):
        f = weights[j]
        # Output-grid position of the kernel's lower-left corner.
        y0 = cells[j] // buf_nx - buf_y - hy
        x0 = cells[j] % buf_nx - buf_x - hx
        c_lo = uint64(max(0, -x0))
        c_hi = uint64(min(kx_n, nx - x0))
        for r in range(max(0, -y0), min(ky_n, ny - y0)):
            # Unsigned indices spare numba's negative-index wraparound, so LLVM
            # vectorises the row; each cell still gets one product added in the
            # same order, so results are bit-identical to the scalar loop.
            a = uint64((y0 + r) * nx + x0)
            k = uint64(r * kx_n)
            for c in range(c_lo, c_hi):
                flat[a + c] += f * flat_kernel[k + c]


@njit(nogil=True, cache=True)
def accumulate_layers(
    order,
    cell,
    starts,
    base,
    rmin,
    foot,
    sigma,
    res,
    buf_nx,
    buf,
    n_particles,
    slots,
    kernel_buf,
    acc,
    out,
):
    """Smooth and sum the bucketed rows, one hourly layer at a time, into ``out``.

    Bucket ``b`` of layer ``l`` (slots ``starts[b]:starts[b + 1]`` of ``order``
    and ``cell``, see :func:`place_rows`) holds the rows of rtime code
    ``rmin[l] + b - base[l]``. Within a bucket the ``foot`` of rows sharing a
    cell is summed first (in table order), then the bucket's kernel (bandwidth
    ``sigma[code]``) is stamped once per occupied cell into ``acc`` (float64,
    output-sized, zero-filled), dropping what falls off the grid. A finished
    layer is divided by ``n_particles`` into the next float32 layer of ``out``
    (zero-filled); layers without rows are skipped, as R-STILT omits them.

    ``slots`` (one per buffered cell, filled with -1 and left so) maps a cell to
    its entry while a bucket is summed. ``kernel_buf`` is flat scratch space for
    the widest kernel; ``buf`` is the buffer width ``(x, y)`` in cells and
    ``buf_nx`` the buffered grid's width.
    """
    largest = 0
    for b in range(starts.size - 1):
        largest = max(largest, starts[b + 1] - starts[b])
    cells = np.empty(largest, dtype=np.int64)
    weights = np.empty(largest, dtype=np.float64)
    ny, nx = acc.shape
    k_out = 0
    for layer in range(base.size - 1):
        if starts[base[layer + 1]] == starts[base[layer]]:
            continue
        # Bounding box of what this layer touched, so flushing costs its area.
        top, bottom, left, right = ny, 0, nx, 0
        for b in range(base[layer], base[layer + 1]):
            n = 0
            for k in range(starts[b], starts[b + 1]):
                c = cell[k]
                slot = slots[c]
                if slot < 0:
                    slots[c] = n
                    cells[n] = c
                    weights[n] = foot[order[k]]
                    n += 1
                else:
                    weights[slot] += foot[order[k]]
            if n == 0:
                continue
            s = sigma[rmin[layer] + b - base[layer]]
            ny_k = 1 + 2 * int(np.floor(3.0 * s / res[1]))
            nx_k = 1 + 2 * int(np.floor(3.0 * s / res[0]))
            kernel = kernel_buf[: ny_k * nx_k].reshape((ny_k, nx_k))
            fill_gauss_kernel(s, res[0], res[1], kernel)
            _stamp_group(acc, cells[:n], weights[:n], kernel, buf_nx, buf[0], buf[1])
            for j in range(n):
                slots[cells[j]] = -1
                row = cells[j] // buf_nx - buf[1]
                col = cells[j] % buf_nx - buf[0]
                top = min(top, row - (ny_k - 1) // 2)
                bottom = max(bottom, row + (ny_k - 1) // 2 + 1)
                left = min(left, col - (nx_k - 1) // 2)
                right = max(right, col + (nx_k - 1) // 2 + 1)
        for r in range(max(top, 0), min(bottom, ny)):
            for c in range(max(left, 0), min(right, nx)):
                out[k_out, r, c] = acc[r, c] / n_particles
                acc[r, c] = 0.0
        k_out += 1
