"""Footprint chunks stored as their non-zero cells (the ``pystilt_dask.nonzero`` codec).

A store written with the codec beside the same store written dense (its arrays'
serializer set to ``bytes`` before anything is written, as stores made before
the codec have it): every reader gets the same values from both, and the
analysis gets the same sums.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from numcodecs import Zstd
from store_helpers import chunk_path, expected_chunk, make_config, make_receptors, run_synthetic

from pystilt_dask.analysis import blocks
from pystilt_dask.model import Model
from pystilt_dask.store import StoreError, chunks, footprints, layout, lazy, publish, sparse

NAMES = ("coarse", "fine")
COMPUTED = 4  # rows 0-3 computed, row 4 empty, row 5 never computed


def _project(root, dense: bool) -> Model:
    model = Model(root, make_receptors(6), make_config(root.parent / "met"))
    model.register_pending()
    if dense:
        for name in NAMES:
            path = os.path.join(model.location.url(layout.foot_array(name)), "zarr.json")
            meta = json.load(open(path))
            meta["codecs"][0] = {"name": "bytes", "configuration": {"endian": "little"}}
            json.dump(meta, open(path, "w"))
    ids = model.simulations.ids()
    for sim_id in ids[:COMPUTED]:
        assert run_synthetic(model.location, sim_id, model.config) == "complete"
    for name in NAMES:
        array = footprints.foot_array(model.location, name, read_only=True)
        zeros = np.zeros(array.shape[1:], dtype="float32")
        publish.publish_footprint(model.location, name, ids[4], 4, zeros, empty=True)
    return model


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> tuple[Model, Model]:
    root = tmp_path_factory.mktemp("sparse_store")
    return _project(root / "nonzero", dense=False), _project(root / "dense", dense=True)


def _codecs(model: Model, name: str) -> list[str]:
    path = os.path.join(model.location.url(layout.foot_array(name)), "zarr.json")
    return [codec["name"] for codec in json.load(open(path))["codecs"]]


def test_chunks_are_their_nonzero_cells_then_zstd_and_crc32c(stores):
    nonzero, dense = stores
    assert _codecs(nonzero, "fine") == [sparse.NAME, "zstd", "crc32c"]
    assert _codecs(dense, "fine") == ["bytes", "zstd", "crc32c"]
    stored = open(chunk_path(nonzero.location, "fine", 0), "rb").read()
    cells = Zstd().decode(stored[:-4])
    values = dense.footprints["fine"].load().values[0]
    assert cells[:4] == b"PSNZ"
    assert int.from_bytes(cells[8:16], "little") == np.count_nonzero(values) > 0


@pytest.mark.parametrize("name", NAMES)
def test_load_gives_the_dense_values_exactly(stores, name):
    nonzero, dense = stores
    ours = nonzero.footprints[name].load().values
    np.testing.assert_array_equal(ours, dense.footprints[name].load().values)
    ids = nonzero.simulations.ids()
    for row in range(COMPUTED):
        np.testing.assert_array_equal(ours[row], expected_chunk(nonzero, ids[row], name))
    assert np.count_nonzero(ours[0]) > 0
    assert (ours[4] == 0).all()  # the empty footprint reads zeros
    assert np.isnan(ours[5]).all()  # never computed: the fill value


def test_plain_xarray_reads_the_dense_values_in_a_fresh_interpreter(stores, tmp_path):
    """Only xarray imported: zarr finds the codec through the installed package's entry point."""
    nonzero, dense = stores
    out = tmp_path / "plain.npy"
    code = (
        "import sys, numpy as np, xarray as xr\n"
        "ds = xr.open_zarr(sys.argv[1], consolidated=False)\n"
        "np.save(sys.argv[2], ds['foot'].values)\n"
    )
    group = nonzero.location.url(layout.footprint_group("fine"))
    subprocess.run([sys.executable, "-c", code, group, str(out)], check=True)
    plain = np.load(out)
    np.testing.assert_array_equal(plain, dense.footprints["fine"].load().values)
    assert np.isnan(plain[5]).all() and (plain[4] == 0).all()


def test_a_damaged_chunk_is_refused_naming_its_simulation(tmp_path):
    model = _project(tmp_path / "project", dense=False)
    sim_id = model.simulations.ids()[1]
    path = chunk_path(model.location, "fine", 1)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))
    foot = model.footprints["fine"].load()
    with pytest.raises(StoreError, match=rf"{sim_id}.*CRC-32C"):
        foot.isel(simulation=1).compute()
    np.testing.assert_array_equal(
        foot.isel(simulation=0).values, expected_chunk(model, model.simulations.ids()[0], "fine")
    )
    plain = xr.open_zarr(model.location.url(layout.footprint_group("fine")), consolidated=False)
    with pytest.raises(ValueError, match="checksum|CRC"):
        plain["foot"].isel(simulation=1).compute()


def _flux(foot: xr.DataArray) -> xr.DataArray:
    times = pd.date_range(
        pd.Timestamp(foot["time"].values.min()), pd.Timestamp(foot["time"].values.max()), freq="h"
    )
    rng = np.random.default_rng(3)
    shape = (len(times), foot.sizes["lat"], foot.sizes["lon"])
    coords = {"time": times, "lat": foot["lat"].values, "lon": foot["lon"].values}
    return xr.DataArray(rng.gamma(2.0, 1.0, shape), dims=("time", "lat", "lon"), coords=coords)


def _coarse(foot: xr.DataArray) -> xr.Dataset:
    lat, lon = foot["lat"].values, foot["lon"].values
    return xr.Dataset(coords={"lat": lat[1::2] - 0.25 * (lat[1] - lat[0]), "lon": lon[::3]})


