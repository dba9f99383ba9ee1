"""Helpers the readers share: one table layout, boxes, azimuths."""

from __future__ import annotations

import numpy as np
import pandas as pd


def rows(values: np.ndarray) -> list[np.ndarray]:
    """One float64 array per row of a 2-D array (a per-row column of a table)."""
    values = np.asarray(values, dtype=np.float64)
    return [np.array(row) for row in values]


def azimuth(degrees: np.ndarray) -> np.ndarray:
    """Azimuths in [0, 360): products give them in [-180, 180] or [0, 360]."""
    return np.mod(degrees, 360.0)


def in_box(
    longitude: np.ndarray,
    latitude: np.ndarray,
    lon_range: tuple[float, float] | None,
    lat_range: tuple[float, float] | None,
) -> np.ndarray:
    """True where a position lies in the box (edges included); all True without one."""
    keep = np.ones(np.shape(longitude), dtype=bool)
    if lon_range is not None:
        keep &= (longitude >= lon_range[0]) & (longitude <= lon_range[1])
    if lat_range is not None:
        keep &= (latitude >= lat_range[0]) & (latitude <= lat_range[1])
    return keep


def soundings_table(columns: dict[str, object], species: str, units: str) -> pd.DataFrame:
    """A reader's table: ``columns`` in order, ``sounding_id`` as text, then species and units."""
    table = pd.DataFrame(columns)
    table["sounding_id"] = table["sounding_id"].astype("str")
    table["species"] = pd.Series([species] * len(table), dtype="str", index=table.index)
    table["units"] = pd.Series([units] * len(table), dtype="str", index=table.index)
    return table
