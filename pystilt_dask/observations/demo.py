"""A synthetic OCO-2 overpass for the satellite notebook: an OCO-2 Lite file with a plume.

The file is laid out as an OCO-2 L2 Lite FP file (``oco2_LtCO2_*.nc4``: one
``sounding_id`` dimension, 20 ``levels`` from the top of the atmosphere down,
fills -999999, the ``Sounding`` and ``Retrieval`` groups), so :func:`read_oco2`
reads it as it reads a real one. The values are invented: a swath of eight
footprints across, running north and crossing the plume of a point source carried
by a uniform wind,
XCO2 a background with a north-south gradient plus a Gaussian plume that widens
downwind, plus noise; surface pressure 1000 hPa at sea level, as on the
package's idealized meteorology (:mod:`pystilt_dask.meteorology.idealized`).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

#: The Lite files' fill value.
FILL = np.float32(-999999.0)
#: Metres per degree of latitude.
_M_PER_DEG = 111_195.0
_LEVELS = 20


def write_demo_overpass(
    directory: str | Path,
    *,
    time: datetime = datetime(2024, 7, 15, 20, 0),
    track_longitude: float = -100.0,
    latitudes: tuple[float, float] = (39.6, 40.4),
    frames: int = 40,
    source: tuple[float, float] = (-100.4, 39.9),
    wind: tuple[float, float] = (5.0, 2.0),
    plume_peak: float = 1.5,
    background: float = 412.0,
    noise: float = 0.3,
    seed: int = 0,
) -> Path:
    """Write a synthetic OCO-2 Lite file of one overpass and return its path.

    Parameters
    ----------
    directory : path-like
        Created if missing.
    time : datetime
        UTC time of the first frame; the others follow every 0.333 s.
    track_longitude : float
        Longitude of the swath's centre; it runs due north, eight footprints
        0.013° apart across.
    latitudes : tuple of float
        Latitude of the first and last frame.
    frames : int
        Frames (rows of eight soundings) along the swath.
    source : tuple of float
        ``(longitude, latitude)`` of the point source whose plume the track crosses.
    wind : tuple of float
        ``(u, v)``, m/s, carrying the plume.
    plume_peak : float
        XCO2 enhancement on the plume's axis where the track crosses it, ppm.
    background : float
        XCO2 at 40° N away from the plume, ppm (0.5 ppm more per degree north).
    noise : float
        Standard deviation of the retrieval noise added, ppm; also ``xco2_uncertainty``.
    seed : int
        Seed of the noise.

    Returns
    -------
    pathlib.Path
        ``directory/oco2_LtCO2_<yymmdd>_B11000Ar_demo.nc4``, ``8 * frames``
        soundings frame by frame. Every seventh sounding is flagged bad
        (``xco2_quality_flag`` 1) and the fourth has no XCO2 (fill).
    """
    import h5netcdf

    rng = np.random.default_rng(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"oco2_LtCO2_{time:%y%m%d}_B11000Ar_demo.nc4"
    n = 8 * frames
    frame, footprint = np.divmod(np.arange(n), 8)
    times = [time + timedelta(seconds=0.333 * int(k)) for k in frame]
    # YYYYMMDDhhmmss, the frame's tenth of a second, the footprint (1-8), as OCO-2 numbers them
    ids = np.array(
        [
            int(f"{t:%Y%m%d%H%M%S}{t.microsecond // 100_000}{k + 1}")
            for t, k in zip(times, footprint, strict=True)
        ]
    )
    lat = np.linspace(*latitudes, frames)[frame]
    lon = track_longitude + 0.013 * (footprint - 3.5)
    xco2 = background + 0.5 * (lat - 40.0) + _plume(lon, lat, source, wind, plume_peak)
    xco2 = (xco2 + rng.normal(0.0, noise, n)).astype(np.float32)
    xco2[3] = FILL
    flag = (np.arange(n) % 7 == 6).astype(np.int8)
    psurf = np.full(n, 1000.0, dtype=np.float32)
    sigma = np.linspace(1e-4, 1.0, _LEVELS)  # top of the atmosphere first, as the files
    levels = (psurf[:, None] * sigma).astype(np.float32)
    ak = np.broadcast_to(0.55 + 0.45 * np.sqrt(sigma), (n, _LEVELS)).astype(np.float32)
    prior = np.broadcast_to(background - 3.0 + 4.0 * sigma, (n, _LEVELS)).astype(np.float32)
    weight = np.full(_LEVELS, 1.0 / (_LEVELS - 1))
    weight[[0, -1]] /= 2.0
    epoch = np.array([(t - datetime(1970, 1, 1)).total_seconds() for t in times])
    corners = np.array([-1.0, 1.0, 1.0, -1.0])
    f32 = np.float32
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"sounding_id": n, "levels": _LEVELS, "vertices": 4}
        f.attrs["title"] = "Synthetic OCO-2 Lite-like overpass (pystilt_dask demo; values invented)"
        _add(f, "sounding_id", ("sounding_id",), ids.astype(np.int64), fill=None)
        _add(f, "time", ("sounding_id",), epoch, fill=None, units="seconds since 1970-01-01")
        _add(f, "longitude", ("sounding_id",), lon.astype(f32), units="degrees_east")
        _add(f, "latitude", ("sounding_id",), lat.astype(f32), units="degrees_north")
        vlon = (lon[:, None] + 0.011 * corners).astype(f32)
        vlat = (lat[:, None] + 0.009 * np.roll(corners, 1)).astype(f32)
        _add(f, "vertex_longitude", ("sounding_id", "vertices"), vlon, units="degrees_east")
        _add(f, "vertex_latitude", ("sounding_id", "vertices"), vlat, units="degrees_north")
        _add(f, "solar_zenith_angle", ("sounding_id",), np.full(n, 25.0, f32), units="degrees")
        _add(f, "sensor_zenith_angle", ("sounding_id",), np.full(n, 5.0, f32), units="degrees")
        _add(f, "xco2", ("sounding_id",), xco2, units="ppm")
        _add(f, "xco2_uncertainty", ("sounding_id",), np.full(n, noise, f32), units="ppm")
        _add(f, "xco2_apriori", ("sounding_id",), np.full(n, background, f32), units="ppm")
        _add(f, "xco2_quality_flag", ("sounding_id",), flag, fill=None)
        levels_dims = ("sounding_id", "levels")
        _add(f, "pressure_levels", levels_dims, levels, units="hPa")
        _add(f, "pressure_weight", levels_dims, np.tile(weight, (n, 1)).astype(f32), units="1")
        _add(f, "co2_profile_apriori", levels_dims, prior, units="ppm")
        _add(f, "xco2_averaging_kernel", levels_dims, ak, units="1")
        sounding = f.create_group("Sounding")
        _add(sounding, "altitude", ("sounding_id",), np.zeros(n, f32), units="m")
        _add(sounding, "sensor_azimuth_angle", ("sounding_id",), np.full(n, 100.0, f32))
        _add(sounding, "solar_azimuth_angle", ("sounding_id",), np.full(n, 200.0, f32))
        _add(sounding, "operation_mode", ("sounding_id",), np.zeros(n, np.int8), fill=None)
        _add(sounding, "land_fraction", ("sounding_id",), np.full(n, 100.0, f32), units="%")
        _add(sounding, "orbit", ("sounding_id",), np.full(n, 51000, np.int32), fill=None)
        retrieval = f.create_group("Retrieval")
        _add(retrieval, "psurf", ("sounding_id",), psurf, units="hPa")
    return path


def _plume(
    lon: np.ndarray,
    lat: np.ndarray,
    source: tuple[float, float],
    wind: tuple[float, float],
    peak: float,
) -> np.ndarray:
    """A Gaussian plume's column enhancement: ``peak`` on the axis where the track
    crosses it, widening downwind (0 upwind of the source)."""
    scale = _M_PER_DEG * math.cos(math.radians(source[1]))
    x = (lon - source[0]) * scale
    y = (lat - source[1]) * _M_PER_DEG
    speed = math.hypot(*wind)
    along = (x * wind[0] + y * wind[1]) / speed
    across = (-x * wind[1] + y * wind[0]) / speed
    downwind = np.maximum(along, 0.0)
    width = 2000.0 + 0.15 * downwind  # m
    crossing = float(np.median(width[along > 0])) if (along > 0).any() else 2000.0
    amplitude = peak * crossing / width  # the mass flux through each cross-section is kept
    return np.where(along > 0, amplitude * np.exp(-0.5 * (across / width) ** 2), 0.0)


def _add(group, name, dims, data, *, fill=FILL, **attrs) -> None:
    var = group.create_variable(name, dims, data=data, fillvalue=fill)
    for key, value in attrs.items():
        var.attrs[key] = value
