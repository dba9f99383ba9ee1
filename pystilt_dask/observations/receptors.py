"""Receptors and averaging-kernel tables from a table of soundings."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from ..errors import ReceptorError
from ..footprint.transforms import KERNEL_TABLE_COLUMNS
from ..receptors import receptor_rows
from .placement import slant_points

#: Columns a slant receptor is built from.
SLANT_COLUMNS = ("altitude_levels", "zenith", "azimuth")


def receptors_from_soundings(
    soundings: pd.DataFrame, kind: Literal["column", "slant"], *, top: float
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """A receptor for each sounding, and their averaging kernels by simulation id.

    Parameters
    ----------
    soundings : pandas.DataFrame
        A reader's table (:data:`SOUNDING_SCHEMA`), screened as you like
        (``df[df.good]``).
    kind : {"column", "slant"}
        ``column``: a :class:`~pystilt_dask.receptors.ColumnReceptor` from the
        ground to ``top`` m above it at the sounding. ``slant``: points along the
        line of sight (``zenith``, ``azimuth``, :func:`slant_points`) at the
        retrieval's ``altitude_levels`` below ``surface_altitude + top``, in m
        above sea level; a :class:`~pystilt_dask.receptors.MultiPointReceptor`
        (a point receptor where one level is left).
    top : float
        Height of the receptor's top above the surface, m.

    Returns
    -------
    receptors : pandas.DataFrame
        A receptor table, one row per release point in sounding order, as
        :func:`~pystilt_dask.receptors.read_receptors` reads it (``time``,
        ``longitude``, ``latitude``, then ``bottom`` and ``top``, or
        ``altitude`` and ``group`` for slants), with ``sim_id``,
        ``sounding_id`` and ``altitude_ref`` (``agl`` for columns, ``msl`` for
        slants) beside. Times are cut to the whole second (receptors keep no
        fraction of one).
    kernels : pandas.DataFrame or None
        ``receptor`` (the simulation id), ``level`` (``ak_pressure``, hPa) and
        ``value`` (``ak``), one row per kernel level: the ``table`` of an
        ``averaging_kernel`` transform with ``coordinate: pres``. None when the
        soundings have no kernel (GGG ``.oof``).

    Raises
    ------
    ValueError
        For another ``kind``, or a slant without ``altitude_levels``, ``zenith``
        or ``azimuth`` (OCO gives pressures only: add ``altitude_levels`` from
        :func:`pressure_altitudes` first).
    ReceptorError
        Naming the sounding whose receptor is invalid.
    """
    if kind not in ("column", "slant"):
        raise ValueError(f"kind must be 'column' or 'slant', got {kind!r}")
    if kind == "slant":
        missing = [c for c in SLANT_COLUMNS if c not in soundings.columns]
        if missing:
            raise ValueError(
                f"slant receptors need the columns {missing}; for a product with pressures "
                "only (OCO), add altitude_levels from pressure_altitudes first"
            )
    times = pd.to_datetime(soundings["time"]).dt.floor("s")
    ids = soundings["sounding_id"].astype(str).tolist()
    if kind == "column":
        table = pd.DataFrame(
            {
                "sounding_id": ids,
                "time": times.to_numpy(),
                "longitude": soundings["longitude"].to_numpy(dtype=np.float64),
                "latitude": soundings["latitude"].to_numpy(dtype=np.float64),
                "bottom": 0.0,
                "top": float(top),
            }
        )
        reference = "agl"
    else:
        table = _slant_table(soundings, times, ids, float(top))
        reference = "msl"
    # before the receptors are made: whether a receptor is MSL is part of its identity
    table["altitude_ref"] = reference
    receptors = receptor_rows(table, source="soundings")
    sim_ids = [receptor.sim_id for _, receptor in receptors]
    if kind == "slant":
        table["sim_id"] = np.repeat(sim_ids, [len(rows) for rows, _ in receptors])
    else:
        table["sim_id"] = sim_ids
    first, last = ["sim_id", "sounding_id"], ["altitude_ref"]
    table = table[first + [c for c in table.columns if c not in first + last] + last]
    return table, _kernels(soundings, sim_ids)


def _slant_table(
    soundings: pd.DataFrame, times: pd.Series, ids: list[str], top: float
) -> pd.DataFrame:
    parts = []
    for position, row in enumerate(soundings.itertuples(index=False)):
        levels = np.asarray(row.altitude_levels, dtype=np.float64)
        levels = levels[levels < row.surface_altitude + top]
        if levels.size == 0:
            raise ReceptorError(
                f"sounding {ids[position]}: no altitude_levels below surface_altitude + top"
            )
        points = np.array(
            slant_points(
                row.longitude, row.latitude, levels, zenith=row.zenith, azimuth=row.azimuth
            )
        )
        parts.append(
            pd.DataFrame(
                {
                    "sounding_id": ids[position],
                    "time": times.iloc[position],
                    "longitude": points[:, 0],
                    "latitude": points[:, 1],
                    "altitude": points[:, 2],
                    "group": position,
                }
            )
        )
    columns = ["sounding_id", "time", "longitude", "latitude", "altitude", "group"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def _kernels(soundings: pd.DataFrame, sim_ids: list[str]) -> pd.DataFrame | None:
    if "ak" not in soundings.columns or "ak_pressure" not in soundings.columns:
        return None
    levels = [np.asarray(v, dtype=np.float64) for v in soundings["ak_pressure"]]
    values = [np.asarray(v, dtype=np.float64) for v in soundings["ak"]]
    receptor, level, value = KERNEL_TABLE_COLUMNS
    empty = np.empty(0)
    return pd.DataFrame(
        {
            receptor: pd.Series(
                np.repeat(sim_ids, [v.size for v in values]).astype(object), dtype="str"
            ),
            level: np.concatenate(levels) if levels else empty,
            value: np.concatenate(values) if values else empty,
        }
    )
