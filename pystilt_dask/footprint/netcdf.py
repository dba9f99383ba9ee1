"""Write a footprint in R-STILT's netCDF layout (``write_footprint.r``).

R-STILT's downstream code (``raster::brick``, ``ncdf4`` scripts, inversion
systems built on them) reads ``<sim_id>_foot.nc`` files with ``foot(time, lat,
lon)`` float32, ``_FillValue = -1``, uncompressed, time in seconds since 1970,
and the global attributes ``crs``, ``crs_format``, ``documentation``, ``title``
and ``time_created``. This module writes exactly that.
"""

from __future__ import annotations

from datetime import UTC, datetime
from os import PathLike

import netCDF4
import numpy as np
import xarray as xr
from pyproj import CRS

from .calc import is_empty

_RSTILT_UNITS = "ppm (umol-1 m2 s)"
_EPOCH = np.datetime64("1970-01-01T00:00:00", "ns")


def to_rstilt_netcdf(foot: xr.DataArray, path: str | PathLike[str]) -> None:
    """Write a footprint from :func:`calc_footprint` as R-STILT writes ``*_foot.nc``.

    Parameters
    ----------
    foot : xarray.DataArray
        A footprint from :func:`calc_footprint` (longlat or projected).
    path : str or path-like
        Destination file; overwritten if present.

    Raises
    ------
    ValueError
        If the footprint is empty: R-STILT writes no file then (its caller logs
        "No non-zero footprint values found within the footprint domain.").

    Notes
    -----
    On projected grids R-STILT adds a scalar ``projection`` variable with
    ``grid_mapping_name`` from its own lookup table, which misspells
    ``lambert_azimuthal_equal_area`` and has no entry for ``utm``. The
    attributes here come from pyproj's CF conversion instead, so both are
    named correctly; R readers use the global ``crs`` attribute regardless.
    """
    if is_empty(foot):
        raise ValueError("an empty footprint has no R-STILT file (R-STILT writes none)")
    projection = foot.attrs["footprint_projection"]
    longlat = "lon" in foot.dims
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
            _coordinate(
                nc,
                "x",
                foot["x"].values,
                "m",
                "projection_x_coordinate",
                "x coordinate of projection",
            )
            _coordinate(
                nc,
                "y",
                foot["y"].values,
                "m",
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
                "crs": projection,
                "crs_format": "PROJ.4",
                "documentation": "github.com/uataq/stilt",
                "title": "STILT Footprint",
                "time_created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            }
        )


def _coordinate(
    nc: netCDF4.Dataset, name: str, values: np.ndarray, units: str, standard: str, long: str
) -> None:
    var = nc.createVariable(name, "f8", (name,))
    var.units = units
    var.standard_name = standard
    var.long_name = long
    var[:] = values
