"""Write a footprint in R-STILT's netCDF layout (``write_footprint.r``).

R-STILT's downstream code (``raster::brick``, ``ncdf4`` scripts, inversion
systems built on them) reads ``<sim_id>_foot.nc`` files with ``foot(time, lat,
lon)`` float32, ``_FillValue = -1``, uncompressed, time in seconds since 1970,
and the global attributes ``crs``, ``crs_format``, ``documentation``, ``title``
and ``time_created``. This module writes exactly that, from a fresh
:func:`calc_footprint` result or from one simulation of a stored footprint
(whose ``lag`` layers become R-STILT's ``time`` layers, those without influence
dropped as R-STILT drops them), to a local path or an fsspec URL.
"""

from __future__ import annotations

import os
import tempfile
import uuid
import warnings
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path

import fsspec
import netCDF4
import numpy as np
import xarray as xr
from pyproj import CRS

from .calc import is_empty
from .crs import cf_units, is_geographic

_RSTILT_UNITS = "ppm (umol-1 m2 s)"
_EPOCH = np.datetime64("1970-01-01T00:00:00", "ns")


def to_rstilt_netcdf(foot: xr.DataArray, path: str | PathLike[str]) -> None:
    """Write one footprint as R-STILT writes ``<sim_id>_foot.nc``.

    Parameters
    ----------
    foot : xarray.DataArray
        A footprint from :func:`calc_footprint`, or one simulation of a stored
        footprint (``model.footprints[name].load().sel(simulation=sim_id)``,
        see :meth:`pystilt_dask.model.Footprint.to_rstilt_netcdf`); longlat or
        projected. A stored footprint's layers that no particle reached are
        left out, as ``calc_footprint`` and R-STILT leave them out, so both
        give the same file.
    path : str or path-like
        Destination file or fsspec URL; replaced if present. A local file is
        written beside it and renamed into place, so it is never seen half written.

    Raises
    ------
    ValueError
        If the footprint is empty: R-STILT writes no file then (its caller logs
        "No non-zero footprint values found within the footprint domain."); if
        it holds several simulations, or one never computed.

    Notes
    -----
    On projected grids R-STILT adds a scalar ``projection`` variable with
    ``grid_mapping_name`` from its own lookup table, which misspells
    ``lambert_azimuthal_equal_area`` and has no entry for ``utm``. The
    attributes here come from pyproj's CF conversion instead, so both are
    named correctly; R readers use the global ``crs`` attribute regardless.
    """
    foot = _rstilt_layers(foot)
    if is_empty(foot):
        raise ValueError("an empty footprint has no R-STILT file (R-STILT writes none)")
    target = os.fspath(path)
    if "://" in target and not target.startswith("file://"):
        # netCDF4 writes local files only: write one, then upload it whole.
        with tempfile.TemporaryDirectory() as scratch:
            local = Path(scratch) / "foot.nc"
            _write(foot, local)
            with open(local, "rb") as src, fsspec.open(target, "wb") as dst:
                dst.write(src.read())
        return
    final = Path(target.removeprefix("file://"))
    partial = final.with_name(f"{final.name}.{uuid.uuid4().hex}.partial")
    try:
        _write(foot, partial)
        partial.replace(final)
    finally:
        partial.unlink(missing_ok=True)


def _rstilt_layers(foot: xr.DataArray) -> xr.DataArray:
    """``foot(time, y, x)`` as ``calc_footprint`` gives it, also from a stored simulation."""
    if "simulation" in foot.dims:
        raise ValueError(
            f"select one simulation first (the footprint holds {foot.sizes['simulation']}): "
            "foot.sel(simulation=sim_id)"
        )
    if "lag" not in foot.dims:
        return foot
    foot = foot.swap_dims(lag="time").drop_vars("lag").load()
    values = foot.values
    if np.isnan(values).any():
        sim_id = foot.coords["simulation"].item() if "simulation" in foot.coords else "?"
        raise ValueError(f"simulation {sim_id!r} has no computed footprint (it reads as NaN)")
    # The store keeps every lag; R-STILT (and calc_footprint) only the layers reached.
    return foot.isel(time=np.flatnonzero(values.any(axis=(1, 2))))


def _write(foot: xr.DataArray, path: Path) -> None:
    projection = foot.attrs["footprint_projection"]
    longlat = is_geographic(projection)
    x_dim, y_dim = ("lon", "lat") if longlat else ("x", "y")
    seconds = (foot["time"].values - _EPOCH) / np.timedelta64(1, "s")

    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        for name, size in ((x_dim, foot.sizes[x_dim]), (y_dim, foot.sizes[y_dim])):
            nc.createDimension(name, size)
        nc.createDimension("time", seconds.size)
        if longlat:
            _coordinate(
                nc,
                "lon",
                foot["lon"].values,
                "degrees_east",
                "longitude",
                "longitude at cell center",
            )
            _coordinate(
                nc,
                "lat",
                foot["lat"].values,
                "degrees_north",
                "latitude",
                "latitude at cell center",
            )
        else:
            units = cf_units(projection)
            _coordinate(
                nc,
                "x",
                foot["x"].values,
                units,
                "projection_x_coordinate",
                "x coordinate of projection",
            )
            _coordinate(
                nc,
                "y",
                foot["y"].values,
                units,
                "projection_y_coordinate",
                "y coordinate of projection",
            )
        time = nc.createVariable("time", "f8", ("time",))
        time.units = "seconds since 1970-01-01 00:00:00Z"
        time[:] = seconds
        values = nc.createVariable("foot", "f4", ("time", y_dim, x_dim), fill_value=-1.0)
        values.units = _RSTILT_UNITS
        if not longlat:
            mapping = nc.createVariable("projection", "f4", ())
            mapping.setncatts(
                {
                    k: v
                    for k, v in CRS.from_user_input(projection).to_cf().items()
                    if not isinstance(v, dict | list)
                }
            )
            values.grid_mapping = "projection"
        values[:] = foot.values.astype(np.float32, copy=False)
        time.standard_name = "time"
        time.long_name = "utc time"
        time.calendar = "standard"
        values.standard_name = "footprint"
        values.long_name = "stilt surface influence footprint"
        nc.setncatts(
            {
                "crs": _proj4(projection),
                "crs_format": "PROJ.4",
                "documentation": "github.com/uataq/stilt",
                "title": "STILT Footprint",
                "time_created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            }
        )


def _proj4(projection: str) -> str:
    """The projection as a PROJ.4 string, as R-STILT's ``crs`` attribute holds it."""
    if projection.lstrip().startswith("+"):
        return projection  # already PROJ.4: kept exactly as the user wrote it
    with warnings.catch_warnings():
        # pyproj warns that PROJ.4 strings can lose datum details; R-STILT reads no more.
        warnings.simplefilter("ignore", UserWarning)
        return CRS.from_user_input(projection).to_proj4().replace(" +type=crs", "")


def _coordinate(
    nc: netCDF4.Dataset, name: str, values: np.ndarray, units: str, standard: str, long: str
) -> None:
    var = nc.createVariable(name, "f8", (name,))
    var.units = units
    var.standard_name = standard
    var.long_name = long
    var[:] = values
