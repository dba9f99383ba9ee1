"""GGG2020 output: TCCON public netCDF, a run's private netCDF, and ``.oof`` text files."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd

from ._netcdf import decoded, open_product, raw, text
from ._table import azimuth, rows, soundings_table

#: Standard atmospheres to hPa (GGG priors give pressure in atm).
_ATM_HPA = 1013.25
#: Parts -> the species' units, for a private file's priors (stored in parts).
_PER_PART = {"ppm": 1 / 1e-6, "ppb": 1 / 1e-9}
_UNITS = re.compile(r"^(?P<name>[^()]+)(?:\((?P<units>[^)]*)\))?(?P<error>_error)?$")


def read_ggg_netcdf(
    path: str | Path, species: str, *, time_range: tuple[Any, Any] | None = None
) -> pd.DataFrame:
    """Read a GGG2020 netCDF file, a run's ``*.private.nc`` or a TCCON public file.

    A public file (``*.public.nc``, ``*.public.qc.nc``) stores each spectrum's
    averaging kernel; a private file stores a kernel table over slant xgas,
    which is interpolated at each spectrum's slant xgas (the value times the
    O2-window airmass ``o2_7885_am_o2``) as GGG's public writer does, and
    held at the table's end values beyond it.

    Parameters
    ----------
    path : str or Path
        The netCDF file, a local path or an fsspec URL.
    species : str
        The column to read: ``xco2``, ``xch4``, ``xco``, ``xn2o`` or ``xh2o``.
    time_range : tuple, optional
        ``(start, stop)``, anything :class:`pandas.Timestamp` reads; only spectra
        in it (ends included) are kept.

    Returns
    -------
    pandas.DataFrame
        One row per spectrum, with the :data:`SOUNDING_SCHEMA` columns: ``value``
        and ``uncertainty`` in the file's units, ``good`` is ``flag == 0`` (all
        True in a qc file, which has no flag), ``ak`` on the site's fixed
        ``ak_pressure`` grid (hPa), ``ak_extrapolated`` where the kernel lay
        beyond GGG's table, ``apriori`` (species' units, as the file stores it)
        on ``pressure_levels`` (hPa) and ``altitude_levels`` (m above sea level)
        from sea level up, ``surface_altitude`` the instrument's, and ``zenith``
        and ``azimuth`` the sun's. ``sounding_id`` is the spectrum's name, or
        ``<site>_<yyyymmddTHHMMSS>`` in files without names.
    """
    with open_product(path) as f:
        if species not in f.variables:
            raise ValueError(f"{path} has no {species!r} column")
        times = pd.to_datetime(raw(f["time"]), unit="s")
        keep = np.ones(len(times), dtype=bool)
        if time_range is not None:
            start, stop = (pd.Timestamp(t) for t in time_range)
            keep = np.asarray((times >= start) & (times <= stop))
        keep = np.flatnonzero(keep)
        times = times[keep]

        def get(name: str) -> np.ndarray:
            return decoded(f[name], keep)

        value = get(species)
        units = str(f[species].attrs.get("units", ""))
        if "spectrum" in f.variables:
            names = list(text(f["spectrum"], keep))
        else:
            site = str(f.attrs.get("long_name", "site"))
            names = [f"{site}_{t:%Y%m%dT%H%M%S}" for t in times]
        ak, extrapolated = _kernels(f, species, keep, value)
        pressure, prior = _priors(f, species, keep, units)
        n = len(keep)
        altitude = decoded(f["prior_altitude"]) * 1000.0
        levels = {
            "ak_pressure": rows(np.broadcast_to(decoded(f["ak_pressure"]), (n, altitude.size))),
            "ak": rows(ak),
            "ak_extrapolated": extrapolated,
            "pressure_levels": rows(pressure),
            "altitude_levels": rows(np.broadcast_to(altitude, (n, altitude.size))),
            "apriori": rows(prior),
        }
        good = raw(f["flag"], keep) == 0 if "flag" in f.variables else np.ones(n, bool)
        return _spectra(
            get, species, units, names=names, times=times, value=value, good=good, levels=levels
        )


#: PYSTILT's name for :func:`read_ggg_netcdf` on TCCON public files.
read_tccon = read_ggg_netcdf


def _kernels(
    f: Any, species: str, keep: np.ndarray, value: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each spectrum's kernel and whether it lay beyond GGG's kernel table."""
    table = decoded(f[f"ak_{species}"])
    bins_name = f"ak_slant_{species}_bin"
    if bins_name not in f.variables:  # public: one kernel per spectrum
        table = table[keep]
        flags_name = f"extrapolation_flags_ak_{species}"
        if flags_name in f.variables:
            return table, raw(f[flags_name], keep) != 0
        return table, np.zeros(len(keep), dtype=bool)
    bins = decoded(f[bins_name])
    slant = value * decoded(f["o2_7885_am_o2"], keep)
    order = np.argsort(bins)
    ak = np.stack([np.interp(slant, bins[order], level[order]) for level in table], axis=1)
    return ak, (slant < bins.min()) | (slant > bins.max())


