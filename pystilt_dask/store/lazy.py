"""Footprints as lazy xarray objects, labelled by the registry.

The ``simulation`` axis, its ids and its times come from the registry, not from
the coordinates stored beside the array (those serve plain ``xarray.open_zarr``
readers), so what :func:`open_footprint` returns can never carry the wrong ids.
Each simulation is one dask task reading its own chunk; a chunk that cannot be
decoded raises an error naming its simulation. The footprint settings are
attributes (``footprint_xmin``, ``footprint_projection``, …) as on a
:func:`~pystilt_dask.footprint.calc_footprint` result, so one simulation of it is
what :func:`~pystilt_dask.footprint.to_rstilt_netcdf` writes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from ..errors import StoreError
from ..footprint.calc import settings_attrs
from . import footprints
from .paths import Location
from .registry import Registry

if TYPE_CHECKING:
    from ..config import FootprintConfig

_TIME_ATTRS = {"standard_name": "time", "long_name": "start of the footprint layer (UTC)"}


def _read_row(
    read: footprints.ChunkReader, location: Location, name: str, row: int, sim_id: str
) -> np.ndarray:
    try:
        return read(location, name, row)
    except (ValueError, RuntimeError) as exc:
        raise StoreError(
            f"the footprint chunk of simulation {sim_id!r} (row {row}) is damaged "
            f"({type(exc).__name__}: {exc}); run `stilt-dask verify --repair`"
        ) from None


def open_footprint(
    location: Location, name: str, registry: Registry, config: FootprintConfig
) -> xr.DataArray:
    """Open footprint ``name`` (made with ``config``) of every simulation in ``registry``, lazily.

    See :meth:`pystilt_dask.model.Footprint.load` for what it holds.
    """
    group = footprints.read_group(location, name)
    array = footprints.foot_array(location, name, registry.next_row, read_only=True)
    rows, sim_ids = registry.rows, registry.sim_ids
    token = tokenize(location.url(), name, rows, sim_ids)
    key = f"stilt-foot-{token}"
    read = footprints.chunk_reader(array)
    graph = {
        (key, i, 0, 0, 0): (_read_row, read, location, name, row, sim_id)
        for i, (row, sim_id) in enumerate(zip(rows.tolist(), sim_ids, strict=True))
    }
    chunks = ((1,) * len(rows), *((n,) for n in array.shape[1:]))
    data = da.Array(graph, key, chunks, meta=np.empty((0,) * array.ndim, dtype=array.dtype))

    table = registry.table
    dims = array.metadata.dimension_names
    lag = group["lag"].values
    receptor_time = table["time"].to_numpy("datetime64[ns]")
    coords = {
        "simulation": ("simulation", np.asarray(sim_ids, dtype=object)),
        "time": (
            ("simulation", "lag"),
            receptor_time[:, None] + lag[None, :].astype("timedelta64[h]"),
            _TIME_ATTRS,
        ),
        **{f"receptor_{field}": ("simulation", table[field].to_numpy()) for field in
           ("time", "longitude", "latitude", "altitude", "bottom", "top")},
        "receptor_kind": ("simulation", table["kind"].to_numpy(str)),
        "scene_id": ("simulation", table["scene_id"].fillna("").to_numpy(str)),
        "met": ("simulation", table["met"].to_numpy(str)),
    }  # fmt: skip
    attrs = {k: v for k, v in array.attrs.items() if k != "coordinates"}
    attrs.update(settings_attrs(config))  # as calc_footprint records them
    foot = xr.DataArray(data, dims=dims, coords=coords, name="foot", attrs=attrs)
    return foot.assign_coords({v: group[v] for v in group.variables if v not in foot.coords})
