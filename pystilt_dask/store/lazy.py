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

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pyarrow.compute as pc
import xarray as xr
from dask.base import tokenize
from xarray.indexes import PandasIndex

from ..errors import StoreError
from ..footprint.calc import settings_attrs
from . import chunks, footprints
from .paths import Location
from .registry import Registry

if TYPE_CHECKING:
    from ..config import FootprintConfig

_TIME_ATTRS = {"standard_name": "time", "long_name": "start of the footprint layer (UTC)"}


def _read_row(
    read: chunks.ChunkReader, location: Location, name: str, row: int, sim_id: str
) -> np.ndarray:
    try:
        return read(location, name, row, sim_id)
    except (ValueError, RuntimeError) as exc:
        raise StoreError(
            f"the footprint chunk of simulation {sim_id!r} (row {row}) is damaged "
            f"({type(exc).__name__}: {exc}); run `stilt-dask verify --repair`"
        ) from None


def _read_block(
    read: chunks.ChunkReader,
    location: Location,
    name: str,
    rows_and_ids: tuple[np.ndarray, np.ndarray],
    block_id: tuple[int, ...],
) -> np.ndarray:
    rows, sim_ids = rows_and_ids
    i = block_id[0]
    return _read_row(read, location, name, int(rows[i]), sim_ids[i])


def open_footprint(
    location: Location, name: str, registry: Registry, config: FootprintConfig
) -> xr.DataArray:
    """Open footprint ``name`` (made with ``config``) of every simulation in ``registry``, lazily.

    See :meth:`pystilt_dask.model.Footprint.load` for what it holds.
    """
    group = footprints.read_group(location, name)
    array = footprints.foot_array(location, name, registry.next_row, read_only=True)
    rows = registry.rows
    ids = registry.entries["sim_id"].combine_chunks()
    sim_ids = ids.to_numpy(zero_copy_only=False)
    # The ids' Arrow buffers stand for them: tokenizing a million strings one by one
    # cost seconds.
    buffers = [bytes(b) for b in ids.buffers() if b is not None]
    token = tokenize(location.url(), name, rows, ids.offset, *buffers)
    read = chunks.chunk_reader(array)
    blocks = ((1,) * len(rows), *((n,) for n in array.shape[1:]))
    # One block per simulation, made when the graph is built for a computation (a
    # blockwise layer), not a million tasks up front.
    # The rows and ids travel as one key, sent to each worker once, not inside every
    # task (380 kB a task at 10^4 simulations made worker processes 14x slower).
    rows_and_ids = dask.delayed((rows, sim_ids), name=f"stilt-foot-rows-{token}", pure=True)
    data = da.map_blocks(
        _read_block, read, location, name, rows_and_ids, name=f"stilt-foot-{token}",
        chunks=blocks, dtype=array.dtype, meta=np.empty((0,) * array.ndim, dtype=array.dtype),
    )  # fmt: skip

    entries = registry.entries
    dims = array.metadata.dimension_names
    lag = group["lag"].values
    receptor_time = entries["time"].to_numpy().astype("datetime64[ns]")
    # In integer nanoseconds: datetime arithmetic checks every element for NaT.
    hours = lag.astype("timedelta64[h]").astype("timedelta64[ns]").astype(np.int64)
    layer_time = (receptor_time.view(np.int64)[:, None] + hours[None, :]).view("datetime64[ns]")

    def text(column: str, missing: str = "") -> np.ndarray:
        # Few distinct values (kinds, mets, scenes): each converted once, then indexed.
        coded = pc.dictionary_encode(pc.fill_null(entries[column], missing)).combine_chunks()
        values = np.asarray(coded.dictionary.to_pylist(), dtype=str)
        return values[coded.indices.to_numpy()]

    coords = {
        "time": (("simulation", "lag"), layer_time, _TIME_ATTRS),
        "receptor_time": ("simulation", entries["time"].to_numpy()),
        **{f"receptor_{field}": ("simulation", pc.fill_null(entries[field], np.nan).to_numpy())
           for field in ("longitude", "latitude", "altitude", "bottom", "top")},
        "receptor_kind": ("simulation", text("kind")),
        "scene_id": ("simulation", text("scene_id")),
        "sounding_id": ("simulation", text("sounding_id")),
        "altitude_ref": ("simulation", text("altitude_ref", "agl")),  # older entries: agl
        "met": ("simulation", text("met")),
    }  # fmt: skip
    attrs = {k: v for k, v in array.attrs.items() if k != "coordinates"}
    attrs.update(settings_attrs(config))  # as calc_footprint records them
    # The ids' index given as one: xarray checks an object array's every element
    # (1.5 s for a million ids). Its hash table is built at the first lookup.
    index = pd.Index(sim_ids, dtype=object, copy=False, name="simulation")
    ids_coord = xr.Coordinates.from_xindex(PandasIndex(index, "simulation"))
    # Assigned rather than given to the constructor, which deep-copies every coordinate.
    foot = xr.DataArray(data, dims=dims, name="foot", attrs=attrs).assign_coords(ids_coord)
    foot = foot.assign_coords(coords)
    return foot.assign_coords({v: group[v] for v in group.variables if v not in foot.coords})