def _priors(f: Any, species: str, keep: np.ndarray, units: str) -> tuple[np.ndarray, np.ndarray]:
    """Each spectrum's prior pressures (hPa) and prior profile (species' units)."""
    gas = species[1:]
    if "prior_index" in f.variables:  # private: priors per prior time, chosen by index
        which = raw(f["prior_index"], keep)
        pressure = decoded(f["prior_pressure"])[which]
        prior = decoded(f[f"prior_1{gas}"])[which] * _PER_PART.get(units, 1.0)
    else:
        pressure = decoded(f["prior_pressure"], keep)
        prior = decoded(f[f"prior_{gas}"], keep)
    return pressure * _ATM_HPA, prior


def read_ggg_oof(path: str | Path, species: str) -> pd.DataFrame:
    """Read a GGG2020 ``.oof`` file (``*.vav.ada.aia.oof``, one instrument-day) into soundings.

    An ``.oof`` carries no averaging kernel or prior, so the kernel columns are
    absent (take them from the run's ``*.private.nc``, :func:`read_ggg_netcdf`).

    Parameters
    ----------
    path : str or Path
        The ``.oof`` file, a local path or an fsspec URL.
    species : str
        The column to read, e.g. ``xch4``, ``xco2``, ``xco``.

    Returns
    -------
    pandas.DataFrame
        One row per spectrum: ``value`` and ``uncertainty`` in the units the
        column's header gives (``xch4(ppm)``: ppm), ``good`` is ``flag == 0``,
        ``sounding_id`` the spectrum's name, ``time`` from ``year``, ``day`` and
        UT ``hour``, ``surface_altitude`` (m) and ``surface_pressure`` (hPa) the
        instrument's, ``zenith`` and ``azimuth`` the sun's. Then ``flag``,
        ``zmin`` (km) and the file's other ``x<gas>`` columns and their errors,
        named without units. The file's missing value reads as NaN.
    """
    with fsspec.open(str(path), "rt") as handle:
        content = handle.read()
    lines = content.splitlines()
    nhead = int(lines[0].split()[0])
    missing = next(
        (float(line.split(":", 1)[1]) for line in lines[1:nhead] if line.startswith("missing:")),
        None,
    )
    header = lines[nhead - 1].split()
    table = pd.read_csv(
        io.StringIO("\n".join(lines[nhead:])),
        sep=r"\s+",
        header=None,
        names=header,
        dtype={"spectrum": str},
    )
    parsed = {column: _UNITS.match(column) for column in header}
    by_name = {
        m["name"] + (m["error"] or ""): column for column, m in parsed.items() if m is not None
    }
    if species not in by_name or f"{species}_error" not in by_name:
        raise ValueError(f"{path} has no {species!r} column")
    units = parsed[by_name[species]]["units"] or ""

    def get(name: str) -> np.ndarray:
        values = table[by_name[name]].to_numpy(dtype=np.float64)
        if missing is not None:
            values = np.where(values == missing, np.nan, values)
        return values

    days = pd.to_timedelta(get("day") - 1, unit="D") + pd.to_timedelta(get("hour"), unit="h")
    year = table[by_name["year"]].astype(int).astype(str)
    flag = table[by_name["flag"]].to_numpy(dtype=np.int64)
    names = table[by_name["spectrum"]].astype(str).tolist()
    times = pd.to_datetime(year, format="%Y").to_numpy() + days.to_numpy()
    table_out = _spectra(
        get, species, units, names=names, times=times, value=get(species), good=flag == 0, levels={}
    )
    table_out["flag"] = flag
    table_out["zmin"] = get("zmin")
    for name in by_name:
        if name.startswith("x") and name not in (species, f"{species}_error"):
            table_out[name] = get(name)
    return table_out


def _spectra(
    get: Callable[[str], np.ndarray],
    species: str,
    units: str,
    *,
    names: list[str],
    times: Any,
    value: np.ndarray,
    good: np.ndarray,
    levels: dict[str, object],
) -> pd.DataFrame:
    """A table of spectra from the variables both GGG formats name alike.

    ``get`` reads a variable of every spectrum kept (``long``, ``lat``, ``zobs``
    in km, ``pout``, ``solzen``, ``azim``, ``<species>_error``); ``levels``, the
    kernel and prior columns of a netCDF file, go between ``good`` and the sun's
    angles, where PYSTILT puts them.
    """
    zenith, sun = get("solzen"), azimuth(get("azim"))
    columns: dict[str, object] = {
        "sounding_id": names,
        "time": times,
        "longitude": get("long"),
        "latitude": get("lat"),
        "surface_altitude": get("zobs") * 1000.0,
        "surface_pressure": get("pout"),
        "zenith": zenith,
        "azimuth": sun,
        "value": value,
        "uncertainty": get(f"{species}_error"),
        "good": good,
        **levels,
        "solar_zenith": zenith,
        "solar_azimuth": sun,
    }
    return soundings_table(columns, species, units)
