"""The lazy footprints as the analysis sees them: grid, layer times and blocks.

Stored footprints come one simulation per dask chunk (that is how they are
written). Each analysis task reduces chunks as they are, the arrays themselves
(never a concatenated copy, which for 24-hour 300 x 300 footprints cost more
than the arithmetic); footprints straight from the store are read by the
reducing tasks themselves, several simulations each, as their non-zero cells
(:func:`reduced`). The much smaller results are then grouped, as many
simulations per block as fit in dask's ``array.chunk-size``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from dask._task_spec import Task, TaskRef
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph, Layer
from dask.utils import parse_bytes

from ..store.chunks import Scratch
from ..store.lazy import StoredChunks, StoredReads
from . import timebins

_SPATIAL = (("lat", "lon"), ("y", "x"))


def check_footprint(foot: xr.DataArray) -> tuple[str, str]:
    """The ``(y, x)`` dimension names of a stored footprint, checked.

    Raises
    ------
    ValueError
        If ``foot`` is not ``foot(simulation, lag, lat, lon)`` (or ``y, x``) with
        its ``time(simulation, lag)`` coordinate, as ``Footprint.load()`` gives.
    """
    for dims in _SPATIAL:
        if foot.dims == ("simulation", "lag", *dims) and (
            "time" in foot.coords and foot["time"].dims == ("simulation", "lag")
        ):
            return dims
    raise ValueError(
        "expected stored footprints foot(simulation, lag, lat, lon) (or y, x) with a "
        f"time(simulation, lag) coordinate, as model.footprints[name].load() gives; got {foot.dims}"
    )


def check_hourly(foot: xr.DataArray, what: str) -> None:
    """Refuse ``what`` (something that needs hourly layers) on a time-integrated footprint.

    Raises
    ------
    ValueError
        If the footprint was made with ``time_integrate``: its one layer holds
        every hour of the run, so it cannot meet time-varying fluxes or bins.
    """
    if int(foot.attrs.get("footprint_time_integrate", 0)):
        raise ValueError(
            f"this footprint is time-integrated (one layer for the whole run): {what} needs "
            "hourly layers; use a flux without a time dimension, or no time_bins"
        )


def stored(foot: xr.DataArray) -> da.Array:
    """The footprints' dask array in its stored chunks, with whole grids per chunk.

    Each task reduces the chunk it reads at once (a simulation, as the store
    keeps them), so no task copies footprints into a bigger block first; the
    results are grouped afterwards (:func:`grouped`).
    """
    data = foot.data if isinstance(foot.data, da.Array) else da.from_array(foot.data)
    return data.rechunk({1: -1, 2: -1, 3: -1})


def reduced(
    func: Callable, data: da.Array, bins: np.ndarray, shared: tuple[da.Array, ...],
    shape: tuple[int, ...], *args, combine: Callable = np.concatenate, meta: Any = None,
) -> da.Array:  # fmt: skip
    """``func(chunk, bins, *shared, *args)`` on each chunk of ``data``.

    ``data`` is :func:`stored`'s (whole grids per chunk); ``func`` returns the
    ``(simulations of the chunk, *shape)`` result of a chunk from the chunk and
    its rows of ``bins``. ``shared`` are single-chunk arrays every task takes
    (made once, sent once per worker).

    Footprints straight from the store (``load()``, nothing selected) are read
    by the reducing tasks themselves, several simulations each
    (:func:`per_task`), as their non-zero cells where stored so
    (:class:`~pystilt_dask.store.chunks.Cells`): ``func`` must take those too,
    and ``combine`` joins its results along ``simulation`` (``meta`` is their
    type, float64 arrays by default). So a chunk never leaves the worker that
    read it: with a task reading it and another reducing it, a distributed
    scheduler runs the reduction where its largest input (the flux) is rather
    than where the chunk was read. Any other array (a selection, an array in
    memory) is reduced chunk by chunk, as dask makes them.
    """
    token = tokenize(func, combine, data, bins, shared, args)
    name = f"{getattr(func, '__name__', 'reduce')}-{token}"
    if meta is None:
        meta = np.empty((0,) * (1 + len(shape)), dtype=np.float64)
    reads = data.__dask_graph__().layers.get(data.name)
    if isinstance(reads, StoredReads) and len(reads) == data.numblocks[0]:
        layer = _ReducedReads(name, len(shape), func, combine, reads, bins, shared, args)
        graph = HighLevelGraph.from_collections(name, layer, dependencies=list(shared))
        return da.Array(graph, name, chunks=(layer.chunks, *((n,) for n in shape)), meta=meta)
    layer = _Reduced(name, len(shape), func, data, bins, shared, args)
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[data, *shared])
    return da.Array(graph, name, chunks=(data.chunks[0], *((n,) for n in shape)), meta=meta)


def per_task(n: int) -> int:
    """Simulations read and reduced per task when ``n`` are read straight from the store.

    Up to 64: a task then costs about a millisecond of scheduling (far more on
    worker processes) against ~0.4 ms of reading and reducing each footprint;
    and at least 64 tasks in all while there are simulations for them, to keep
    every worker busy.
    """
    return int(min(64, max(1, n // 64)))


def _reduce_reads(
    func: Callable, combine: Callable, read: StoredChunks, rows: np.ndarray,
    sim_ids: np.ndarray, bins: np.ndarray, *rest,
) -> Any:  # fmt: skip
    """``func`` on each simulation's chunk, read one at a time (the cells where stored so).

    Each chunk's cells are decoded into the memory of the one before, so reading
    allocates nothing per simulation (see :class:`~pystilt_dask.store.chunks.Scratch`).
    """
    scratch = Scratch()
    return combine(
        [
            func(read(int(row), str(sim_id), cells=True, scratch=scratch), bins[j : j + 1], *rest)
            for j, (row, sim_id) in enumerate(zip(rows, sim_ids, strict=True))
        ]
    )


class _ReducedReads(Layer):
    """The tasks of :func:`reduced` on footprints read straight from the store.

    Task ``g`` reads and reduces the simulations ``g * per_task`` onwards, one at
    a time, from their rows and ids (no dependency on any read task); tasks are
    made when the graph is built for a computation.
    """

    def __init__(self, name, ndim, func, combine, reads: StoredReads, bins, shared, args) -> None:
        super().__init__()
        self.tail = (0,) * ndim  # a result's dimensions beside simulation: one chunk each
        self.name, self.func, self.combine, self.reads = name, func, combine, reads
        self.bins = bins
        self.shared, self.args = shared, args
        n = len(reads.rows)
        step = per_task(n)
        self.starts = np.arange(0, n, step)
        self.chunks = tuple(int(k) for k in np.diff(np.append(self.starts, n)))

    def __getitem__(self, key) -> Task:
        if not (isinstance(key, tuple) and key[0] == self.name and key[2:] == self.tail):
            raise KeyError(key)
        g = key[1]
        if not 0 <= g < len(self.starts):
            raise KeyError(key)
        a = int(self.starts[g])
        b = a + self.chunks[g]
        refs = [TaskRef((s.name, *(0,) * s.ndim)) for s in self.shared]
        reads = self.reads
        return Task(
            key, _reduce_reads, self.func, self.combine, reads.chunks, reads.rows[a:b],
            reads.sim_ids[a:b], self.bins[a:b], *refs, *self.args,
        )  # fmt: skip

    def __iter__(self) -> Iterator:
        return ((self.name, g, *self.tail) for g in range(len(self.starts)))

    def __len__(self) -> int:
        return len(self.starts)

    def is_materialized(self) -> bool:
        return False

    def get_output_keys(self) -> set:
        return set(self)


class _Reduced(Layer):
    """The tasks of :func:`reduced` on any other array: one per chunk, its task a dependency.

    Made when the graph is built for a computation, like the store's read layer.
    """

    def __init__(self, name, ndim, func, data, bins, shared, args) -> None:
        super().__init__()
        self.tail = (0,) * ndim
        self.name, self.func, self.data, self.bins = name, func, data, bins
        self.shared, self.args = shared, args
        self._tasks: dict | None = None

    def _dict(self) -> dict:
        if self._tasks is None:
            refs = [TaskRef((a.name, *(0,) * a.ndim)) for a in self.shared]
            starts = np.cumsum((0, *self.data.chunks[0]))
            tail = (0,) * (self.data.ndim - 1)
            tasks = {}
            for i in range(len(starts) - 1):
                key = (self.name, i, *self.tail)
                chunk = TaskRef((self.data.name, i, *tail))
                tasks[key] = Task(
                    key, self.func, chunk, self.bins[starts[i] : starts[i + 1]], *refs, *self.args
                )
            self._tasks = tasks
        return self._tasks

    def __getitem__(self, key) -> Task:
        return self._dict()[key]

    def __iter__(self) -> Iterator:
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self.data.chunks[0])

    def is_materialized(self) -> bool:
        return self._tasks is not None

    def get_output_keys(self) -> set:
        return {(self.name, i, *self.tail) for i in range(len(self))}


def grouped(out: da.Array, bytes_per_sim: int) -> da.Array:
    """``out`` with as many simulations per chunk as fit in dask's ``array.chunk-size``.

    Per-simulation results are far smaller than footprints: blocks of many make
    a result that writes (``to_zarr``) and computes as a few large pieces.
    """
    limit = parse_bytes(dask.config.get("array.chunk-size"))
    return out.rechunk({0: int(max(1, limit // max(bytes_per_sim, 1)))})


def simulation_coords(foot: xr.DataArray) -> dict:
    """The coordinates along ``simulation`` alone (ids, receptor fields).

    Text is variable-length (object) so results write to zarr v3 without warnings.
    """
    coords = {k: v for k, v in foot.coords.items() if v.dims == ("simulation",)}
    return {k: v.astype(object) if v.dtype.kind == "U" else v for k, v in coords.items()}


def footprint_bins(
    foot: xr.DataArray, time_bins: pd.IntervalIndex | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bin edges and the bin of every (simulation, layer); default one bin holding every layer."""
    layer_start = foot["time"].values
    if time_bins is None:
        left = np.array([layer_start.min()], dtype="datetime64[ns]")
        right = np.array([layer_start.max() + np.timedelta64(1, "h")], dtype="datetime64[ns]")
    else:
        check_hourly(foot, "time_bins")
        left, right = timebins.bin_edges(time_bins)
    return left, right, timebins.layer_bins(layer_start, left, right)
