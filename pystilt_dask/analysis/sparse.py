"""The Jacobian as blocks of sparse rows, for inversions with many observations.

:func:`sparse_jacobian` reduces every stored footprint to its sparse row (one
task per stored chunk, :func:`.kernels.aggregate_targets_block` into one dense
row at a time), so no dense block of rows is ever made, and groups the rows
into blocks of :data:`ROWS_PER_BLOCK` simulations: a dask array whose chunks
are ``scipy.sparse.csr_array``. A :class:`SparseJacobian` labels it (rows:
simulations and their receptors; columns: time bin and target) and gives the
products an iterative solver needs, lazily: ``H @ x`` and ``H.T @ y``.

On disk (:meth:`SparseJacobian.to_parquet`, :func:`read_jacobian`) a Jacobian
is a folder (or fsspec URL) holding ``rows.parquet`` (simulation ids and
receptor fields), ``columns.parquet`` (each column's time bin and target),
``blocks/<n>.parquet`` (each block's non-zero ``row, col, value``, written by
the task that holds the block) and, written last, ``jacobian.json`` (shape and
rows per block). Every file is written atomically, and a folder without
``jacobian.json`` is not a Jacobian.
"""

from __future__ import annotations

import functools
import io
import json
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import xarray as xr
from scipy import sparse

from ..store.paths import Location
from . import blocks, targets
from .kernels import aggregate_targets_block

#: Simulations per block of a :class:`SparseJacobian` (one Parquet file each).
ROWS_PER_BLOCK = 256
FORMAT = "pystilt_dask sparse jacobian 1"
_META = sparse.csr_array((0, 0))