def _zones(foot: xr.DataArray) -> xr.DataArray:
    labels = (np.arange(foot.sizes["lat"])[:, None] // 3) * 10 + np.arange(foot.sizes["lon"]) // 4
    return xr.DataArray(
        labels, dims=("lat", "lon"), coords={"lat": foot["lat"], "lon": foot["lon"]}, name="zone"
    )


@pytest.mark.parametrize("name", NAMES)
def test_convolve_and_aggregate_equal_the_dense_path(stores, name):
    nonzero, dense = stores
    ours, theirs = nonzero.footprints[name].load(), dense.footprints[name].load()
    in_memory = theirs.copy(data=theirs.values)  # not read from any store
    # and in dask chunks that are not the store's (grids split: reduced after a rechunk)
    rechunked = in_memory.chunk({"simulation": 4, "lat": 3})
    flux = _flux(ours)
    times = pd.DatetimeIndex(flux["time"].values)
    bins = pd.interval_range(times[0], times[-1] + pd.Timedelta("1h"), freq="2h", closed="left")
    for target in (None, _coarse(ours), _zones(ours)):
        args = (target, bins) if target is not None else ()
        want = theirs.stilt.aggregate(*args).values
        for foot in (ours, in_memory, rechunked):
            np.testing.assert_allclose(foot.stilt.aggregate(*args).values, want, rtol=1e-6)
    want = theirs.stilt.convolve(flux).values
    assert np.isnan(want[5]) and want[4] == 0 and (want[:COMPUTED] > 0).all()
    for foot in (ours, in_memory, rechunked):
        np.testing.assert_allclose(foot.stilt.convolve(flux).values, want, rtol=1e-6)
    want = theirs.stilt.jacobian(_zones(ours), bins).values
    for foot in (ours, in_memory, rechunked):
        got = foot.stilt.jacobian(_zones(ours), bins, sparse=True).to_scipy().toarray()
        np.testing.assert_allclose(got[:5], want[:5], rtol=1e-6)  # row 5: its NaN marker


def test_convolve_reads_and_reduces_each_chunk_in_one_task(stores):
    """Tasks read their simulations' chunks themselves, as cells: no read task, no dense chunk."""
    nonzero, _ = stores
    foot = nonzero.footprints["fine"].load()
    (out,) = dask.optimize(foot.stilt.convolve(_flux(foot)).data)
    graph = dict(out.__dask_graph__())
    reads = [k for k in graph if isinstance(k, tuple) and str(k[0]).startswith("stilt-foot")]
    assert reads == []
    assert len(graph) == foot.sizes["simulation"] + 2  # and the flux and the grouping
    ids = nonzero.simulations.ids()
    task = graph[next(k for k in graph if str(k[0]).startswith("_convolve"))]
    at = next(k for k, arg in enumerate(task.args) if isinstance(arg, lazy.StoredChunks))
    read, rows = task.args[at], task.args[at + 1]  # and the rows (then ids) it reads
    assert isinstance(read(int(rows[0]), ids[0], cells=True), chunks.Cells)
    assert type(read(int(rows[0]), ids[0])) is not chunks.Cells  # load() gets arrays
    missing = read(5, ids[5], cells=True)  # never computed: the dense fill value
    assert isinstance(missing, np.ndarray) and np.isnan(missing).all()


def test_cells_read_one_after_another_into_one_scratch_are_each_chunks_own(stores):
    nonzero, _ = stores
    foot = nonzero.footprints["fine"].load()
    read = foot.data.__dask_graph__().layers[foot.data.name].chunks
    ids, scratch = nonzero.simulations.ids(), chunks.Scratch()
    for row in (*range(COMPUTED), 0):
        want = read(row, ids[row]).reshape(-1)
        cells = read(row, ids[row], cells=True, scratch=scratch)
        index = np.cumsum(cells.gaps, dtype=np.int64)
        np.testing.assert_array_equal(index, np.flatnonzero(want))
        np.testing.assert_array_equal(cells.values, want[index])


def test_reductions_read_several_simulations_per_task():
    assert [blocks.per_task(n) for n in (1, 63, 64, 1000, 10_000, 10**6)] == [1, 1, 1, 15, 64, 64]


@pytest.mark.parametrize("seed", range(4))
def test_the_codec_round_trips_every_value_exactly(seed):
    rng = np.random.default_rng(seed)
    chunk = np.where(rng.random((3, 7, 5)) < 0.1, rng.normal(size=(3, 7, 5)), 0).astype("f4")
    chunk[0, 0, 0], chunk[1, 2, 3], chunk[2, 6, 4] = -0.0, np.nan, np.inf
    dense, indices, values = sparse.decode(sparse.encode(chunk), chunk.dtype, chunk.shape)
    np.testing.assert_array_equal(dense.view("u4"), chunk.view("u4"))  # bits, -0.0 and NaN too
    np.testing.assert_array_equal(indices, np.flatnonzero(chunk.view("u4")))
    np.testing.assert_array_equal(values.view("u4"), chunk.reshape(-1)[indices].view("u4"))
    empty, indices, _ = sparse.decode(sparse.encode(np.zeros(6, "f4")), np.dtype("f4"), (6,))
    assert (empty == 0).all() and indices.size == 0
    with pytest.raises(ValueError, match="cannot hold"):
        sparse.decode(sparse.encode(chunk)[:-1], chunk.dtype, chunk.shape)
    with pytest.raises(ValueError, match="beyond"):
        sparse.decode(sparse.encode(chunk), chunk.dtype, (2, 7, 5))
