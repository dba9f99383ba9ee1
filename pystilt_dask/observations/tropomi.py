"""Sentinel-5P TROPOMI methane: operational L2 orbits and the TROPOMI+GOSAT blended files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._netcdf import decoded, open_product, product_name, raw, text
from ._table import azimuth, in_box, rows, soundings_table

_ORBIT = re.compile(r"^S5P_[A-Z0-9]{4}_L2__CH4____\d{8}T\d{6}_\d{8}T\d{6}_(\d{5})_")
_INPUT = "SUPPORT_DATA/INPUT_DATA/"
_GEO = "SUPPORT_DATA/GEOLOCATIONS/"
#: Where an operational file keeps each variable a blended file keeps at its root.
_OPERATIONAL = {
    "column_averaging_kernel": "SUPPORT_DATA/DETAILED_RESULTS/column_averaging_kernel",
    **{
        name: _INPUT + name
        for name in (
            "surface_altitude",
            "surface_pressure",
            "pressure_interval",
            "methane_profile_apriori",
            "dry_air_subcolumns",
            "altitude_levels",
        )
    },
    "longitude_bounds": _GEO + "longitude_bounds",
    "latitude_bounds": _GEO + "latitude_bounds",
}


def read_tropomi_ch4(
    path: str | Path,
    *,
    lon_range: tuple[float, float] | None = None,
    lat_range: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """Read a TROPOMI (Sentinel-5P) L2 methane file into a table of soundings.

    Operational orbits (``S5P_*_L2__CH4___``, groups ``PRODUCT/...``) and the
    TROPOMI+GOSAT blended files (``S5P_BLND_L2__CH4___``, flat) are both read.

    Parameters
    ----------
    path : str or Path
        The product file, a local path or an fsspec URL.
    lon_range, lat_range : tuple of float, optional
        ``(min, max)`` degrees; only pixels in the box (edges included) are kept.

    Returns
    -------
    pandas.DataFrame
        One row per pixel, scanline by scanline, with the :data:`SOUNDING_SCHEMA`
        columns. ``value`` is the bias-corrected XCH4 in ppb (the blended XCH4
        in a blended file); ``good`` is ``qa_value >= 0.5``. The pressure grid
        is rebuilt from ``surface_pressure`` and ``pressure_interval``:
        ``pressure_levels`` are the 13 layer edges from the surface up and
        ``ak_pressure`` the 12 layer midpoints of ``ak``; ``altitude_levels``
        are the product's heights of the edges; ``apriori`` is the prior per
        layer as a mole fraction (ppb). ``zenith`` and ``azimuth`` point to the
        satellite (not in blended files, which have no ``altitude_levels``
        either). ``sounding_id`` is ``<orbit>_<scanline>_<ground_pixel>``
        (``<orbit>_<index>`` for blended files). Extras: ``qa_value``,
        ``xch4_uncorrected``, and ``scanline`` and ``ground_pixel``
        (operational) or ``xch4_bias_corrected`` (blended).
    """
    name = product_name(path)
    with open_product(path) as f:
        orbit = _orbit(name, f)
        if "PRODUCT" in f.groups:
            return _operational(f["PRODUCT"], orbit, lon_range, lat_range)
        return _blended(f, orbit, lon_range, lat_range)


def _orbit(name: str, f: Any) -> str:
    match = _ORBIT.match(name)
    if match:
        return match[1]
    return f"{int(np.asarray(f.attrs['orbit']).reshape(-1)[0]):05d}"


def _pixels(
    get: Any, lon: np.ndarray, lat: np.ndarray, value: str, *, operational: bool
) -> dict[str, object]:
    """The columns both kinds of file give, ``longitude`` to ``qa_value``.

    ``get`` reads a variable of every pixel kept, by its name in a blended file;
    ``lon`` and ``lat`` are those pixels'; ``value`` is the XCH4 variable. Only
    an ``operational`` file has the line of sight and ``altitude_levels``.
    """
    surface_pressure, profiles = _profiles(get, altitudes=operational)
    angles: dict[str, np.ndarray] = {}
    if operational:
        angles = {
            "zenith": get(_GEO + "viewing_zenith_angle"),
            "azimuth": azimuth(get(_GEO + "viewing_azimuth_angle")),
            "solar_zenith": get(_GEO + "solar_zenith_angle"),
            "solar_azimuth": azimuth(get(_GEO + "solar_azimuth_angle")),
        }
    qa = get("qa_value")
    return {
        "longitude": lon,
        "latitude": lat,
        "surface_altitude": get("surface_altitude"),
        "surface_pressure": surface_pressure,
        **angles,
        "value": get(value),
        "uncertainty": get("methane_mixing_ratio_precision"),
        "good": qa >= 0.5,
        **profiles,
        "longitude_bounds": rows(get("longitude_bounds")),
        "latitude_bounds": rows(get("latitude_bounds")),
        "qa_value": qa,
    }


def _profiles(get: Any, altitudes: bool) -> tuple[np.ndarray, dict[str, object]]:
    """Surface pressure (hPa), and the pressure grid, kernel, edge heights and prior, surface first.

    ``get`` reads a variable of every pixel kept; ``altitudes``: the file has
    ``altitude_levels`` (operational files; blended ones do not).
    """
    surface = get("surface_pressure") / 100.0
    interval = get("pressure_interval") / 100.0
    columns: dict[str, object] = {
        "ak_pressure": rows(surface[:, None] - interval[:, None] * (np.arange(12) + 0.5)),
        "ak": rows(get("column_averaging_kernel")[:, ::-1]),
        "pressure_levels": rows(surface[:, None] - interval[:, None] * np.arange(13)),
    }
    if altitudes:
        columns["altitude_levels"] = rows(get("altitude_levels")[:, ::-1])
    prior = get("methane_profile_apriori") / get("dry_air_subcolumns") * 1e9
    columns["apriori"] = rows(prior[:, ::-1])
    return surface, columns


def _operational(
    product: Any,
    orbit: str,
    lon_range: tuple[float, float] | None,
    lat_range: tuple[float, float] | None,
) -> pd.DataFrame:
    scan, pix = raw(product["scanline"]), raw(product["ground_pixel"])
    lon = decoded(product["longitude"], 0).ravel()
    lat = decoded(product["latitude"], 0).ravel()
    keep = np.flatnonzero(in_box(lon, lat, lon_range, lat_range))
    line = np.repeat(np.arange(scan.size), pix.size)[keep]
    column = np.tile(np.arange(pix.size), scan.size)[keep]

    def get(variable: str) -> np.ndarray:
        values = decoded(product[_OPERATIONAL.get(variable, variable)], 0)
        return values.reshape(scan.size * pix.size, *values.shape[2:])[keep]

    times = pd.to_datetime(text(product["time_utc"], 0)).tz_localize(None)
    columns: dict[str, object] = {
        "sounding_id": [f"{orbit}_{scan[i]}_{pix[j]}" for i, j in zip(line, column, strict=True)],
        "time": times[line],
        **_pixels(
            get, lon[keep], lat[keep], "methane_mixing_ratio_bias_corrected", operational=True
        ),
        "xch4_uncorrected": get("methane_mixing_ratio"),
        "scanline": scan[line],
        "ground_pixel": pix[column],
    }
    return soundings_table(columns, "xch4", "ppb")


def _blended(
    f: Any,
    orbit: str,
    lon_range: tuple[float, float] | None,
    lat_range: tuple[float, float] | None,
) -> pd.DataFrame:
    lon, lat = decoded(f["longitude"]), decoded(f["latitude"])
    keep = np.flatnonzero(in_box(lon, lat, lon_range, lat_range))

    def get(variable: str) -> np.ndarray:
        return decoded(f[variable], keep)

    columns: dict[str, object] = {
        "sounding_id": [f"{orbit}_{i}" for i in keep],
        "time": pd.to_datetime(text(f["time_utc"], keep)).tz_localize(None),
        **_pixels(get, lon[keep], lat[keep], "methane_mixing_ratio_blended", operational=False),
        "xch4_bias_corrected": get("methane_mixing_ratio_bias_corrected"),
        "xch4_uncorrected": get("methane_mixing_ratio"),
    }
    return soundings_table(columns, "xch4", "ppb")
