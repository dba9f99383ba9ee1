"""Idealized ARL meteorology: a small synthetic archive HYSPLIT accepts.

The fields are horizontally uniform and chosen so that a test can predict where
particles go: the wind is a prescribed ``(u, v)`` (optionally growing linearly with
height), there is no vertical motion, the terrain is flat at sea level, and the
mixed layer follows a prescribed diurnal cycle. The files are written with
:mod:`arlmet`, one file per ``file_hours`` of time steps ``step_hours`` apart,
named by ``strftime(file_format)`` of each file's first time so that
``MetConfig(directory, file_format)`` finds them. Two calls with different grids
(a fine one inside a coarse one) make a nest.

HYSPLIT-STILT needs, besides the wind, a consistent temperature and pressure
profile (it derives heights from ``PRES``/``TEMP`` and the Richardson-number mixed
layer from ``TEMP``) and the surface fluxes it uses for stability (``SHTF``,
``USTR``). All values are pure functions of the arguments, so a rerun writes
byte-identical files.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import arlmet
import numpy as np

#: Sigma levels written (1.0 is the surface, level 0). Dense below 2 km, where the
#: mixed layer lives, and sparse up to ~12 km so HYSPLIT has a full column.
SIGMA_LEVELS = (
    1.0, 0.995, 0.985, 0.97, 0.95, 0.925, 0.9, 0.87, 0.84, 0.8, 0.75, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2,
)  # fmt: skip

_SURFACE_PRESSURE = 1000.0  # hPa; SHGT is 0 so this is also the sea-level pressure
_SURFACE_TEMPERATURE = (285.0, 293.0)  # K at 2 m, (night, noon)
_RELATIVE_HUMIDITY = 0.5  # everywhere: moist enough to be realistic, never saturated
_INVERSION = 3.0  # K jump in temperature at the mixed-layer top (sets the Richardson depth)
_FREE_LAPSE = 6.5e-3  # K/m above the mixed layer (stable, standard atmosphere)
_DRY_LAPSE = 9.8e-3  # K/m inside the mixed layer (well mixed, dry adiabatic)
_HEAT_FLUX = (-20.0, 250.0)  # W/m^2 (night, noon); the sign sets HYSPLIT's stability
_ROUGHNESS = 0.1  # m; only used to derive USTR from the 10 m wind by the log law
_RD, _G, _KARMAN = 287.04, 9.80665, 0.4


def write_idealized_met(
    directory: str | Path,
    start: datetime,
    hours: int,
    *,
    u: float = 5.0,
    v: float = 0.0,
    shear_per_km: float = 0.0,
    center: tuple[float, float] = (-100.0, 40.0),
    half_width_deg: float = 4.0,
    resolution_deg: float = 0.25,
    mixed_layer: tuple[float, float] = (300.0, 1500.0),
    file_hours: int = 6,
    file_format: str = "%Y%m%d_%H",
    step_hours: int = 1,
) -> list[Path]:
    """Write an idealized ARL archive of horizontally uniform fields.

    Parameters
    ----------
    directory : str or Path
        Where to write the files (created if missing; existing files are replaced).
    start : datetime
        First time step (UTC, naive). Must be on a whole hour that is a multiple of
        ``file_hours`` after midnight, so that a 6-hourly file lookup finds the files.
    hours : int
        Hours of data; a positive multiple of ``file_hours``. The last time step is
        ``start + hours - step_hours``, as in 6-hourly HRRR files (``00``–``05``).
    u, v : float
        Eastward and northward wind (m/s) at the surface and, with no shear, at all
        heights.
    shear_per_km : float
        Fractional wind increase per km above ground: the wind at height ``z`` is
        ``(u, v) * (1 + shear_per_km * z / 1000)``. 0 makes the wind uniform, so
        particles move exactly with ``(u, v)``.
    center : tuple of float
        Grid centre ``(lon, lat)`` in degrees. Longitude also sets local solar time
        (``UTC + lon / 15`` h) for the diurnal cycle.
    half_width_deg : float
        Half the grid's extent in both directions, in degrees. HYSPLIT rejects
        release points within about two cells of the edge, and particles that leave
        the grid stop, so allow ``|wind| * run length`` plus a margin.
    resolution_deg : float
        Grid spacing in degrees; the grid has ``2 * round(half_width_deg /
        resolution_deg) + 1`` points in each direction.
    mixed_layer : tuple of float
        Mixed-layer depth (m) ``(night, day)``. The depth is ``night`` from 18 to 6
        local solar time and follows a half sine in between, reaching ``day`` at noon.
        It is written to ``PBLH`` and built into the temperature profile (dry
        adiabatic below it, a 3 K inversion at it), so HYSPLIT's Richardson-number
        depth (``KMIXD=3``) tracks it to within a model layer.
    file_hours : int
        Hours each file covers; must divide 24 (24: a file per day).
    file_format : str
        strftime pattern of each file's name, applied to its first time step.
    step_hours : int
        Hours between time steps; must divide ``file_hours``. ``step_hours ==
        file_hours`` writes one time step per file (GFS or ERA5 converted a time
        per file).

    Returns
    -------
    list of Path
        The files written, in time order.

    Notes
    -----
    Surface fields: ``PRSS`` (1000 hPa), ``SHGT`` (0 m), ``T02M`` (285 K at night to
    293 K at noon, with the same half sine), ``U10M``/``V10M`` (``u``/``v``),
    ``PBLH``, ``SHTF`` (-20 W/m² at night to 250 W/m² at noon), ``USTR`` (log law
    with a 0.1 m roughness) and ``RH2M`` (50 %). On each sigma level of
    :data:`SIGMA_LEVELS`: ``UWND``, ``VWND``, ``WWND`` (0), ``TEMP``, ``SPHU`` (from
    50 % relative humidity) and ``PRES`` (``sigma * 1000`` hPa).
    """
    if file_hours <= 0 or 24 % file_hours:
        raise ValueError(f"file_hours must divide 24, got {file_hours}")
    if step_hours <= 0 or file_hours % step_hours:
        raise ValueError(f"step_hours must divide file_hours ({file_hours}), got {step_hours}")
    if hours <= 0 or hours % file_hours:
        raise ValueError(f"hours must be a positive multiple of {file_hours}, got {hours}")
    if start.minute or start.second or start.microsecond or start.hour % file_hours:
        raise ValueError(f"start {start} is not on a {file_hours}-hourly file boundary")
    lon, lat = center
    n_half = round(half_width_deg / resolution_deg)
    extent = n_half * resolution_deg
    n = 2 * n_half + 1
    # Lat/lon ARL grid (grid_size 0): sync = first cell, pole = last cell, spacing in
    # the tangent fields, longitudes in 0-360 east as HYSPLIT's own extractors write.
    grid = arlmet.Grid(
        arlmet.Projection(
            pole_lat=lat + extent,
            pole_lon=(lon + extent) % 360.0,
            tangent_lat=resolution_deg,
            tangent_lon=resolution_deg,
            grid_size=0.0,
            orientation=0.0,
            cone_angle=0.0,
            sync_x=1.0,
            sync_y=1.0,
            sync_lat=lat - extent,
            sync_lon=(lon - extent) % 360.0,
        ),
        nx=n,
        ny=n,
    )
    axis = arlmet.SigmaAxis(levels=SIGMA_LEVELS)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for first in range(0, hours, file_hours):
        file_start = start + timedelta(hours=first)
        path = directory / file_start.strftime(file_format)
        with arlmet.File(path, mode="w", source="IDEA", grid=grid, vertical_axis=axis) as met:
            for step in range(0, file_hours, step_hours):
                time = file_start + timedelta(hours=step)
                fields = _fields(time, lon, u, v, shear_per_km, mixed_layer)
                recordset = met.create_recordset(time, forecast=0)
                for (name, level), value in fields.items():
                    data = np.full((n, n), value, dtype=np.float32)
                    recordset.create_datarecord(name, level, forecast=0, data=data)
                met.flush()
        paths.append(path)
    return paths


def _daytime(time: datetime, lon: float) -> float:
    """Half-sine daytime weight: 0 from 18 to 6 local solar time, 1 at noon."""
    solar_hour = (time.hour + time.minute / 60 + lon / 15.0) % 24.0
    return max(0.0, float(np.sin(np.pi * (solar_hour - 6.0) / 12.0)))


def _fields(
    time: datetime,
    lon: float,
    u: float,
    v: float,
    shear_per_km: float,
    mixed_layer: tuple[float, float],
) -> dict[tuple[str, int], float]:
    """The uniform value of every ``(variable, level)`` record at ``time``."""
    day = _daytime(time, lon)
    depth = mixed_layer[0] + (mixed_layer[1] - mixed_layer[0]) * day
    t_sfc = _SURFACE_TEMPERATURE[0] + (_SURFACE_TEMPERATURE[1] - _SURFACE_TEMPERATURE[0]) * day
    pressure = np.asarray(SIGMA_LEVELS) * _SURFACE_PRESSURE
    height, temperature = _column(pressure, t_sfc, depth)
    speed = np.hypot(u, v)
    fields = {
        ("PRSS", 0): _SURFACE_PRESSURE,
        ("SHGT", 0): 0.0,
        ("T02M", 0): t_sfc,
        ("U10M", 0): u,
        ("V10M", 0): v,
        ("PBLH", 0): depth,
        ("SHTF", 0): _HEAT_FLUX[0] + (_HEAT_FLUX[1] - _HEAT_FLUX[0]) * day,
        ("USTR", 0): _KARMAN * speed / np.log(10.0 / _ROUGHNESS),
        ("RH2M", 0): 100.0 * _RELATIVE_HUMIDITY,
    }
    for level in range(1, len(SIGMA_LEVELS)):
        scale = 1.0 + shear_per_km * height[level] / 1000.0
        fields[("UWND", level)] = u * scale
        fields[("VWND", level)] = v * scale
        fields[("WWND", level)] = 0.0
        fields[("TEMP", level)] = temperature[level]
        fields[("SPHU", level)] = _specific_humidity(temperature[level], pressure[level])
        fields[("PRES", level)] = pressure[level]
    return {key: float(value) for key, value in fields.items()}


def _column(pressure: np.ndarray, t_sfc: float, depth: float) -> tuple[np.ndarray, np.ndarray]:
    """Heights (m AGL) and temperatures (K) of the sigma levels.

    Temperature is prescribed as a function of height, and height follows from the
    layer-mean temperature by the hypsometric equation, so integrate upward one
    layer at a time, solving each layer by a few fixed-point passes.
    """

    def temperature_at(z: float) -> float:
        if z < depth:
            return t_sfc - _DRY_LAPSE * z
        return t_sfc - _DRY_LAPSE * depth + _INVERSION - _FREE_LAPSE * (z - depth)

    height = np.zeros_like(pressure)
    temperature = np.full_like(pressure, t_sfc)
    for k in range(1, len(pressure)):
        thickness = _RD / _G * np.log(pressure[k - 1] / pressure[k])
        temperature[k] = temperature[k - 1]
        for _ in range(3):
            height[k] = height[k - 1] + thickness * (temperature[k - 1] + temperature[k]) / 2
            temperature[k] = temperature_at(height[k])
    return height, temperature


def _specific_humidity(temperature: float, pressure: float) -> float:
    """Specific humidity (kg/kg) at :data:`_RELATIVE_HUMIDITY` (Bolton 1980 e_s)."""
    e = _RELATIVE_HUMIDITY * 6.112 * np.exp(17.67 * (temperature - 273.15) / (temperature - 29.65))
    return 0.622 * e / (pressure - 0.378 * e)
