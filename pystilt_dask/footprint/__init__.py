"""Footprints: R-STILT's ``calc_footprint`` on numba kernels, and its netCDF layout."""

from .calc import UNITS, calc_footprint, footprint_layers, is_empty
from .grid import Grid
from .netcdf import to_rstilt_netcdf

__all__ = [
    "UNITS",
    "Grid",
    "calc_footprint",
    "footprint_layers",
    "is_empty",
    "to_rstilt_netcdf",
]
