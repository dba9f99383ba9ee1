"""Footprints times fluxes, lazily from the store: convolve, aggregate, jacobian.

Real footprints: the demo project (idealized met) and a small project on the
shared HRRR met (skipped without ``../shared``), each run once per module with
the real ``hycs_std``. References are plain numpy loops over simulations.
"""

from __future__ import annotations

import warnings

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from demo_helpers import small_demo
from distributed import Client, LocalCluster

import pystilt_dask as stilt
from pystilt_dask.accessor import StiltAccessorWarning, register
from pystilt_dask.analysis import enhancement_table, regrid, timebins
from pystilt_dask.receptors import PointReceptor
from pystilt_dask.store import publish

HRRR_RECEPTORS = [
    PointReceptor(time="2019-05-30 10:00", longitude=-111.848, latitude=40.766, altitude=5),
    PointReceptor(time="2019-05-30 11:00", longitude=-111.9, latitude=40.7, altitude=10),
    PointReceptor(time="2019-05-30 09:00", longitude=-111.7, latitude=40.6, altitude=5),
]
HRRR_GRID = {"xmin": -112.3, "xmax": -111.5, "ymin": 40.4, "ymax": 40.9, "xres": 0.02}


@pytest.fixture(autouse=True)
def _our_accessor():
    # PYSTILT's `stilt` package, imported by other tests, replaces `DataArray.stilt`;
    # taking the name back says so once, which is expected here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StiltAccessorWarning)
        register()


def _run(model: stilt.Model) -> stilt.Model:
    states = dask.compute(*model.to_delayed(), scheduler="threads")
    assert set(states) == {"complete"}
    return model


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> stilt.Model:
    return _run(stilt.Model.from_yaml(small_demo(tmp_path_factory.mktemp("demo"), 4)))


@pytest.fixture(scope="module")
def hrrr(tmp_path_factory, hrrr_met) -> stilt.Model:
    config = stilt.ModelConfig.from_dict(
        {
            "mets": {"hrrr": hrrr_met},
            "hysplit": {"n_hours": -3, "numpar": 50, "seed": 3},
            "footprints": {"default": HRRR_GRID},
        }
    )
    return _run(stilt.Model(tmp_path_factory.mktemp("hrrr"), HRRR_RECEPTORS, config))


@pytest.fixture(scope="module", params=["demo", "hrrr"])
def foot(request) -> xr.DataArray:
    foot = request.getfixturevalue(request.param).footprints["default"].load()
    assert float(foot.sum()) > 0  # real influence, or the comparisons below prove little
    return foot


def _hours(foot: xr.DataArray, step: str = "1h") -> pd.DatetimeIndex:
    """Flux steps covering every layer of ``foot``, with one step to spare each side."""
    first = pd.Timestamp(foot["time"].values.min()).floor(step) - pd.Timedelta(step)
    last = pd.Timestamp(foot["time"].values.max()) + pd.Timedelta(step)
    return pd.date_range(first, last, freq=step)


def _flux(foot: xr.DataArray, times: pd.DatetimeIndex, grid=None, seed: int = 0) -> xr.DataArray:
    grid = foot if grid is None else grid
    shape = (len(times), grid["lat"].size, grid["lon"].size)
    values = np.random.default_rng(seed).gamma(2.0, 1.0, shape)
    coords = {"time": times, "lat": grid["lat"].values, "lon": grid["lon"].values}
    return xr.DataArray(values, dims=("time", "lat", "lon"), coords=coords, name="flux")


def _loop_convolve(foot: xr.DataArray, flux: xr.DataArray) -> np.ndarray:
    """The plain reference: each simulation, each layer times the flux hour it starts in."""
    values = foot.values.astype(np.float64)
    start = flux["time"].values
    out = np.zeros(foot.sizes["simulation"])
    for s in range(values.shape[0]):
        for lag in range(values.shape[1]):
            step = np.searchsorted(start, foot["time"].values[s, lag], side="right") - 1
            out[s] += (values[s, lag] * flux.values[step]).sum()
    return out


def _coarse(foot: xr.DataArray, factor: tuple[int, int] = (3, 4)) -> xr.Dataset:
    """A grid whose cells are unions of ``factor`` footprint cells (trimmed to fit)."""
    ny = foot.sizes["lat"] // factor[0] * factor[0]
    nx = foot.sizes["lon"] // factor[1] * factor[1]
    lat = foot["lat"].values[:ny].reshape(-1, factor[0]).mean(axis=1)
    lon = foot["lon"].values[:nx].reshape(-1, factor[1]).mean(axis=1)
    return xr.Dataset(coords={"lat": lat, "lon": lon})


