"""The sparse Jacobian: H @ x and Hᵀ @ y lazily, in blocks, written and read back.

Real footprints from the demo project (idealized met, real ``hycs_std``), run
once per module; the references are the dense aggregate and plain numpy.
"""

from __future__ import annotations

import pickle

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from demo_helpers import demo_bins, run_demo
from scipy import sparse

import pystilt_dask as stilt
from pystilt_dask.analysis import SparseJacobian, read_jacobian, sparse_jacobian

gpd = pytest.importorskip("geopandas")
shapely = pytest.importorskip("shapely")

BINS = demo_bins("3h")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> stilt.Model:
    return run_demo(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def foot(demo) -> xr.DataArray:
    return demo.footprints["default"].load()


@pytest.fixture(scope="module")
def districts():
    """A 4 x 3 checkerboard of districts over the towers, named by index."""
    boxes = [shapely.box(-101.5 + 0.5 * i, 39.4 + 0.5 * j, -101.0 + 0.5 * i, 39.9 + 0.5 * j)
             for j in range(3) for i in range(4)]  # fmt: skip
    index = pd.Index([f"d{k:02d}" for k in range(len(boxes))], name="district")
    return gpd.GeoDataFrame(geometry=boxes, index=index, crs="EPSG:4326")


def _dense(agg: xr.DataArray) -> np.ndarray:
    return agg.values.reshape(agg.shape[0], -1)  # (simulation, time bin x target)


def test_h_times_x_equals_the_aggregate_times_x(foot, districts):
    H = foot.stilt.jacobian(districts, BINS, sparse=True)
    agg = foot.stilt.aggregate(districts, BINS)
    assert isinstance(H, SparseJacobian) and H.shape == (4, len(BINS) * len(districts))
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, 1.0, H.shape[1])
    Hx = H @ x
    assert isinstance(Hx, dask.array.Array)  # lazy
    expected = _dense(agg.compute()) @ x
    np.testing.assert_allclose(Hx.compute(), expected, rtol=1e-12)
    assert (expected > 0).all()  # every tower sees some district
    # x as (time bin, target), flattened in state order, equals summing agg * x.
    x2 = xr.DataArray(x.reshape(len(BINS), -1), dims=("time_bin", "district"))
    np.testing.assert_allclose(Hx.compute(), (agg * x2.values).sum(["time_bin", "district"]),
                               rtol=1e-12)  # fmt: skip
    y = rng.normal(size=H.shape[0])
    HTy = H.T @ y
    assert isinstance(HTy, dask.array.Array) and H.T.shape == H.shape[::-1]
    np.testing.assert_allclose(HTy.compute(), _dense(agg.compute()).T @ y, rtol=1e-12, atol=1e-15)
    # Several columns of x at once, and dask inputs, stay lazy too.
    X = rng.random((H.shape[1], 3))
    np.testing.assert_allclose((H @ dask.array.from_array(X)).compute(), _dense(agg) @ X,
                               rtol=1e-12)  # fmt: skip


def test_rows_and_columns_are_labelled(foot, districts):
    H = foot.stilt.jacobian(districts, BINS, sparse=True)
    assert list(H.rows.index) == list(foot["simulation"].values)
    assert H.rows.index.name == "simulation"
    np.testing.assert_array_equal(H.rows["receptor_time"], foot["receptor_time"].values)
    assert H.columns.names == ["time", "district"]
    assert list(H.columns[: len(districts)].get_level_values("district")) == list(districts.index)
    assert (H.columns.get_level_values("time")[:: len(districts)] == BINS.left).all()


def test_blocks_are_sparse_matrices_never_dense(foot, districts):
    H = sparse_jacobian(foot, districts, BINS, rows_per_block=3)
    assert H.data.chunks == ((3, 1), (H.shape[1],))
    blocks = dask.compute(*H.data.to_delayed().ravel())
    assert all(isinstance(b, sparse.csr_array) for b in blocks)
    assert [b.shape[0] for b in blocks] == [3, 1]
    whole = H.to_scipy()
    assert isinstance(whole, sparse.csr_array)
    np.testing.assert_allclose(whole.toarray(), _dense(foot.stilt.aggregate(districts, BINS)))
    assert whole.nnz < whole.shape[0] * whole.shape[1]  # far-away districts hold no entries


def test_a_grid_target_equals_the_dense_jacobian(foot):
    grid = xr.Dataset(coords={"lat": foot["lat"].values[1::3], "lon": foot["lon"].values[2::4]})
    dense = foot.stilt.jacobian(grid, BINS)
    H = foot.stilt.jacobian(grid, BINS, sparse=True)
    np.testing.assert_allclose(H.to_scipy().toarray(), dense.values, rtol=1e-12, atol=1e-18)
    np.testing.assert_array_equal(H.columns.get_level_values("lat"), dense["state_lat"].values)
    np.testing.assert_array_equal(H.columns.get_level_values("lon"), dense["state_lon"].values)


