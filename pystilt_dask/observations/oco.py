"""OCO-2 and OCO-3 L2 Lite XCO2 files (``oco2_LtCO2_*.nc4``, ``oco3_LtCO2_*.nc4``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ._netcdf import decoded, open_product, raw
from ._table import azimuth, in_box, rows, soundings_table

#: Product variables kept under their own names (as PYSTILT keeps them).
_EXTRAS = {
    "quality_flag": "xco2_quality_flag",
    "operation_mode": "Sounding/operation_mode",
    "land_fraction": "Sounding/land_fraction",
    "orbit": "Sounding/orbit",
}


def read_oco2(
    path: str | Path,
    *,
    lon_range: tuple[float, float] | None = None,
    lat_range: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """Read an OCO-2 or OCO-3 L2 Lite XCO2 file (Lite FP v10, v11) into a table of soundings.

    Parameters
    ----------
    path : str or Path
        The Lite file, a local path or an fsspec URL.
    lon_range, lat_range : tuple of float, optional
        ``(min, max)`` degrees; only soundings in the box (edges included) are kept.

    Returns
    -------
    pandas.DataFrame
        One row per sounding, in file order, with the :data:`SOUNDING_SCHEMA`
        columns: ``value`` is XCO2 (ppm, fills NaN), ``good`` is
        ``xco2_quality_flag == 0``, the 20 ``pressure_levels`` with ``ak``,
        ``ak_pressure`` (the same levels), ``apriori`` and ``pressure_weight``
        run from the surface up; ``apriori_column`` is the prior XCO2; ``zenith``
        and ``azimuth`` point to the satellite. Extras: ``quality_flag``,
        ``operation_mode``, ``land_fraction``, ``orbit``.
    """
    with open_product(path) as f:
        lon, lat = decoded(f["longitude"]), decoded(f["latitude"])
        keep = np.flatnonzero(in_box(lon, lat, lon_range, lat_range))

        def get(name: str) -> np.ndarray:
            return decoded(f[name], keep)

        levels = get("pressure_levels")
        # Lite files list levels from the top of the atmosphere down.
        top_first = levels.size and levels[0, 0] < levels[0, -1]
        flip = slice(None, None, -1) if top_first else slice(None)
        columns: dict[str, object] = {
            "sounding_id": [str(v) for v in raw(f["sounding_id"], keep)],
            "time": pd.to_datetime(raw(f["time"], keep), unit="s"),
            "longitude": lon[keep],
            "latitude": lat[keep],
            "surface_altitude": get("Sounding/altitude"),
            "surface_pressure": get("Retrieval/psurf"),
            "zenith": get("sensor_zenith_angle"),
            "azimuth": azimuth(get("Sounding/sensor_azimuth_angle")),
            "solar_zenith": get("solar_zenith_angle"),
            "solar_azimuth": azimuth(get("Sounding/solar_azimuth_angle")),
            "value": get("xco2"),
            "uncertainty": get("xco2_uncertainty"),
            "good": raw(f["xco2_quality_flag"], keep) == 0,
            "ak_pressure": rows(levels[:, flip]),
            "ak": rows(get("xco2_averaging_kernel")[:, flip]),
            "pressure_levels": rows(levels[:, flip]),
            "apriori": rows(get("co2_profile_apriori")[:, flip]),
            "pressure_weight": rows(get("pressure_weight")[:, flip]),
            "apriori_column": get("xco2_apriori"),
            "longitude_bounds": rows(get("vertex_longitude")),
            "latitude_bounds": rows(get("vertex_latitude")),
        }
        for name, variable in _EXTRAS.items():
            if variable in f:
                columns[name] = get(variable)
    return soundings_table(columns, "xco2", "ppm")