def _bins(times: pd.DatetimeIndex, freq: str) -> pd.IntervalIndex:
    return pd.interval_range(times[0], times[-1] + pd.Timedelta(freq), freq=freq, closed="left")


def test_convolve_equals_a_numpy_loop(foot):
    flux = _flux(foot, _hours(foot))
    got = foot.stilt.convolve(flux).compute()
    np.testing.assert_allclose(got.values, _loop_convolve(foot, flux), rtol=1e-6)
    assert got.dims == ("simulation",) and got.attrs["units"] == "ppm"
    assert list(got["simulation"].values) == list(foot["simulation"].values)
    xr.testing.assert_identical(got["receptor_time"], foot["receptor_time"])
    np.testing.assert_allclose(foot.stilt.enhancement(flux).values, got.values, rtol=1e-12)


def test_each_layer_meets_the_flux_hour_it_starts_in(demo):
    foot = demo.footprints["default"].load()
    first = foot.isel(simulation=[0])
    receptor_time = pd.Timestamp(first["receptor_time"].values[0])
    times = _hours(first)
    for lag in (-2, -5):  # layer -2 starts two hours before the receptor time
        values = np.zeros((len(times), foot.sizes["lat"], foot.sizes["lon"]))
        values[times.get_loc(receptor_time + pd.Timedelta(hours=lag))] = 1.0
        flux = _flux(first, times).copy(data=values)
        layer = float(first.sel(lag=lag).sum())
        assert layer > 0
        assert float(first.stilt.convolve(flux)[0]) == pytest.approx(layer, rel=1e-6)
    # Not the layer the other way round: after the receptor time a backward run has none.
    after = np.zeros((len(times), foot.sizes["lat"], foot.sizes["lon"]))
    after[times > receptor_time] = 1.0
    assert float(first.stilt.convolve(_flux(first, times).copy(data=after))[0]) == 0.0


def test_constant_flux_gives_the_total_footprint(demo):
    foot = demo.footprints["default"].load()
    flux = xr.DataArray(np.full((foot.sizes["lat"], foot.sizes["lon"]), 2.0),
                        coords={"lat": foot["lat"], "lon": foot["lon"]})  # fmt: skip
    expected = 2.0 * foot.sum(["lag", "lat", "lon"]).values
    np.testing.assert_allclose(foot.stilt.convolve(flux).values, expected, rtol=1e-6)


def test_aggregate_conserves_totals(foot):
    times = _hours(foot)
    agg = foot.stilt.aggregate(_coarse(foot, (1, 1)), _bins(times, "3h")).compute()
    totals = foot.sum(["lag", "lat", "lon"]).values.astype(np.float64)
    np.testing.assert_allclose(agg.sum(["time", "lat", "lon"]).values, totals, rtol=1e-6)
    # Coarser cells, unions of footprint cells: a block sum of the trimmed footprint.
    grid = _coarse(foot)
    agg = foot.stilt.aggregate(grid, _bins(times, "2h")).compute()
    trimmed = foot.isel(lat=slice(0, 3 * grid.sizes["lat"]), lon=slice(0, 4 * grid.sizes["lon"]))
    blocks = trimmed.sum("lag").coarsen(lat=3, lon=4).sum().values.astype(np.float64)
    np.testing.assert_allclose(agg.sum("time").values, blocks, rtol=1e-6, atol=1e-12)
    assert agg.dims == ("simulation", "time", "lat", "lon")
    assert (agg["time_end"] - agg["time"] == np.timedelta64(2, "h")).all()


def test_aggregate_onto_an_irregular_grid_conserves_totals(foot):
    rng = np.random.default_rng(1)
    lat, lon = foot["lat"].values, foot["lon"].values

    def covering(axis: np.ndarray, n: int) -> np.ndarray:
        # Irregular centres whose outer cells reach beyond the footprint grid.
        inner = np.sort(rng.uniform(axis[0], axis[-1], n))
        return np.concatenate([[axis[0] - 0.2], inner, [axis[-1] + 0.2]])

    grid = xr.Dataset(coords={"lat": covering(lat, 7), "lon": covering(lon, 9)})
    agg = foot.stilt.aggregate(grid).compute()
    totals = foot.sum(["lag", "lat", "lon"]).values.astype(np.float64)
    np.testing.assert_allclose(agg.sum(["time", "lat", "lon"]).values, totals, rtol=1e-6)


