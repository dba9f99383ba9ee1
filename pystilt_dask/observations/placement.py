"""Where a sounding's receptor goes: points over a pixel, a line of sight, pressure levels."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

#: Earth radius of the local tangent plane, m.
EARTH_RADIUS = 6_371_000.0
#: Dry-air gas constant (J kg-1 K-1) and standard gravity (m s-2) of the hypsometric equation.
R_DRY, GRAVITY = 287.05, 9.80665
#: Standard-atmosphere lapse rate (K/m) and sea-level temperature (K).
LAPSE_RATE, SEA_LEVEL_TEMPERATURE = 0.0065, 288.15


def slant_points(
    longitude: float,
    latitude: float,
    altitudes: ArrayLike,
    *,
    zenith: float,
    azimuth: float,
    anchor: float | None = None,
) -> list[tuple[float, float, float]]:
    """``(longitude, latitude, altitude)`` points along a line of sight.

    Each point lies ``(altitude - anchor) * tan(zenith)`` metres from
    ``(longitude, latitude)`` along the ``azimuth`` bearing, on a plane tangent
    to a sphere of radius :data:`EARTH_RADIUS`.

    Parameters
    ----------
    longitude, latitude : float
        Where the line passes through ``anchor``, degrees.
    altitudes : array-like
        Altitudes of the points, m, returned unchanged; above sea level, so the
        line stays straight over terrain.
    zenith : float
        Angle of the line from the vertical, degrees, 0 to 90.
    azimuth : float
        Bearing toward the instrument or the sun, degrees clockwise from north;
        the line rises that way.
    anchor : float, optional
        Altitude at which the line passes through the location; the first altitude
        by default.

    Returns
    -------
    list of (float, float, float)
    """
    z = np.asarray(altitudes, dtype=np.float64)
    if not 0.0 <= zenith <= 90.0:
        raise ValueError(f"zenith must lie in [0, 90] degrees, got {zenith}")
    base = z[0] if anchor is None else float(anchor)
    distance = (z - base) * math.tan(math.radians(zenith))
    bearing = math.radians(azimuth)
    north, east = distance * math.cos(bearing), distance * math.sin(bearing)
    lat = latitude + np.degrees(north / EARTH_RADIUS)
    lon = longitude + np.degrees(east / (EARTH_RADIUS * math.cos(math.radians(latitude))))
    return [(float(x), float(y), float(h)) for x, y, h in zip(lon, lat, z, strict=True)]


def pressure_altitudes(
    pressures: ArrayLike,
    *,
    surface_pressure: float,
    surface_altitude: float,
    temperature: ArrayLike | None = None,
    top: float | None = None,
) -> np.ndarray:
    """Altitudes above sea level of a retrieval's pressure levels (hypsometric equation).

    Parameters
    ----------
    pressures : array-like
        Pressure levels, hPa, in any order. Levels at higher pressure than the
        surface are below it and dropped.
    surface_pressure : float
        The sounding's surface pressure, hPa.
    surface_altitude : float
        The sounding's surface altitude, m above sea level.
    temperature : array-like, optional
        Temperature at each level, K: each layer takes the mean of its edges, the
        layer from the surface to the first level that level's. By default the
        standard atmosphere: 6.5 K/km down from 288.15 K at sea level.
    top : float, optional
        Drop levels above this altitude, m above sea level.

    Returns
    -------
    numpy.ndarray
        Altitudes, m above sea level, from the surface up (the first anchors a
        :func:`slant_points` line at the sounding).
    """
    p = np.asarray(pressures, dtype=np.float64)
    order = np.argsort(-p, kind="stable")
    p = p[order]
    kept = p <= surface_pressure
    p = p[kept]
    if temperature is None:
        t_surface = SEA_LEVEL_TEMPERATURE - LAPSE_RATE * surface_altitude
        exponent = R_DRY * LAPSE_RATE / GRAVITY
        z = surface_altitude + t_surface / LAPSE_RATE * (1.0 - (p / surface_pressure) ** exponent)
    else:
        t = np.asarray(temperature, dtype=np.float64)[order][kept]
        lower = np.concatenate(([surface_pressure], p[:-1]))
        mean_t = np.concatenate((t[:1], (t[:-1] + t[1:]) / 2.0))
        z = surface_altitude + np.cumsum(R_DRY * mean_t / GRAVITY * np.log(lower / p))
    if top is not None:
        z = z[z <= top]
    return z


def jitter_points(
    polygon: object | Sequence[tuple[float, float]],
    n: int,
    *,
    method: Literal["regular", "random"] = "regular",
    seed: int | None = None,
) -> list[tuple[float, float]]:
    """``n`` ``(longitude, latitude)`` points spread over a pixel (X-STILT's ``jitterTF``).

    Parameters
    ----------
    polygon : shapely.Polygon or sequence of (float, float)
        The pixel's outline, or its corners.
    n : int
        Number of points.
    method : {"regular", "random"}, default "regular"
        ``regular``: the cell centres of the coarsest k x k grid over the
        pixel's bounding box (k from ``max(2, ceil(sqrt(n)))`` up) with at least
        ``n`` centres on or in the pixel, the first ``n`` of them row by row from
        the south-west.
        ``random``: uniform draws in the pixel.
    seed : int, optional
        Seed of ``random``.

    Returns
    -------
    list of (float, float)
    """
    import shapely

    shape = polygon if isinstance(polygon, shapely.Polygon) else shapely.Polygon(polygon)
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    west, south, east, north = shape.bounds
    if method == "random":
        rng = np.random.default_rng(seed)
        found: list[tuple[float, float]] = []
        while len(found) < n:
            x = rng.uniform(west, east, 4 * n)
            y = rng.uniform(south, north, 4 * n)
            inside = shapely.covers(shape, shapely.points(x, y))
            found.extend(zip(x[inside].tolist(), y[inside].tolist(), strict=True))
        return found[:n]
    if method != "regular":
        raise ValueError(f"method must be 'regular' or 'random', got {method!r}")
    k = max(2, math.ceil(math.sqrt(n)))  # as PYSTILT: never the pixel's centre alone
    while True:
        centres = (np.arange(k) + 0.5) / k
        x = np.tile(west + (east - west) * centres, k)
        y = np.repeat(south + (north - south) * centres, k)
        inside = shapely.covers(shape, shapely.points(x, y))
        if inside.sum() >= n:
            return list(zip(x[inside][:n].tolist(), y[inside][:n].tolist(), strict=True))
        k += 1
