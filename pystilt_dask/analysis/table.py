"""The enhancement table a command line asks for: one row per simulation."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import xarray as xr

from .convolve import convolve

if TYPE_CHECKING:
    from ..model import Model

COLUMNS = [
    "receptor_time", "receptor_longitude", "receptor_latitude", "receptor_altitude",
    "receptor_kind", "enhancement",
]  # fmt: skip


def open_flux(
    path: str | Path, variable: str | None = None, **storage_options: Any
) -> xr.DataArray:
    """Open a flux field (NetCDF or zarr; a path or fsspec URL), lazily.

    Raises
    ------
    ValueError
        If ``variable`` is not given and the file holds other than one variable,
        or names a variable the file lacks.
    """
    path = str(path)
    if path.rstrip("/").endswith(".zarr"):
        ds = xr.open_zarr(
            path, storage_options=storage_options or None, chunks={}, consolidated=False
        )
    elif "://" in path:
        import fsspec

        ds = xr.open_dataset(fsspec.open(path, **storage_options).open(), chunks={})
    else:
        ds = xr.open_dataset(path, chunks={})
    names = list(ds.data_vars)
    if variable is None:
        if len(names) != 1:
            raise ValueError(
                f"{path} holds {len(names)} variables ({', '.join(names)}); name the flux variable"
            )
        variable = names[0]
    if variable not in ds:
        raise ValueError(f"{path} has no variable {variable!r} ({', '.join(names)})")
    return ds[variable]


def enhancement_table(
    model: Model, footprint: str, flux: str | Path | xr.DataArray, variable: str | None = None
) -> pd.DataFrame:
    """Every simulation's modelled enhancement for a flux, as a table; computes it.

    Runs on the active Dask client if there is one (else dask's default scheduler).

    Parameters
    ----------
    model : pystilt_dask.Model
        The project.
    footprint : str
        Name of the footprint (a key of ``config.footprints``).
    flux : path, fsspec URL or xarray.DataArray
        The flux in µmol m⁻² s⁻¹: ``(time, lat, lon)`` or ``(lat, lon)``, on the
        footprint's grid or any rectilinear grid (see :meth:`FootprintAccessor.convolve
        <pystilt_dask.accessor.FootprintAccessor.convolve>`).
    variable : str, optional
        The flux variable in the file; needed when it holds several.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``simulation``: the receptor's time, position and kind, and
        ``enhancement`` in ppm (NaN for simulations not computed yet).
    """
    field = flux if isinstance(flux, xr.DataArray) else open_flux(flux, variable)
    enhancement = convolve(model.footprints[footprint].load(), field).compute()
    return enhancement.to_dataframe()[COLUMNS]
