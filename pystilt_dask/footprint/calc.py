"""``calc_footprint``: R-STILT's footprint from a particle table, as an xarray.DataArray."""

from __future__ import annotations

import json
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from ..receptors import ColumnReceptor, MultiPointReceptor, PointReceptor
from . import kernels
from .bandwidth import bandwidths, kernel_shape, nearest
from .grid import Grid
from .interpolate import interpolate_early, needs_interpolation
from .transforms import apply_transforms

if TYPE_CHECKING:  # config imports this package
    from ..config import FootprintConfig

PARTICLE_COLUMNS = ("time", "indx", "long", "lati", "foot")
UNITS = "ppm m2 s umol-1"

_PROJECTED_BANDWIDTH = (
    "Footprint smoothing is effectively off on projected grids: R-STILT's kernel "
    "bandwidth takes the fourth root of the particle variance in m², so it comes out "
    "in √m (a 10 km spread gives ~7 m after a day). pystilt_dask keeps R-STILT's "
    "formula for parity."
)


def calc_footprint(
    particles: pd.DataFrame,
    receptor: PointReceptor | ColumnReceptor | MultiPointReceptor,
    config: FootprintConfig,
    *,
    _interpolate: bool = True,
) -> xr.DataArray:
    """Grid particles into an R-STILT footprint, hourly or time-integrated.

    Each particle step adds its ``foot`` to the cell it is in, smoothed by a
    Gaussian kernel whose width grows with the ensemble's spread and with time
    since release; the sum is divided by the number of particles. This is
    R-STILT's ``calc_footprint`` step for step (``docs/footprint.md``), including
    the sub-minute interpolation of the first 100 minutes when particles cross
    more than a cell per step, with two deliberate choices on R-STILT defects:

    * Non-square stencils (``xres != yres``, or kernels whose x and y widths
      differ) are oriented correctly, x along longitude. R-STILT's Fortran
      transposes them and reads past the kernel (uataq/stilt#116), so results
      differ from R only where R is wrong.
    * On projected grids the bandwidth keeps R-STILT's formula, whose fourth
      root of a variance in m² leaves it in √m: smoothing is effectively off.
      A ``UserWarning`` says so.

    Parameters
    ----------
    particles : pandas.DataFrame
        Particle table with R-STILT's column names: ``time`` (minutes since
        release, negative backward), ``indx`` (particle number), ``long``,
        ``lati`` (degrees) and ``foot`` (ppm per µmol m⁻² s⁻¹). Other columns
        are ignored: only these five are read, as R-STILT's pipeline cuts the
        table to them before its ``calc_footprint``.
    receptor : PointReceptor or ColumnReceptor or MultiPointReceptor
        The receptor the particles were released from; its time stamps the
        layers and its attributes are copied to the result.
    config : FootprintConfig
        Grid, projection, transforms (applied to ``foot`` first), smoothing factor
        and time integration.

    Returns
    -------
    xarray.DataArray
        Named ``foot``, float32 (computed in float64), dims ``(time, lat, lon)``
        or ``(time, y, x)`` on projected grids, at cell centres. Layer ``k``
        sums the steps with ``floor(time / 60) == k`` and is stamped at the
        receptor time plus ``k`` hours (the start of that hour for backward
        runs); layers without particles near the grid are omitted and time is
        ascending. With ``time_integrate`` there is one layer at the receptor
        time. An empty footprint (no ``foot > 0`` near the grid) has a ``time``
        dimension of length 0; see :func:`is_empty`.

    Raises
    ------
    ValueError
        If a required column is missing or the grid holds no whole cell.

    Warns
    -----
    UserWarning
        On projected grids, that smoothing is effectively off (see above).

    Examples
    --------
    >>> config = FootprintConfig(xmin=-112.5, xmax=-111.5, ymin=40.5, ymax=41.0, xres=0.01)
    >>> foot = calc_footprint(particles, receptor, config)  # doctest: +SKIP
    >>> foot.sum("time")  # doctest: +SKIP
    """
    grid = Grid.from_config(config)
    if not grid.is_longlat:
        warnings.warn(_PROJECTED_BANDWIDTH, UserWarning, stacklevel=2)
    layers, values = footprint_layers(particles, receptor, config, _interpolate=_interpolate)
    return _as_dataarray(values, layers, receptor, config, grid)


