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

from collections.abc import Iterator
from typing import TYPE_CHECKING

import dask.array as da
import numpy as np
import pandas as pd
import pyarrow.compute as pc
import xarray as xr
from dask._task_spec import Task
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph, Layer
from xarray.indexes import PandasIndex

from ..errors import StoreError
from ..footprint.calc import settings_attrs
from . import chunks, footprints
from .paths import Location
from .registry import Registry

if TYPE_CHECKING:
    from ..config import FootprintConfig

_TIME_ATTRS = {"standard_name": "time", "long_name": "start of the footprint layer (UTC)"}


class StoredChunks:
    """Reads footprint ``name``'s chunks from ``location``, one simulation at a time.

    Small and picklable: what each read task (or each task reading several) carries.
    """

    def __init__(self, read: chunks.ChunkReader, location: Location, name: str) -> None:
        self.read, self.location, self.name = read, location, name

    def __call__(
        self, row: int, sim_id: str, cells: bool = False, scratch: chunks.Scratch | None = None
    ) -> np.ndarray | chunks.Cells:
        """The chunk of ``row`` (simulation ``sim_id``), as :class:`~.chunks.ChunkReader` gives it.

        Raises
        ------
        StoreError
            When the chunk is damaged; the message names the simulation.
        """
        try:
            return self.read(self.location, self.name, row, sim_id, cells, scratch)
        except (ValueError, RuntimeError) as exc:
            raise StoreError(
                f"the footprint chunk of simulation {sim_id!r} (row {row}) is damaged "
                f"({type(exc).__name__}: {exc}); run `stilt-dask verify --repair`"
            ) from None


class StoredReads(Layer):
    """The read tasks of :func:`open_footprint`: block ``i`` is simulation ``i``'s chunk.

    Each task carries its own row and id. Tasks are made when a graph is built
    for a computation, and culling keeps only the simulations asked for, so a
    million simulations cost nothing until read. Reductions that read the
    chunks themselves (``pystilt_dask.analysis.blocks.reduced``) take
    :attr:`chunks`, :attr:`rows` and :attr:`sim_ids` from here instead of these
    tasks.
    """

    def __init__(
        self,
        name: str,
        stored: StoredChunks,
        rows: np.ndarray,
        sim_ids: np.ndarray,
        ndim: int,
        blocks: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.name, self.chunks, self.ndim = name, stored, ndim
        self.rows, self.sim_ids = rows, sim_ids
        #: The block (simulation) index of each row kept, increasing.
        self.blocks = np.arange(len(rows)) if blocks is None else blocks

    def _key(self, i: int) -> tuple:
        return (self.name, int(i), *(0,) * (self.ndim - 1))

    def _position(self, key) -> int:
        if isinstance(key, tuple) and len(key) == self.ndim + 1 and key[0] == self.name:
            k = int(np.searchsorted(self.blocks, key[1]))
            if k < len(self.blocks) and self.blocks[k] == key[1]:
                return k
        raise KeyError(key)

    def __getitem__(self, key) -> Task:
        k = self._position(key)
        return Task(key, self.chunks, int(self.rows[k]), str(self.sim_ids[k]))

    def __iter__(self) -> Iterator:
        return (self._key(b) for b in self.blocks)

    def __len__(self) -> int:
        return len(self.blocks)

    def is_materialized(self) -> bool:
        return False

    def get_output_keys(self) -> set:
        return set(self)

    def cull(self, keys: set, all_hlg_keys) -> tuple[StoredReads, dict]:
        kept = sorted(
            {self._position(k) for k in keys if isinstance(k, tuple) and k[0] == self.name}
        )
        layer = StoredReads(
            self.name, self.chunks, self.rows[kept], self.sim_ids[kept], self.ndim,
            self.blocks[kept],
        )  # fmt: skip
        return layer, {k: set() for k in layer}


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
    stored = StoredChunks(chunks.chunk_reader(array), location, name)
    key = f"stilt-foot-{token}"
    layer = StoredReads(key, stored, np.asarray(rows), sim_ids, array.ndim)
    blocks = ((1,) * len(rows), *((n,) for n in array.shape[1:]))
    meta = np.empty((0,) * array.ndim, dtype=array.dtype)
    graph = HighLevelGraph.from_collections(key, layer)
    data = da.Array(graph, key, chunks=blocks, dtype=array.dtype, meta=meta)

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