def test_jacobian_times_x_equals_convolve(foot):
    grid, times = _coarse(foot), _hours(foot, "2h")
    flux = _flux(foot, times, grid, seed=2)
    H = foot.stilt.jacobian(grid, _bins(times, "2h"))
    assert H.dims == ("simulation", "state") and H.shape[1] == flux.size
    x = flux.values.ravel()  # (time, lat, lon) flattened is the state order
    expected = foot.stilt.convolve(flux).values
    np.testing.assert_allclose(H.values @ x, expected, rtol=1e-6)
    sparse = foot.stilt.jacobian(grid, _bins(times, "2h"), sparse=True).to_scipy()
    np.testing.assert_allclose(sparse @ x, expected, rtol=1e-6)
    np.testing.assert_array_equal(sparse.toarray(), H.values)
    assert (
        H["state_time"].values == np.repeat(times.values, grid["lat"].size * grid["lon"].size)
    ).all()


def test_a_coarser_flux_equals_pre_aggregated_footprints(foot):
    grid, times = _coarse(foot), _hours(foot, "3h")
    flux = _flux(foot, times, grid, seed=3)
    agg = foot.stilt.aggregate(grid, _bins(times, "3h"))
    expected = (agg * flux.values).sum(["time", "lat", "lon"]).values
    np.testing.assert_allclose(foot.stilt.convolve(flux).values, expected, rtol=1e-6)
    # The same flux given with decreasing latitudes (as many files store it).
    flipped = flux.isel(lat=slice(None, None, -1))
    np.testing.assert_allclose(foot.stilt.convolve(flipped).values, expected, rtol=1e-6)


