"""The columns of a table of soundings, which every reader returns (PYSTILT's names)."""

from __future__ import annotations

from typing import Literal

import pandas as pd

When = Literal["always", "kernel", "optional"]

#: Column name -> (when a reader returns it, what it holds). ``always``: every
#: reader; ``kernel``: every product with an averaging kernel (all but GGG
#: ``.oof``); ``optional``: where the product has it. Vertical arrays run from
#: the surface up; pressures are hPa, altitudes m above sea level, azimuths
#: degrees clockwise from north toward the instrument or the sun.
SOUNDING_SCHEMA: dict[str, tuple[When, str]] = {
    "sounding_id": ("always", "The sounding's name within its product, as text."),
    "time": ("always", "UTC time of the sounding, without a time zone."),
    "longitude": ("always", "Longitude of the pixel centre or the station, degrees."),
    "latitude": ("always", "Latitude of the pixel centre or the station, degrees."),
    "surface_altitude": ("always", "Altitude of the surface or the station, m above sea level."),
    "surface_pressure": ("always", "Surface pressure used by the retrieval, hPa."),
    "value": ("always", "Column-average dry-air mole fraction."),
    "uncertainty": ("always", "One-sigma error of value, in its units."),
    "species": ("always", "The gas, e.g. xco2 or xch4."),
    "units": ("always", "Units of value: ppm or ppb."),
    "good": ("always", "The product's recommended quality screen, True to keep."),
    "ak_pressure": (
        "kernel",
        "Pressures of the kernel, hPa, per row (a layer product: its midpoints).",
    ),
    "ak": ("kernel", "Column averaging kernel at ak_pressure, per row."),
    "pressure_levels": ("kernel", "The retrieval's pressure grid, hPa, per row."),
    "zenith": ("optional", "Zenith angle of the line of sight to the instrument or sun, degrees."),
    "azimuth": ("optional", "Azimuth of the line of sight, degrees."),
    "solar_zenith": ("optional", "Solar zenith angle, degrees."),
    "solar_azimuth": ("optional", "Solar azimuth angle, degrees."),
    "altitude_levels": ("optional", "Altitudes of pressure_levels, m above sea level, per row."),
    "apriori": (
        "optional",
        "Prior profile as a mole fraction in units, per row: on the kernel's levels "
        "(TROPOMI, OCO) or on pressure_levels (GGG).",
    ),
    "apriori_column": ("optional", "The prior's column value (OCO)."),
    "longitude_bounds": ("optional", "Longitudes of the pixel's corners, per row."),
    "latitude_bounds": ("optional", "Latitudes of the pixel's corners, per row."),
}


def check_soundings(soundings: pd.DataFrame, *, kernel: bool = True) -> None:
    """Raise unless ``soundings`` has every column a reader always returns.

    Parameters
    ----------
    soundings : pandas.DataFrame
        A table of soundings, e.g. from :func:`read_oco2`.
    kernel : bool, default True
        Also require the averaging-kernel columns (``ak``, ``ak_pressure``,
        ``pressure_levels``), which every product but a GGG ``.oof`` has.

    Raises
    ------
    ValueError
        Naming the missing columns.
    """
    wanted = ("always", "kernel") if kernel else ("always",)
    missing = [
        name
        for name, (when, _) in SOUNDING_SCHEMA.items()
        if when in wanted and name not in soundings.columns
    ]
    if missing:
        raise ValueError(f"table of soundings lacks columns {missing}")