class SparseJacobian:
    """A Jacobian H (simulations × state elements) as blocks of sparse rows, lazy.

    Made by ``foot.stilt.jacobian(target, time_bins, sparse=True)`` or
    :func:`read_jacobian`. Row ``i`` is simulation ``rows.index[i]``; column
    ``j`` is time bin ``columns[j][0]`` and target ``columns[j][1:]``, so that
    ``H @ x`` is the enhancement of every simulation for a flux ``x`` on the
    targets and bins (flattened time bin first).

    A simulation not computed yet is a row whose values are unknown. It is
    stored as one NaN (in column 0) rather than a row of them, and the products
    here read that marker as "unknown everywhere": ``H @ x`` is NaN in its row,
    and ``H.T @ y`` is NaN in every column (the row could contribute to any),
    as they would be with the row dense with NaN. The matrix of
    :meth:`to_scipy` keeps the marker as it is: drop those rows (or wait for
    their simulations) before solving.

    Attributes
    ----------
    data : dask.array.Array
        ``(simulation, state)``, chunks of :data:`ROWS_PER_BLOCK` rows, each a
        ``scipy.sparse.csr_array``.
    rows : pandas.DataFrame
        Indexed by ``simulation``: the receptor fields of each row.
    columns : pandas.MultiIndex
        The time bin (``time``, its start) and target of each column.
    """

    def __init__(self, data: da.Array, rows: pd.DataFrame, columns: pd.MultiIndex) -> None:
        if data.shape != (len(rows), len(columns)):
            raise ValueError(
                f"a Jacobian of shape {data.shape} needs {data.shape[0]} rows and "
                f"{data.shape[1]} columns, not {len(rows)} and {len(columns)}"
            )
        self.data = data
        self.rows = rows
        self.columns = columns

    def __repr__(self) -> str:
        return (
            f"<SparseJacobian {self.shape[0]} simulations x {self.shape[1]} state elements, "
            f"{self.data.numblocks[0]} blocks; columns {list(self.columns.names)}>"
        )

    @property
    def shape(self) -> tuple[int, int]:
        """``(simulations, state elements)``."""
        return self.data.shape

    @property
    def T(self) -> _Transposed:  # noqa: N802 (the usual name of a transpose)
        """Hᵀ, for products only: ``H.T @ y`` is :meth:`rmatvec`."""
        return _Transposed(self)

    def __matmul__(self, x: Any) -> da.Array:
        """``H @ x``, lazily: a dask array of one value (or row) per simulation.

        ``x`` is ``(state,)`` or ``(state, k)``: numpy, dask or xarray.
        """
        x = _as_dask(x, self.shape[1], "x", "state elements", ndim=(1, 2)).rechunk(-1)
        index = "j" if x.ndim == 1 else "jk"
        return da.blockwise(
            _matvec, "i" + index[1:], self.data, "ij", x, index,
            concatenate=True, dtype=np.float64, meta=np.empty((0,) * x.ndim),
        )  # fmt: skip

    def rmatvec(self, y: Any) -> da.Array:
        """``Hᵀ @ y``, lazily: the sum over blocks of each block's ``Hᵀ y``.

        ``y`` is ``(simulation,)``: numpy, dask or xarray. NaN everywhere while a
        simulation is not computed yet.
        """
        y = _as_dask(y, self.shape[0], "y", "simulations", ndim=(1,))
        y = y.rechunk((self.data.chunks[0],))
        partial = da.blockwise(
            _rmatvec, "ij", self.data, "ij", y, "i",
            adjust_chunks={"i": 1}, dtype=np.float64, meta=np.empty((0, 0)),
        )  # fmt: skip
        return partial.sum(axis=0)

    def persist(self, **kwargs: Any) -> SparseJacobian:
        """The same Jacobian with its blocks computed and kept (in memory or on the cluster).

        For iterative solvers, which multiply by H many times.
        """
        return SparseJacobian(self.data.persist(**kwargs), self.rows, self.columns)

    def to_scipy(self) -> sparse.csr_array:
        """Compute every block and stack them: one ``scipy.sparse.csr_array``."""
        parts = dask.compute(*self.data.to_delayed().ravel())
        return sparse.csr_array(sparse.vstack(parts, format="csr"))

    def aslinearoperator(self) -> Any:
        """A :class:`scipy.sparse.linalg.LinearOperator` computing each product with dask.

        For scipy's iterative solvers (``lsqr``, ``cg``...); :meth:`persist` first.
        """
        from scipy.sparse.linalg import LinearOperator

        return LinearOperator(
            self.shape,
            matvec=lambda x: (self @ np.ravel(x)).compute(),
            rmatvec=lambda y: self.rmatvec(np.ravel(y)).compute(),
            dtype=np.float64,
        )

    def to_parquet(
        self, url: str, storage_options: dict[str, Any] | None = None, compute: bool = True
    ) -> Any:
        """Write the Jacobian to a folder or fsspec URL, one Parquet file per block, in parallel.

        Each block is written by a task of its own (where it was computed);
        ``jacobian.json`` is written last, once every block is in place.

        Parameters
        ----------
        url : str
            Local folder or fsspec URL (``s3://bucket/H``).
        storage_options : dict, optional
            fsspec options for a URL.
        compute : bool, default True
            Write now; with False, return a ``dask.delayed`` that writes when computed.

        Returns
        -------
        int or dask.delayed.Delayed
            The bytes written in blocks (or what computes them).
        """
        location = Location(url, storage_options)
        labels = dask.delayed(_write_labels)(location, self.rows, self.columns)
        starts = np.cumsum((0, *self.data.chunks[0][:-1]))
        written = [
            dask.delayed(_write_block)(location, i, block, int(start))
            for i, (block, start) in enumerate(
                zip(self.data.to_delayed().ravel(), starts, strict=True)
            )
        ]
        manifest = {
            "format": FORMAT,
            "shape": list(self.shape),
            "rows_per_block": list(self.data.chunks[0]),
        }
        done = dask.delayed(_write_manifest)(location, manifest, written, labels)
        return done.compute() if compute else done


class _Transposed:
    def __init__(self, jacobian: SparseJacobian) -> None:
        self._jacobian = jacobian

    @property
    def shape(self) -> tuple[int, int]:
        return self._jacobian.shape[::-1]

    def __matmul__(self, y: Any) -> da.Array:
        return self._jacobian.rmatvec(y)


