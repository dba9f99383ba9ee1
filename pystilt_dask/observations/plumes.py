"""Plume outlines from forward-run particles, and backgrounds beside them (X-STILT "M3")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr
from numpy.typing import ArrayLike

Side = Literal["north", "south", "east", "west"]
SIDES: tuple[Side, ...] = ("north", "south", "east", "west")


@dataclass(frozen=True)
class Plume:
    """A plume outline (:func:`plume_polygon`).

    Attributes
    ----------
    polygon : shapely.Polygon
        The outline, longitude and latitude.
    density : xarray.DataArray
        Kernel density of the particle positions on ``lat`` and ``lon``, its
        maximum 1.
    threshold : float
        The density the outline follows.
    """

    polygon: Any
    density: xr.DataArray
    threshold: float


@dataclass(frozen=True)
class PlumeBackground:
    """A background from the soundings beside a plume (:func:`plume_background`).

    Attributes
    ----------
    value : float
        Median of the soundings in ``used``.
    uncertainty : float
        Their standard deviation and RMS retrieval uncertainty in quadrature
        (an unknown part, one sounding or no uncertainties, counts 0).
    n : int
        Number of soundings in ``used``.
    in_plume : numpy.ndarray
        True for each sounding inside the plume.
    used : numpy.ndarray
        True for each sounding the background came from.
    sides : pandas.DataFrame
        One row per side (north, south, east, west): ``n``, ``mean``,
        ``median``, ``std``, ``retrieval_std``, ``uncertainty``.
    """

    value: float
    uncertainty: float
    n: int
    in_plume: np.ndarray
    used: np.ndarray
    sides: pd.DataFrame


def kernel_density(
    longitudes: ArrayLike,
    latitudes: ArrayLike,
    *,
    bandwidth: tuple[float, float] = (0.1, 0.15),
    n: int = 100,
) -> xr.DataArray:
    """Gaussian kernel density of points on an ``n`` x ``n`` grid, its maximum 1.

    As R's ``MASS::kde2d``: the kernel's standard deviation is a quarter of
    ``bandwidth`` on each axis; the grid spans the points and one bandwidth
    more on each side. Non-finite positions are dropped.
    """
    x = np.asarray(longitudes, dtype=np.float64).ravel()
    y = np.asarray(latitudes, dtype=np.float64).ravel()
    finite = np.isfinite(x) & np.isfinite(y)
    x, y = x[finite], y[finite]
    if x.size == 0:
        raise ValueError("kernel_density needs at least one finite position")
    hx, hy = bandwidth
    gx = np.linspace(x.min() - hx, x.max() + hx, n)
    gy = np.linspace(y.min() - hy, y.max() + hy, n)
    sx, sy = hx / 4.0, hy / 4.0
    kx = np.exp(-0.5 * ((gx[:, None] - x[None, :]) / sx) ** 2)
    ky = np.exp(-0.5 * ((gy[:, None] - y[None, :]) / sy) ** 2)
    density = ky @ kx.T  # (lat, lon)
    peak = density.max()
    density = density / peak if peak > 0 else density
    return xr.DataArray(density, coords={"lat": gy, "lon": gx}, dims=("lat", "lon"))


def density_polygon(density: xr.DataArray, threshold: float) -> Any:
    """The largest connected region where ``density >= threshold``, along cell edges."""
    import shapely
    from scipy import ndimage

    mask = np.asarray(density.transpose("lat", "lon").values) >= threshold
    labels, count = ndimage.label(mask)
    if count == 0:
        raise ValueError(f"no density reaches the threshold {threshold}")
    sizes = np.bincount(labels.ravel())[1:]
    rows, cols = np.nonzero(labels == 1 + int(np.argmax(sizes)))
    lon, lat = density["lon"].values, density["lat"].values
    dx = (lon[-1] - lon[0]) / (lon.size - 1) if lon.size > 1 else 1.0
    dy = (lat[-1] - lat[0]) / (lat.size - 1) if lat.size > 1 else 1.0
    cells = shapely.box(
        lon[cols] - dx / 2, lat[rows] - dy / 2, lon[cols] + dx / 2, lat[rows] + dy / 2
    )
    return shapely.union_all(cells)


def plume_polygon(
    longitudes: ArrayLike,
    latitudes: ArrayLike,
    *,
    threshold: float = 0.1,
    bandwidth: tuple[float, float] = (0.1, 0.15),
    n: int = 100,
) -> Plume:
    """The plume outline from forward-run particle positions at overpass time.

    The plume is the largest connected region where the positions' kernel
    density (:func:`kernel_density`) reaches ``threshold`` times its maximum.
    The defaults are X-STILT's (``td = 0.1``, ``h = c(0.1, 0.15)``, ``n = 100``).

    Parameters
    ----------
    longitudes, latitudes : array-like
        Every particle position in the overpass window, all forward runs of the
        overpass pooled, degrees.
    threshold : float, default 0.1
        Fraction of the maximum density the outline follows.
    bandwidth : tuple of float, default (0.1, 0.15)
        Kernel bandwidth in longitude and latitude, degrees.
    n : int, default 100
        Density grid points on each axis.

    Returns
    -------
    Plume
    """
    density = kernel_density(longitudes, latitudes, bandwidth=bandwidth, n=n)
    return Plume(density_polygon(density, threshold), density, float(threshold))


def plume_background(
    longitudes: ArrayLike,
    latitudes: ArrayLike,
    values: ArrayLike,
    plume: Plume | Any,
    *,
    uncertainties: ArrayLike | None = None,
    side: Side | None = None,
    width: float = 0.5,
    pad: float = 0.1,
    trim: float | None = 0.9,
) -> PlumeBackground:
    """The background from the soundings beside a plume.

    The soundings inside ``plume`` are enhanced. A box around them, padded by
    ``pad`` of its size, has a band ``width`` degrees wide on each side; the
    soundings outside the plume in the bands are the candidates, less those
    above the ``trim`` quantile of all soundings outside the plume (enhanced
    air the outline missed, as X-STILT does). The background is their median. Pass good
    soundings only.

    Parameters
    ----------
    longitudes, latitudes : array-like
        Sounding positions, degrees.
    values : array-like
        Sounding values, e.g. XCH4.
    plume : Plume or shapely.Polygon
        The plume's outline (:func:`plume_polygon`).
    uncertainties : array-like, optional
        Each sounding's retrieval uncertainty, in the units of ``values``.
    side : {"north", "south", "east", "west"}, optional
        One side only (the upwind one); all four pooled by default.
    width : float, default 0.5
        Width of each band, degrees.
    pad : float, default 0.1
        Padding of the box, a fraction of its size.
    trim : float or None, default 0.9
        Quantile above which candidates are dropped; None keeps them all.

    Returns
    -------
    PlumeBackground

    Raises
    ------
    ValueError
        If no sounding lies inside the plume (the overpass missed it), or
        ``side`` is not one of the four.
    """
    import shapely

    polygon = plume.polygon if isinstance(plume, Plume) else plume
    x = np.asarray(longitudes, dtype=np.float64)
    y = np.asarray(latitudes, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    u = None if uncertainties is None else np.asarray(uncertainties, dtype=np.float64)
    if side is not None and side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    inside = shapely.covers(polygon, shapely.points(x, y))
    if not inside.any():
        raise ValueError("no sounding lies inside the plume: the overpass did not see it")
    west, east = x[inside].min(), x[inside].max()
    south, north = y[inside].min(), y[inside].max()
    px, py = pad * (east - west), pad * (north - south)
    west, east, south, north = west - px, east + px, south - py, north + py
    across = (x >= west) & (x <= east)
    along = (y >= south) & (y <= north)
    bands = {
        "north": across & (y > north) & (y <= north + width),
        "south": across & (y < south) & (y >= south - width),
        "east": along & (x > east) & (x <= east + width),
        "west": along & (x < west) & (x >= west - width),
    }
    outside = ~inside & np.isfinite(v)
    if trim is not None and outside.any():
        outside &= v <= np.quantile(v[outside], trim)
    candidates = {name: band & outside for name, band in bands.items()}
    pooled = np.zeros(x.size, dtype=bool)
    for name in SIDES if side is None else (side,):
        pooled |= candidates[name]
    rows = [
        _summary(v[candidates[name]], None if u is None else u[candidates[name]]) for name in SIDES
    ]
    sides = pd.DataFrame(rows, index=pd.Index(SIDES, name="side"))
    used = _summary(v[pooled], None if u is None else u[pooled])
    return PlumeBackground(
        value=used["median"],
        uncertainty=used["uncertainty"],
        n=int(pooled.sum()),
        in_plume=inside,
        used=pooled,
        sides=sides,
    )


def _summary(values: np.ndarray, uncertainties: np.ndarray | None) -> dict[str, float]:
    """Statistics of some soundings; a part the uncertainty cannot know counts 0 there."""
    n = values.size
    spread = float(np.std(values, ddof=1)) if n > 1 else np.nan
    known = uncertainties is not None and n > 0
    retrieval = float(np.sqrt(np.mean(uncertainties**2))) if known else np.nan
    return {
        "n": n,
        "mean": float(np.mean(values)) if n else np.nan,
        "median": float(np.median(values)) if n else np.nan,
        "std": spread,
        "retrieval_std": retrieval,
        "uncertainty": float(np.sqrt(np.nan_to_num(spread) ** 2 + np.nan_to_num(retrieval) ** 2))
        if n
        else np.nan,
    }