def footprint_layers(
    particles: pd.DataFrame,
    receptor: PointReceptor | ColumnReceptor | MultiPointReceptor,
    config: FootprintConfig,
    *,
    _interpolate: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The footprint's hourly layers as arrays: what :func:`calc_footprint` wraps.

    The footprint's transforms are applied to the particles first. The store
    writes these arrays directly; the grid is :meth:`Grid.from_config` of ``config``.

    Parameters
    ----------
    particles, receptor, config :
        As for :func:`calc_footprint`.

    Returns
    -------
    layers : numpy.ndarray
        int64 hour index of each layer, ascending: layer ``k`` holds the steps with
        ``floor(time / 60) == k`` (``0`` alone when time-integrated). Layers without
        particles near the grid are left out; an empty footprint has none.
    values : numpy.ndarray
        float32 ``(layer, y, x)`` footprint, y and x ascending.

    Raises
    ------
    ValueError
        If a required column is missing, a transform cannot be applied, or the grid
        holds no whole cell.
    """
    missing = [name for name in PARTICLE_COLUMNS if name not in particles.columns]
    if missing:
        raise ValueError(f"particle table lacks column(s) {missing}; needs {PARTICLE_COLUMNS}")
    grid = Grid.from_config(config)
    particles = apply_transforms(particles, config.transforms, receptor)
    return _footprint_layers(particles, grid, config, interpolate=_interpolate)


def settings_attrs(config: FootprintConfig) -> dict[str, Any]:
    """A footprint's settings as netCDF-safe attributes, ``footprint_<field>``.

    ``time_integrate`` becomes 0/1 (netCDF has no booleans); ``transforms``, present
    only when there are some, is their JSON list.
    """
    settings = config.model_dump(mode="json", exclude={"transforms"})
    settings["time_integrate"] = int(settings["time_integrate"])
    if config.transforms:  # netCDF attributes hold no lists of mappings
        settings["transforms"] = json.dumps(
            [t.model_dump(mode="json", exclude_none=True) for t in config.transforms]
        )
    return {f"footprint_{k}": v for k, v in settings.items()}


def is_empty(foot: xr.DataArray) -> bool:
    """Whether a footprint is empty: no particle touched the surface near its grid."""
    return foot.sizes["time"] == 0


def _column(particles: pd.DataFrame, name: str) -> np.ndarray:
    return particles[name].to_numpy(dtype=np.float64, na_value=np.nan)


def _footprint_layers(
    particles: pd.DataFrame, grid: Grid, config: FootprintConfig, interpolate: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(layers, values)``: hour indices and the float32 (layer, y, x) footprint."""
    empty = (np.zeros(0, dtype=np.int64), np.zeros((0, grid.ny, grid.nx), dtype=np.float32))
    time = _column(particles, "time")
    if time.size == 0:
        return empty
    if np.isnan(time).any():
        raise ValueError("particle table has missing values in 'time'")
    # N counts every particle, also those that never reach the grid.
    pid, n_particles = _codes(particles["indx"].to_numpy())
    lon = grid.wrap_longitudes(_column(particles, "long"))
    lat, foot = _column(particles, "lati"), _column(particles, "foot")
    time_sign = _time_sign(time)

    if interpolate and needs_interpolation(pid, time, lon, lat, grid.xres, grid.yres):
        pid, time, lon, lat, foot = interpolate_early(pid, time, lon, lat, foot, time_sign)

    rtime = np.empty_like(time)
    integers, low, high = kernels.relative_time(
        pid, time, time_sign, np.full(n_particles, np.inf), rtime
    )
    del pid
    rcode, n_r = _codes(rtime, (integers, low, high))
    rtimes = np.empty(n_r)
    rtimes[rcode] = rtime  # the distinct rtimes, ascending
    del rtime

    x, y = grid.project(lon, lat)
    del lon, lat
    count = np.zeros(n_r, dtype=np.int64)
    mean_x, mean_y, var_x, var_y = (np.zeros(n_r) for _ in range(4))
    kernels.group_moments(rcode, x, y, count, mean_x, mean_y, var_x, var_y)
    table_rtime, w = bandwidths(rtimes, var_x, var_y, mean_y, config.smooth_factor, grid.is_longlat)
    # Every rtime smooths with the bandwidth of the nearest rtime that has one.
    sigma = w[nearest(rtimes, table_rtime)] if w.size else np.zeros(n_r)

    ybuf, xbuf = kernel_shape(float(w.max()) if w.size else 0.0, grid.xres, grid.yres)
    xbufh, ybufh = (xbuf - 1) // 2, (ybuf - 1) // 2
    res = (grid.xres, grid.yres)
    # Particles within half the widest kernel of the grid can smear into it.
    bounds = (
        grid.xmin - xbufh * grid.xres,
        grid.xmax + xbufh * grid.xres,
        grid.ymin - ybufh * grid.yres,
        grid.ymax + ybufh * grid.yres,
    )
    # The buffered grid extends a full kernel width beyond each side; its edges
    # are computed as R-STILT's seq() computes them, so edge cases bin alike.
    origin = (grid.xmin - xbuf * grid.xres, grid.ymin - ybuf * grid.yres)
    buf_shape = (grid.ny + 2 * ybuf, grid.nx + 2 * xbuf)
    hourly = not config.time_integrate

    # Bucket the kept rows by (layer, rtime code) with a counting sort: each
    # layer's buckets span only the rtime codes present in it.
    if hourly:
        first = int(np.floor(time.min() / 60.0))
        n_span = int(np.floor(time.max() / 60.0)) - first + 1
    else:
        first, n_span = 0, 1
    counts = np.zeros(n_span, dtype=np.int64)
    rmin = np.full(n_span, n_r, dtype=np.int64)
    rmax = np.full(n_span, -1, dtype=np.int64)
    # 32-bit indices halve the largest work arrays whenever they fit.
    cell_dtype = _index_dtype(buf_shape[0] * buf_shape[1])
    row_cell = np.empty(x.size, dtype=cell_dtype)
    n_kept = kernels.classify_rows(
        x,
        y,
        foot,
        time,
        rcode,
        bounds,
        origin,
        res,
        buf_shape,
        hourly,
        first,
        counts,
        rmin,
        rmax,
        row_cell,
    )
    if n_kept == 0:
        return empty
    base = np.zeros(n_span + 1, dtype=np.int64)
    np.cumsum(np.where(counts > 0, rmax - rmin + 1, 0), out=base[1:])
    starts = np.zeros(base[-1] + 1, dtype=np.int64)
    kernels.count_buckets(row_cell, time, rcode, hourly, first, base, rmin, starts)
    np.cumsum(starts, out=starts)
    order = np.empty(n_kept, dtype=_index_dtype(x.size))
    cell = np.empty(n_kept, dtype=cell_dtype)
    kernels.place_rows(
        row_cell, time, rcode, hourly, first, base, rmin, starts[:-1].copy(), order, cell
    )
    del rcode, row_cell
    present = np.flatnonzero(counts)
    # Zero-filled once (calloc); the kernel writes only the area each layer touched.
    values = np.zeros((present.size, grid.ny, grid.nx), dtype=np.float32)
    kernels.accumulate_layers(
        order,
        cell,
        starts,
        base,
        rmin,
        foot,
        sigma,
        res,
        buf_shape[1],
        (xbuf, ybuf),
        float(n_particles),
        np.full(buf_shape[0] * buf_shape[1], -1, dtype=np.int32),
        np.empty(xbuf * ybuf),
        np.zeros((grid.ny, grid.nx)),
        values,
    )
    return present + first, values


def _time_sign(time: np.ndarray) -> float:
    # R-STILT's sign(median(time)); the extremes settle it for one-way runs.
    if time.max() < 0:
        return -1.0
    if time.min() > 0:
        return 1.0
    return float(np.sign(np.median(time)))


def _codes(
    values: np.ndarray, value_range: tuple[bool, float, float] | None = None
) -> tuple[np.ndarray, int]:
    """Number distinct values 0.. in ascending order (int32 when they fit) and count them.

    ``value_range`` is :func:`kernels.integer_range` of ``values`` when already known.
    """
    codes = np.empty(values.size, dtype=_index_dtype(values.size))
    if values.dtype.kind in "fiu" and values.size:
        numbers = values.astype(np.float64, copy=False)
        integers, low, high = value_range or kernels.integer_range(numbers)
        # Particle numbers and whole-minute times take a dense O(n) path.
        if integers and high - low < 4 * numbers.size + 1024:
            return codes, kernels.dense_codes(numbers, low, int(high - low) + 1, codes)
    factors, uniques = pd.factorize(values, sort=True, use_na_sentinel=False)
    codes[:] = factors
    return codes, len(uniques)


def _index_dtype(n: int) -> type[np.integer]:
    return np.int32 if n < np.iinfo(np.int32).max else np.int64


def _as_dataarray(
    values: np.ndarray,
    layers: np.ndarray,
    receptor: PointReceptor | ColumnReceptor | MultiPointReceptor,
    config: FootprintConfig,
    grid: Grid,
) -> xr.DataArray:
    y_dim, x_dim = grid.dims
    times = np.datetime64(receptor.time, "ns") + layers.astype("timedelta64[h]")
    coords: dict[str, Any] = {
        "time": (
            "time",
            times,
            {"standard_name": "time", "long_name": "start of layer", "axis": "T"},
        ),
        y_dim: (y_dim, grid.y_centres, grid.coordinate_attrs[y_dim]),
        x_dim: (x_dim, grid.x_centres, grid.coordinate_attrs[x_dim]),
    }
    attrs: dict[str, Any] = {
        "units": UNITS,
        "long_name": "STILT surface influence footprint",
        "Conventions": "CF-1.8",
    }
    if not grid.is_longlat:
        coords["crs"] = ((), 0, grid.grid_mapping_attrs())
        attrs["grid_mapping"] = "crs"
    attrs.update({f"receptor_{k}": v for k, v in receptor.to_attrs().items()})
    attrs.update(settings_attrs(config))
    return xr.DataArray(
        values, dims=("time", y_dim, x_dim), coords=coords, name="foot", attrs=attrs
    )