def test_union_cells_take_whole_footprint_cells(foot):
    lat = foot["lat"].values
    coarse = _coarse(foot)["lat"].values
    overlap = regrid.overlap(regrid.edges(lat, "lat"), regrid.edges(coarse, "lat"), "lat")
    assert set(overlap.weight.tolist()) == {1.0}
    np.testing.assert_array_equal(overlap.dst, np.arange(overlap.src.size) // 3)


def test_latitude_fractions_are_areas_on_the_sphere():
    overlap = regrid.overlap(np.array([0.0, 60.0]), np.array([0.0, 30.0, 60.0]), "lat")
    # sin 30° - sin 0° = 0.5 of sin 60° - sin 0° ≈ 0.866: the lower half holds 58 %.
    np.testing.assert_allclose(
        overlap.weight, [0.5 / np.sin(np.pi / 3), 1 - 0.5 / np.sin(np.pi / 3)]
    )


def test_building_computes_nothing(demo):
    foot = demo.footprints["default"].load()
    times = _hours(foot)
    flux = _flux(foot, times).chunk({"time": 4})
    grid = _coarse(foot)

    def refuse(*args, **kwargs):
        raise AssertionError("dask computed while an analysis was being built")

    with dask.config.set(scheduler=refuse):
        enhancement = foot.stilt.convolve(flux)
        coarse = foot.stilt.convolve(_flux(foot, times, grid).chunk({"time": 4}))
        agg = foot.stilt.aggregate(grid, _bins(times, "6h"))
        H = foot.stilt.jacobian(grid, _bins(times, "6h"))
        with pytest.raises(AssertionError, match="dask computed"):
            enhancement.compute()  # the guard does fire when something computes
    for lazy in (enhancement, coarse, agg, H):
        assert isinstance(lazy.data, dask.array.Array)
    assert H.data.ndim == 2
    np.testing.assert_allclose(enhancement.values, _loop_convolve(foot, flux.compute()), rtol=1e-6)


def test_results_come_in_blocks_of_simulations(demo):
    foot = demo.footprints["default"].load()
    assert foot.data.chunks[0] == (1,) * foot.sizes["simulation"]  # one per stored chunk
    enhancement = foot.stilt.convolve(_flux(foot, _hours(foot)))
    assert enhancement.data.numblocks == (1,)  # 4 numbers: one block
    grid, bins = _coarse(foot), _bins(_hours(foot, "6h"), "6h")
    per_simulation = 8 * len(bins) * grid.sizes["lat"] * grid.sizes["lon"]
    with dask.config.set({"array.chunk-size": f"{2 * per_simulation}B"}):
        agg = foot.stilt.aggregate(grid, bins)
        H = foot.stilt.jacobian(grid, bins)
    assert agg.data.chunks[0] == (2, 2) and H.data.chunks == ((2, 2), (H.shape[1],))


def test_jacobian_writes_to_zarr_and_runs_on_a_cluster(demo, tmp_path):
    foot = demo.footprints["default"].load()
    times = _hours(foot, "6h")
    H = foot.stilt.jacobian(_coarse(foot), _bins(times, "6h"))
    flux = _flux(foot, _hours(foot))
    with LocalCluster(n_workers=1, threads_per_worker=2, dashboard_address=":0") as cluster:
        with Client(cluster):
            H.to_dataset().to_zarr(tmp_path / "H.zarr", consolidated=False)
            on_cluster = foot.stilt.convolve(flux).compute()
    stored = xr.open_zarr(tmp_path / "H.zarr", consolidated=False)["H"]
    np.testing.assert_array_equal(stored.values, H.values)
    np.testing.assert_array_equal(stored["state_lat"].values, H["state_lat"].values)
    np.testing.assert_allclose(on_cluster.values, _loop_convolve(foot, flux), rtol=1e-6)


def test_enhancement_table_from_a_netcdf_flux(demo, tmp_path):
    foot = demo.footprints["default"].load()
    flux = _flux(foot, _hours(foot))
    flux.attrs["units"] = "umol m-2 s-1"
    flux.to_netcdf(tmp_path / "flux.nc")
    table = enhancement_table(demo, "default", tmp_path / "flux.nc")
    assert list(table.index) == list(foot["simulation"].values)
    np.testing.assert_allclose(table["enhancement"], _loop_convolve(foot, flux), rtol=1e-6)
    assert {"receptor_time", "receptor_longitude", "receptor_latitude"} <= set(table.columns)
    xr.Dataset({"a": flux, "b": flux}).to_netcdf(tmp_path / "two.nc")
    with pytest.raises(ValueError, match="holds 2 variables"):
        enhancement_table(demo, "default", tmp_path / "two.nc")
    with pytest.raises(ValueError, match="has no variable 'c'"):
        enhancement_table(demo, "default", tmp_path / "two.nc", variable="c")
    flux.to_dataset().to_zarr(tmp_path / "flux.zarr", consolidated=False)
    from_zarr = enhancement_table(demo, "default", str(tmp_path / "flux.zarr"))
    np.testing.assert_allclose(from_zarr["enhancement"], table["enhancement"], rtol=1e-12)


def test_bad_input_is_a_clear_error(demo):
    foot = demo.footprints["default"].load()
    times = _hours(foot)
    flux = _flux(foot, times)
    with pytest.raises(ValueError, match="do not cover every footprint layer"):
        foot.stilt.convolve(flux.isel(time=slice(3, None)))
    with pytest.raises(ValueError, match="flux dimensions must be"):
        foot.stilt.convolve(flux.rename(lat="latitude"))
    half_hourly = _flux(foot, pd.date_range(times[0], times[-1], freq="30min"))
    with pytest.raises(ValueError, match="1 hour or longer"):
        foot.stilt.convolve(half_hourly)
    with pytest.raises(ValueError, match="at least two time steps"):
        foot.stilt.convolve(flux.isel(time=[0]))
    with pytest.raises(TypeError, match="must be a pandas.IntervalIndex"):
        foot.stilt.aggregate(None, "6h")
    with pytest.raises(ValueError, match="closed on the left"):
        foot.stilt.aggregate(None, pd.interval_range(times[0], times[-1], freq="6h"))
    with pytest.raises(ValueError, match="needs a 1-D coordinate 'lon'"):
        foot.stilt.jacobian(xr.Dataset(coords={"lat": foot["lat"].values}))
    with pytest.raises(ValueError, match="expected stored footprints"):
        foot.sum("lag").stilt.convolve(flux)


def test_layer_bins_take_the_step_a_layer_starts_in():
    left = pd.date_range("2024-07-15 00:00", periods=3, freq="1h").values
    right = left + np.timedelta64(1, "h")
    starts = np.array([["2024-07-15 00:30", "2024-07-15 02:00", "2024-07-15 03:00"]],
                      dtype="datetime64[ns]")  # fmt: skip
    np.testing.assert_array_equal(timebins.layer_bins(starts, left, right), [[0, 2, -1]])


def test_a_finer_flux_is_averaged_over_each_footprint_cell(demo):
    foot = demo.footprints["default"].load()
    half = (foot["lat"].values[1] - foot["lat"].values[0]) / 4
    fine = xr.Dataset(
        coords={
            "lat": np.sort(np.concatenate([foot["lat"].values - half, foot["lat"].values + half])),
            "lon": np.sort(np.concatenate([foot["lon"].values - half, foot["lon"].values + half])),
        }
    )
    flux = _flux(foot, _hours(foot), fine, seed=4)
    # Each footprint cell holds 2 x 2 fine cells of (nearly) equal area: their mean.
    on_footprint_grid = (
        flux.coarsen(lat=2, lon=2)
        .mean()
        .assign_coords(lat=foot["lat"].values, lon=foot["lon"].values)
    )
    np.testing.assert_allclose(
        foot.stilt.convolve(flux).values, _loop_convolve(foot, on_footprint_grid), rtol=1e-4
    )


def test_simulations_not_computed_are_nan(demo, tmp_path):
    pending = stilt.Model(tmp_path / "pending", demo.receptors()[:2], demo.config)
    pending.register_pending()  # registered, never run: every chunk is the fill value
    foot = pending.footprints["default"].load()
    flux = _flux(foot, _hours(foot))
    assert np.isnan(foot.stilt.convolve(flux).values).all()
    H = foot.stilt.jacobian(_coarse(foot), _bins(_hours(foot, "6h"), "6h"))
    assert np.isnan(H.values).all()


def test_a_time_integrated_footprint_meets_constant_fluxes_only(demo, tmp_path):
    data = demo.config.model_dump(mode="json")
    data["footprints"]["default"]["time_integrate"] = True
    config = stilt.ModelConfig.from_dict(data)
    pending = stilt.Model(tmp_path / "integrated", demo.receptors()[:1], config)
    pending.register_pending()
    foot = pending.footprints["default"].load()
    assert foot.sizes["lag"] == 1
    with pytest.raises(ValueError, match="is time-integrated"):
        foot.stilt.convolve(_flux(foot, _hours(foot)))
    with pytest.raises(ValueError, match="is time-integrated"):
        foot.stilt.aggregate(None, _bins(_hours(foot), "1h"))
    assert foot.stilt.aggregate().sizes["time"] == 1


def test_projected_grids_work_in_metres(demo, tmp_path):
    data = demo.config.model_dump(mode="json")
    data["footprints"] = {
        "utm": {"xmin": -100.6, "xmax": -99.4, "ymin": 39.6, "ymax": 40.4, "xres": 5000.0,
                "projection": "+proj=utm +zone=14"}
    }  # fmt: skip
    model = stilt.Model(tmp_path / "utm", demo.receptors()[:3], stilt.ModelConfig.from_dict(data))
    model.register_pending()
    foot = model.footprints["utm"].load()
    assert foot.dims[2:] == ("y", "x")
    rng = np.random.default_rng(5)
    for row, sim_id in enumerate(model.simulations.ids()):  # footprints written as a run does
        chunk = rng.gamma(1.0, 1e-3, foot.shape[1:]).astype(np.float32)
        chunk[chunk < 1e-3] = 0
        publish.publish_footprint(model.location, "utm", sim_id, row, chunk, empty=False)
    foot = model.footprints["utm"].load()
    times = _hours(foot)
    flux = _flux(foot.rename(y="lat", x="lon"), times).rename(lat="y", lon="x")
    expected = _loop_convolve(foot, flux)
    np.testing.assert_allclose(foot.stilt.convolve(flux).values, expected, rtol=1e-6)
    y, x = foot["y"].values, foot["x"].values
    grid = xr.Dataset(coords={"y": y[: y.size // 2 * 2].reshape(-1, 2).mean(1),
                              "x": x[: x.size // 2 * 2].reshape(-1, 2).mean(1)})  # fmt: skip
    agg = foot.stilt.aggregate(grid).compute()
    trimmed = foot.isel(y=slice(0, grid.sizes["y"] * 2), x=slice(0, grid.sizes["x"] * 2))
    blocks = trimmed.sum("lag").coarsen(y=2, x=2).sum().values.astype(np.float64)
    np.testing.assert_allclose(agg.isel(time=0).values, blocks, rtol=1e-6)
