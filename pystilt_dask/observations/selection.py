"""Which soundings to run: overpasses, and a dense-near-the-site, sparse-elsewhere choice."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike


def group_by_overpass(
    times: ArrayLike | pd.Series, *, max_gap: str | pd.Timedelta = "30min"
) -> pd.Series:
    """Label each sounding time with its overpass (X-STILT's grouping).

    Soundings of one pass are seconds apart and passes hours apart: in time
    order, a new overpass starts after a gap longer than ``max_gap``.

    Parameters
    ----------
    times : array-like or pandas.Series
        Sounding times.
    max_gap : str or pandas.Timedelta, default "30min"
        The longest gap within one overpass.

    Returns
    -------
    pandas.Series
        The first time of each sounding's overpass as ``YYYYMMDDHHMM`` text, on
        the index of ``times`` (0, 1, ... for an array).
    """
    index = times.index if isinstance(times, pd.Series) else pd.RangeIndex(len(times))
    stamps = pd.to_datetime(pd.Series(np.asarray(times), index=index))
    ordered = stamps.sort_values(kind="stable")
    starts = ordered.diff() > pd.Timedelta(max_gap)
    first = ordered.groupby(starts.cumsum()).transform("min")
    return first.dt.strftime("%Y%m%d%H%M").astype(object).reindex(index)


def select_observations_spatial(
    longitudes: ArrayLike,
    latitudes: ArrayLike,
    *,
    site_longitude: float,
    site_latitude: float,
    near_field_dlon: float,
    near_field_dlat: float,
    near_field_cols: int,
    near_field_rows: int,
    background_cols: int,
    background_rows: int,
    domain_lon_range: tuple[float, float],
    domain_lat_range: tuple[float, float],
) -> np.ndarray:
    """Soundings nearest a dense grid around a site and a sparse grid over the domain.

    X-STILT's ``sel.obs4recpv2``: each grid point keeps the sounding nearest
    it on the ground (a degree of longitude shrunk by the cosine of latitude),
    so footprints are dense where the site's signal is and sparse where the
    background is. A grid of one point along an axis lies at its middle.

    Parameters
    ----------
    longitudes, latitudes : array-like
        Sounding positions, degrees.
    site_longitude, site_latitude : float
        Centre of the dense grid, degrees.
    near_field_dlon, near_field_dlat : float
        Half-width and half-height of the dense grid, degrees.
    near_field_cols, near_field_rows : int
        Dense grid points across and up.
    background_cols, background_rows : int
        Sparse grid points across and up.
    domain_lon_range, domain_lat_range : tuple of float
        ``(min, max)`` of the sparse grid, degrees.

    Returns
    -------
    numpy.ndarray
        Row positions of the chosen soundings, each once, by latitude
        (``df.iloc[selected]``).
    """
    lon = np.asarray(longitudes, dtype=np.float64)
    lat = np.asarray(latitudes, dtype=np.float64)
    dense = _grid(
        (site_longitude - near_field_dlon, site_longitude + near_field_dlon),
        (site_latitude - near_field_dlat, site_latitude + near_field_dlat),
        near_field_cols,
        near_field_rows,
    )
    sparse = _grid(domain_lon_range, domain_lat_range, background_cols, background_rows)
    points = np.concatenate([dense, sparse])
    # east-west degrees shrink with latitude: compare distances on the ground
    squeeze = np.cos(np.radians(points[:, 1:]))
    distance = np.hypot((lon[None, :] - points[:, :1]) * squeeze, lat[None, :] - points[:, 1:])
    chosen = np.unique(np.argmin(distance, axis=1))
    return chosen[np.argsort(lat[chosen], kind="stable")]


def _grid(lon_range: tuple[float, float], lat_range: tuple[float, float], cols: int, rows: int):
    x, y = _spaced(lon_range, cols), _spaced(lat_range, rows)
    gx, gy = np.meshgrid(x, y)
    return np.column_stack([gx.ravel(), gy.ravel()])


def _spaced(bounds: tuple[float, float], count: int) -> np.ndarray:
    """``count`` points from one end to the other; a single point in the middle."""
    if count == 1:
        return np.array([(bounds[0] + bounds[1]) / 2.0])
    return np.linspace(bounds[0], bounds[1], count)