def sparse_jacobian(
    foot: xr.DataArray,
    target: Any = None,
    time_bins: pd.IntervalIndex | None = None,
    rows_per_block: int = ROWS_PER_BLOCK,
) -> SparseJacobian:
    """The Jacobian as a :class:`SparseJacobian`: ``foot.stilt.jacobian(..., sparse=True)``.

    Parameters
    ----------
    foot : xarray.DataArray
        ``foot(simulation, lag, lat, lon)`` (``y, x``) with ``time(simulation, lag)``.
    target, time_bins
        As for ``foot.stilt.aggregate``; a grid's columns are its cells, ``y``
        then ``x``, labelled by their centres.
    rows_per_block : int
        Simulations per block.
    """
    dims = blocks.check_footprint(foot)
    left, _, bins = blocks.footprint_bins(foot, time_bins)
    if targets.is_target(target):
        resolved = targets.resolve(foot, dims, target)
    else:
        resolved = targets.grid_target(foot, dims, target)
    w = resolved.weights
    n_targets = len(resolved.ids)
    weights = (w.indptr.astype(np.int64), w.indices.astype(np.int64), w.data)
    rows = blocks.reduced(
        functools.partial(_rows, len(left), n_targets), blocks.stored(foot), bins,
        tuple(da.from_array(a, chunks=-1) for a in weights), (len(left) * n_targets,),
        combine=_stacked, meta=_META,
    )  # fmt: skip
    ids = resolved.ids
    levels = [ids.get_level_values(k) for k in range(ids.nlevels)]
    columns = pd.MultiIndex.from_arrays(
        [np.repeat(left, n_targets), *(np.tile(v.to_numpy(), len(left)) for v in levels)],
        names=["time", *(resolved.dim if n is None else n for n in ids.names)],
    )
    return SparseJacobian(rows.rechunk({0: rows_per_block}), _rows_frame(foot), columns)