def test_written_and_read_back_equals_itself(foot, districts, tmp_path):
    H = sparse_jacobian(foot, districts, BINS, rows_per_block=2)
    H.to_parquet(str(tmp_path / "H"))
    assert sorted(p.name for p in (tmp_path / "H" / "blocks").iterdir()) == [
        "000000.parquet", "000001.parquet",
    ]  # fmt: skip
    back = read_jacobian(str(tmp_path / "H"))
    assert back.shape == H.shape and back.data.chunks == H.data.chunks
    assert (back.to_scipy() != H.to_scipy()).nnz == 0
    pd.testing.assert_index_equal(back.columns, H.columns)
    pd.testing.assert_frame_equal(back.rows, H.rows, check_dtype=False)
    x = np.arange(H.shape[1], dtype=float)
    np.testing.assert_array_equal((back @ x).compute(), (H @ x).compute())


def test_written_in_parallel_on_a_cluster(foot, districts, tmp_path, client):
    H = sparse_jacobian(foot, districts, BINS, rows_per_block=1)
    # The write pickles whole, as it must to reach worker processes.
    write = pickle.loads(pickle.dumps(H.to_parquet(str(tmp_path / "H"), compute=False)))
    written = client.compute(write).result()  # each block written by a task of its own
    back = read_jacobian(str(tmp_path / "H"))
    x = np.random.default_rng(1).random(H.shape[1])
    on_cluster = client.compute(back @ x).result()
    assert written == sum(p.stat().st_size for p in (tmp_path / "H" / "blocks").iterdir())
    assert len(list((tmp_path / "H" / "blocks").iterdir())) == 4
    np.testing.assert_allclose(on_cluster, (H @ x).compute(), rtol=1e-12)


def test_an_incomplete_folder_is_not_a_jacobian(foot, districts, tmp_path):
    H = sparse_jacobian(foot, districts, BINS)
    lazy = H.to_parquet(str(tmp_path / "H"), compute=False)
    assert not (tmp_path / "H").exists()  # nothing written yet
    with pytest.raises(FileNotFoundError, match="no complete Jacobian"):
        read_jacobian(str(tmp_path / "H"))
    assert lazy.compute() > 0  # bytes of the blocks
    assert read_jacobian(str(tmp_path / "H")).shape == H.shape


def test_simulations_not_computed_give_nan_products(demo, districts, tmp_path):
    pending = stilt.Model(tmp_path / "pending", demo.receptors()[:2], demo.config)
    pending.register_pending()
    H = pending.footprints["default"].load().stilt.jacobian(districts, BINS, sparse=True)
    assert np.isnan((H @ np.ones(H.shape[1])).compute()).all()
    assert np.isnan((H.T @ np.ones(H.shape[0])).compute()).all()
    assert H.to_scipy().nnz == 2  # one NaN per row, not a dense row of them


def test_a_row_not_computed_is_unknown_everywhere_as_a_dense_nan_row(foot, districts):
    # The second simulation unknown (NaN, as a chunk never written reads), the others not.
    unknown = foot["simulation"].values[1]
    partial = foot.where(foot["simulation"] != unknown)
    H = sparse_jacobian(partial, districts, BINS, rows_per_block=2)
    dense = _dense(foot.stilt.aggregate(districts, BINS).compute())
    dense[1] = np.nan
    rng = np.random.default_rng(2)
    x, y = rng.random(H.shape[1]), rng.random(H.shape[0])
    np.testing.assert_allclose((H @ x).compute(), dense @ x, rtol=1e-12)  # NaN in row 1 alone
    assert np.isnan((H.T @ y).compute()).all() and np.isnan(dense.T @ y).all()
    # With the unknown row's weight zero, the dense row still poisons every column.
    y[1] = 0.0
    assert np.isnan((H.T @ y).compute()).all() and np.isnan(dense.T @ y).all()
    # A block of complete rows alone gives numbers.
    complete = SparseJacobian(H.data[2:], H.rows.iloc[2:], H.columns)
    np.testing.assert_allclose((complete.T @ y[2:]).compute(), dense[2:].T @ y[2:], rtol=1e-12)


def test_building_computes_nothing(foot, districts):
    def refuse(*args, **kwargs):
        raise AssertionError("dask computed while an analysis was being built")

    with dask.config.set(scheduler=refuse):
        H = foot.stilt.jacobian(districts, BINS, sparse=True)
        products = [H @ np.ones(H.shape[1]), H.T @ np.ones(H.shape[0])]
        lazy_write = H.to_parquet("memory://never", compute=False)
    assert all(isinstance(p, dask.array.Array) for p in products)
    assert lazy_write is not None


def test_bad_vectors_are_clear_errors(foot, districts):
    H = foot.stilt.jacobian(districts, BINS, sparse=True)
    with pytest.raises(ValueError, match=r"x must be 1-D or 2-D with 48 state elements along"):
        H @ np.ones(5)
    with pytest.raises(ValueError, match=r"y must be 1-D with 4 simulations along its first axis"):
        H.T @ np.ones(5)
    with pytest.raises(ValueError, match=r"y must be 1-D with 4 simulations"):
        H.T @ np.ones((4, 2))