def read_jacobian(url: str, storage_options: dict[str, Any] | None = None) -> SparseJacobian:
    """Open a Jacobian written by :meth:`SparseJacobian.to_parquet`, lazily (a task per block).

    Raises
    ------
    FileNotFoundError
        If ``url`` holds no complete Jacobian (no ``jacobian.json``).
    """
    location = Location(url, storage_options)
    try:
        manifest = json.loads(location.read_bytes("jacobian.json"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{location.url()} holds no complete Jacobian (no jacobian.json)"
        ) from None
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{location.url()}: not a {FORMAT!r} ({manifest.get('format')!r})")
    rows = pq.read_table(pa.BufferReader(location.read_buffer("rows.parquet"))).to_pandas()
    columns = pq.read_table(pa.BufferReader(location.read_buffer("columns.parquet"))).to_pandas()
    n_state = manifest["shape"][1]
    counts = manifest["rows_per_block"]
    starts = np.cumsum([0, *counts[:-1]])
    parts = [
        da.from_delayed(
            dask.delayed(_read_block)(location, i, int(start), n, n_state),
            shape=(n, n_state),
            dtype=np.float64,
            meta=_META,
        )  # fmt: skip
        for i, (start, n) in enumerate(zip(starts, counts, strict=True))
    ]
    data = da.concatenate(parts, axis=0)
    return SparseJacobian(data, rows, pd.MultiIndex.from_frame(columns))


def _rows(n_bins: int, n_targets: int, foot: Any, bins: np.ndarray, *weights) -> sparse.csr_array:
    """The sparse rows of a chunk of footprints, one simulation at a time.

    Each row is summed in a dense scratch row (time bins x targets: one row of
    H, never a block of them), then only its non-zeros are kept.
    """
    scratch = np.empty((1, n_bins, n_targets), dtype=np.float64)
    cols, values = [], []
    n = foot.shape[0]
    for s in range(n):
        scratch[:] = 0.0
        # A chunk of one simulation is passed whole: it may be its cells alone.
        one = foot if n == 1 else foot[s : s + 1]
        aggregate_targets_block(one, bins[s : s + 1], *weights, scratch)
        row = scratch.ravel()
        # The kernel makes the row of a footprint not computed yet all NaN; one
        # NaN marks it (see SparseJacobian) instead of a dense row of them.
        col = np.array([0]) if np.isnan(row[0]) else np.flatnonzero(row)
        cols.append(col)
        values.append(row[col])
    indptr = np.cumsum([0, *(c.size for c in cols)])
    shape = (n, n_bins * n_targets)
    return sparse.csr_array((np.concatenate(values), np.concatenate(cols), indptr), shape=shape)


def _stacked(parts: list[sparse.csr_array]) -> sparse.csr_array:
    return sparse.csr_array(sparse.vstack(parts, format="csr"))


def _matvec(block: sparse.csr_array, x: np.ndarray) -> np.ndarray:
    return np.asarray(block @ x, dtype=np.float64)


def _rmatvec(block: sparse.csr_array, y: np.ndarray) -> np.ndarray:
    if np.isnan(block.data).any():
        # A row not computed yet (its NaN marker) may hold values in any column.
        return np.full((1, block.shape[1]), np.nan)
    return np.asarray(block.T @ y, dtype=np.float64)[np.newaxis]


def _as_dask(values: Any, size: int, name: str, what: str, ndim: tuple[int, ...]) -> da.Array:
    if isinstance(values, xr.DataArray):
        values = values.data
    values = values if isinstance(values, da.Array) else da.from_array(np.asarray(values))
    if values.ndim not in ndim or values.shape[0] != size:
        axes = " or ".join(f"{n}-D" for n in ndim)
        raise ValueError(
            f"{name} must be {axes} with {size} {what} along its first axis, not {values.shape}"
        )
    return values.astype(np.float64)


def _rows_frame(foot: xr.DataArray) -> pd.DataFrame:
    coords = blocks.simulation_coords(foot)
    frame = pd.DataFrame({k: v.values for k, v in coords.items() if k != "simulation"})
    frame.index = pd.Index(foot["simulation"].values, name="simulation")
    return frame


def _text(frame: pd.DataFrame) -> pd.DataFrame:
    # Parquet needs one type per column: text stays text, ids of any kind become strings.
    return frame.apply(lambda c: c.astype(str) if c.dtype == object else c)


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def _block_key(i: int) -> str:
    return f"blocks/{i:06d}.parquet"


def _write_block(location: Location, i: int, block: sparse.csr_array, start: int) -> int:
    coo = sparse.coo_array(block)
    table = pa.table(
        {
            "row": pa.array(coo.row.astype(np.int64) + start),
            "col": pa.array(coo.col.astype(np.int64)),
            "value": pa.array(coo.data.astype(np.float64)),
        }
    )
    data = _parquet(table)
    location.write_bytes(_block_key(i), data)
    return len(data)


def _write_labels(location: Location, rows: pd.DataFrame, columns: pd.MultiIndex) -> None:
    location.write_bytes("rows.parquet", _parquet(pa.Table.from_pandas(_text(rows))))
    frame = columns.to_frame(index=False)
    location.write_bytes("columns.parquet", _parquet(pa.Table.from_pandas(_text(frame))))


def _write_manifest(
    location: Location, manifest: dict, written: list[int], labels_written: None
) -> int:
    # Takes the blocks' and labels' writes as arguments only to run after them:
    # the manifest is what makes the folder a Jacobian.
    manifest = {**manifest, "block_bytes": written}
    location.write_bytes("jacobian.json", json.dumps(manifest).encode())
    return sum(written)


def _read_block(
    location: Location, i: int, start: int, n_rows: int, n_state: int
) -> sparse.csr_array:
    table = pq.read_table(pa.BufferReader(location.read_buffer(_block_key(i))))
    row = table.column("row").to_numpy() - start
    values = (table.column("value").to_numpy(), (row, table.column("col").to_numpy()))
    return sparse.csr_array(sparse.coo_array(values, shape=(n_rows, n_state)))
