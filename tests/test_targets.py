"""Footprints summed onto polygons, H3 cells, windows and zones, against PYSTILT a25.

Real footprints: the demo project (idealized met, real ``hycs_std``), run once
per module. PYSTILT's side is its own ``stilt.footprint.aggregation.jacobian``
on the same footprint values (its stored-cell table) and its own ``Mesh`` /
``Zones`` of the same geometries; a hand-checked case and a shapely reference
check the weights themselves.
"""

from __future__ import annotations

import warnings

import dask
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import xarray as xr
from demo_helpers import computing_refused, demo_bins, run_demo

from pystilt_dask.analysis import h3_cells, targets, weights, windows

gpd = pytest.importorskip("geopandas")
shapely = pytest.importorskip("shapely")
# Imported here, before conftest's `_our_accessor` takes `DataArray.stilt` back for each test.
pystilt = pytest.importorskip("stilt")

BINS = demo_bins("2h")


@pytest.fixture(scope="module")
def foot(tmp_path_factory) -> xr.DataArray:
    foot = run_demo(tmp_path_factory.mktemp("demo")).footprints["default"].load()
    assert float(foot.sum()) > 0
    return foot


def _polygons(n: int, seed: int = 0, crs: str = "EPSG:4326"):
    """``n`` star-shaped (non-convex) polygons over the demo footprints, one with a hole."""
    rng = np.random.default_rng(seed)
    shapes = []
    for k in range(n):
        cx, cy = rng.uniform(-101.5, -99.0), rng.uniform(39.5, 40.8)
        angle = np.sort(rng.uniform(0, 2 * np.pi, 9))
        radius = rng.uniform(0.1, 0.5, 9)
        shape = shapely.Polygon(np.c_[cx + radius * np.cos(angle), cy + radius * np.sin(angle)])
        if k == 0:
            shape = shape.difference(shapely.Point(cx, cy).buffer(0.05))
        shapes.append(shape)
    index = pd.Index([f"p{k}" for k in range(n)], name="region")
    return gpd.GeoDataFrame(geometry=shapes, index=index, crs="EPSG:4326").to_crs(crs)


def _pystilt_aggregate(foot: xr.DataArray, target, bins: pd.IntervalIndex) -> np.ndarray:
    """PYSTILT's Jacobian of the same footprint values, as (simulation, bin, target)."""
    from stilt.footprint.aggregation import jacobian
    from stilt.footprint.config import FootprintConfig

    values = foot.values
    sim, lag, y, x = np.nonzero(values)
    ids = list(foot["simulation"].values)
    table = pa.table(
        {
            "receptor": pa.array(np.asarray(ids)[sim]).dictionary_encode(),
            "hour": pa.array(foot["lag"].values[lag].astype(np.int16)),
            "y": pa.array(y.astype(np.int16)),
            "x": pa.array(x.astype(np.int16)),
            "foot": pa.array(values[sim, lag, y, x]),
        }
    )
    a = foot.attrs
    grid = pystilt.Grid(
        xmin=a["footprint_xmin"], xmax=a["footprint_xmax"], ymin=a["footprint_ymin"],
        ymax=a["footprint_ymax"], xres=a["footprint_xres"], yres=a["footprint_yres"],
    )  # fmt: skip
    H = jacobian(table, FootprintConfig(grid=grid), target, bins, ids)
    assert list(H.receptors) == ids and not H.empty
    return H.data.toarray().reshape(len(ids), len(bins), -1), H.columns


def _assert_equals_pystilt(foot, ours_target, their_target, bins=BINS) -> xr.DataArray:
    ours = foot.stilt.aggregate(ours_target, bins).compute()
    theirs, columns = _pystilt_aggregate(foot.compute(), their_target, bins)
    cells = columns.get_level_values(1)[: theirs.shape[2]]
    ours_sorted = ours.sel({ours.dims[2]: cells.to_numpy()})
    np.testing.assert_allclose(ours_sorted.values, theirs, rtol=1e-6, atol=1e-9)
    assert float(ours.sum()) > 0.1 * float(foot.sum())  # the targets do meet the footprints
    return ours


def _pystilt_zones(labels: xr.DataArray):
    """PYSTILT's Zones of ``labels`` on their own grid (a regular one)."""
    lat, lon = labels["lat"].values, labels["lon"].values
    dx, dy = lon[1] - lon[0], lat[1] - lat[0]
    bounds = [lon[0] - dx / 2, lon[-1] + dx / 2, lat[0] - dy / 2, lat[-1] + dy / 2, dx, dy]
    xmin, xmax, ymin, ymax, xres, yres = (round(float(v), 9) for v in bounds)  # whole cells
    grid = pystilt.Grid(xmin=xmin, xmax=xmax, ymin=ymin, ymax=ymax, xres=xres, yres=yres)
    cells = grid.index  # (lon, lat) pairs, in PYSTILT's order
    assert len(cells) == labels.size
    at = {
        d: xr.DataArray(cells.get_level_values(d).to_numpy(), dims="cell") for d in ("lon", "lat")
    }
    picked = labels.sel(at, method="nearest")
    return pystilt.Zones(base=grid, labels=tuple(str(v) for v in picked.values))


@pytest.mark.pystilt
@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:32614"])  # degrees; UTM metres
def test_polygons_equal_pystilt(foot, crs):
    gdf = _polygons(20, crs=crs)
    ours = _assert_equals_pystilt(foot, gdf, pystilt.Mesh.from_geodataframe(gdf))
    assert ours.dims == ("simulation", "time_bin", "region")
    assert list(ours["region"].values) == list(gdf.index)
    assert (ours["time_bin_end"] - ours["time_bin"] == np.timedelta64(2, "h")).all()


@pytest.mark.pystilt
def test_h3_cells_equal_pystilt(foot):
    bounds = (-103.0, 38.5, -98.0, 41.5)
    cells = h3_cells(bounds, 5)
    theirs = pystilt.Mesh.from_h3(5, bounds)
    assert set(cells.index) == set(theirs.index)  # the same cells for a box
    ours = _assert_equals_pystilt(foot, cells, theirs)
    assert ours.dims[2] == "cell" and ours.sizes["cell"] == len(cells)


@pytest.mark.pystilt
def test_windows_equal_pystilt(foot):
    sources = [(-100.3, 40.0), (-99.9, 40.2), (-101.0, 39.9)]
    boxes = windows(sources, (0.5, 0.3), ids=["plant", "mine", "city"])
    theirs = pystilt.Mesh.from_windows(sources, (0.5, 0.3), ids=["plant", "mine", "city"])
    ours = _assert_equals_pystilt(foot, boxes, theirs)
    assert list(ours["source"].values) == ["plant", "mine", "city"]
    # Points from a GeoSeries bring their CRS and index.
    points = gpd.GeoSeries(
        gpd.points_from_xy(*zip(*sources, strict=True)), crs="EPSG:4326",
        index=pd.Index(["a", "b", "c"], name="stack"),
    )  # fmt: skip
    from_points = windows(points, (0.5, 0.3))
    assert list(from_points.index) == ["a", "b", "c"] and from_points.index.name == "stack"
    np.testing.assert_allclose(from_points.total_bounds, boxes.total_bounds)


@pytest.mark.pystilt
def test_zones_on_the_footprint_grid_equal_pystilt(foot):
    lat, lon = foot["lat"].values, foot["lon"].values
    quadrant = (lat[:, None] > 40.0) * 2 + (lon[None, :] > -100.3)
    names = np.array(["sw", "se", "nw", "ne"])[quadrant]
    labels = xr.DataArray(names, coords={"lat": lat, "lon": lon}, name="quadrant")
    ours = _assert_equals_pystilt(foot, labels, _pystilt_zones(labels))
    assert ours.dims[2] == "quadrant" and sorted(ours["quadrant"].values) == [
        "ne",
        "nw",
        "se",
        "sw",
    ]
    # The zones tile the grid: every footprint is there whole.
    np.testing.assert_allclose(ours.sum(["time_bin", "quadrant"]), foot.sum(["lag", "lat", "lon"]),
                               rtol=1e-6)  # fmt: skip


@pytest.mark.pystilt
def test_zones_on_another_grid_equal_pystilt(foot):
    # A coarser grid, shifted so that footprint cells straddle its cells.
    lon = np.arange(-103.1, -97.9, 0.4)[:13] + 0.2
    lat = np.arange(38.4, 41.6, 0.2)[:16] + 0.1
    codes = np.random.default_rng(3).integers(0, 7, (lat.size, lon.size))
    labels = xr.DataArray(codes, coords={"lat": lat, "lon": lon}, name="landcover")
    theirs = _pystilt_zones(labels.astype(str))
    ours = _assert_equals_pystilt(foot, labels.astype(str), theirs)
    # Integer labels are zones too, and give the same numbers.
    as_ints = foot.stilt.aggregate(labels, BINS).compute()
    np.testing.assert_allclose(as_ints.values, ours.sel(landcover=[str(v) for v in
                               as_ints["landcover"].values]).values, rtol=1e-12)  # fmt: skip


def test_a_hand_checked_case():
    # A 4 x 3 grid of unit cells (edges 0..4, 0..3) in its own plane coordinates.
    x, y = np.arange(4) + 0.5, np.arange(3) + 0.5
    triangle = shapely.Polygon([(0, 0), (2, 0), (0, 2)])  # cell (0,0) whole, (0,1), (1,0) halves
    frame = shapely.box(1.5, 0.5, 3.5, 2.5).difference(shapely.box(2, 1, 3, 2))  # a hole
    got = weights.polygon_weights(np.array([triangle, frame], dtype=object), x, y).toarray()
    expected = np.zeros((12, 2))
    expected[[0, 1, 4], 0] = [1.0, 0.5, 0.5]  # cells y * 4 + x
    # The frame: quarter cells at its corners, halves along its sides, nothing in the hole.
    expected[[1, 2, 3, 5, 6, 7, 9, 10, 11], 1] = [0.25, 0.5, 0.25, 0.5, 0.0, 0.5, 0.25, 0.5, 0.25]
    np.testing.assert_allclose(got, expected, atol=1e-12)
    # The same from shapely's own intersections.
    edges = np.arange(5.0), np.arange(4.0)
    boxes = [shapely.box(edges[0][i], edges[1][j], edges[0][i] + 1, edges[1][j] + 1)
             for j in range(3) for i in range(4)]  # fmt: skip
    reference = np.array([[b.intersection(p).area for p in (triangle, frame)] for b in boxes])
    np.testing.assert_allclose(got, reference, atol=1e-12)


def test_weights_equal_shapely_on_random_polygons():
    x = np.arange(-103, -98, 0.05) + 0.025
    y = np.arange(41.5, 38.5, -0.05) - 0.025  # decreasing, as many files store latitudes
    gdf = _polygons(30, seed=4)
    got = weights.polygon_weights(np.asarray(gdf.geometry.values), x, y).toarray()
    cells = [shapely.box(xi - 0.025, yj - 0.025, xi + 0.025, yj + 0.025) for yj in y for xi in x]
    boxes = np.array(cells, dtype=object)
    reference = np.stack(
        [shapely.area(shapely.intersection(boxes, p)) / shapely.area(boxes) for p in gdf.geometry],
        axis=1,
    )
    np.testing.assert_allclose(got, reference, atol=1e-9)


def test_tiling_targets_conserve_totals(foot):
    # Voronoi cells of random points, cut to the footprint grid: they tile it.
    a = foot.attrs
    domain = shapely.box(a["footprint_xmin"], a["footprint_ymin"], a["footprint_xmax"],
                         a["footprint_ymax"])  # fmt: skip
    points = shapely.MultiPoint(
        np.random.default_rng(5).uniform((-103, 38.5), (-98, 41.5), (40, 2))
    )
    tiles = shapely.intersection(
        np.asarray(shapely.get_parts(shapely.voronoi_polygons(points, extend_to=domain))), domain
    )
    gdf = gpd.GeoSeries(tiles, crs="EPSG:4326")
    agg = foot.stilt.aggregate(gdf, BINS).compute()
    assert agg.dims == ("simulation", "time_bin", "target")  # an unnamed index
    totals = foot.sum(["lag", "lat", "lon"]).values.astype(np.float64)
    np.testing.assert_allclose(agg.sum(["time_bin", "target"]).values, totals, rtol=1e-6)
    # Each bin holds the totals of the layers that start in it.
    layers = foot.sum(["lat", "lon"]).values.astype(np.float64)
    which = np.searchsorted(BINS.left.values, foot["time"].values, side="right") - 1
    by_bin = np.zeros((foot.sizes["simulation"], len(BINS)))
    np.add.at(by_bin, (np.arange(layers.shape[0])[:, None], which), layers)
    np.testing.assert_allclose(agg.sum("target").values, by_bin, rtol=1e-6, atol=1e-12)


def test_any_footprint_shaped_array(foot):
    # Ones on every cell: each target gets its area in cells, once per layer of the bin.
    ones = xr.ones_like(foot)
    gdf = _polygons(5, seed=6)
    agg = ones.stilt.aggregate(gdf).compute()
    cell_area = foot.attrs["footprint_xres"] * foot.attrs["footprint_yres"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # geopandas: area in a geographic CRS
        expected = foot.sizes["lag"] * gdf.area.values / cell_area
    np.testing.assert_allclose(agg.isel(time_bin=0).values, np.tile(expected, (4, 1)), rtol=1e-9)
    # A numpy-backed array works as well as a lazy one.
    in_memory = foot.compute().stilt.aggregate(gdf, BINS).values
    np.testing.assert_allclose(in_memory, foot.stilt.aggregate(gdf, BINS).values, rtol=1e-12)


def test_building_computes_nothing(foot):
    gdf = _polygons(5)
    labels = xr.DataArray(
        (foot["lat"] > 40).astype(int).values[:, None] * np.ones(foot.sizes["lon"], int),
        coords={"lat": foot["lat"].values, "lon": foot["lon"].values},
        name="zone",
    )

    with computing_refused():
        built = [
            foot.stilt.aggregate(gdf, BINS),
            foot.stilt.aggregate(labels),
            foot.stilt.jacobian(gdf, BINS),
            foot.stilt.jacobian(labels, BINS, sparse=True).data,
        ]
    for lazy in built:
        assert isinstance(lazy.data if hasattr(lazy, "dims") else lazy, dask.array.Array)


def test_weights_are_built_once_and_cached(foot, monkeypatch):
    gdf = _polygons(3, seed=7)
    dims = ("lat", "lon")
    first = targets.resolve(foot, dims, gdf)
    calls = []
    monkeypatch.setattr(weights, "polygon_weights", lambda *a: calls.append(a))
    assert targets.resolve(foot, dims, gdf.copy()) is first  # an equal target: cached
    assert calls == []
    monkeypatch.undo()
    for seed in range(targets.CACHE_SIZE):  # as many other targets: the first is evicted
        targets.resolve(foot, dims, _polygons(2, seed=100 + seed))
    assert targets.resolve(foot, dims, gdf) is not first
    assert len(targets._cache) <= targets.CACHE_SIZE


def test_bad_targets_are_clear_errors(foot):
    points = gpd.GeoSeries(gpd.points_from_xy([-100.0], [40.0]), crs="EPSG:4326")
    with pytest.raises(ValueError, match="targets must be non-empty polygons; target 0 is Point"):
        foot.stilt.aggregate(points)
    twice = _polygons(2)
    twice.index = ["a", "a"]
    with pytest.raises(ValueError, match=r"target ids must be unique; repeated: \['a'\]"):
        foot.stilt.aggregate(twice)
    clash = _polygons(2).rename_axis("lat")
    with pytest.raises(ValueError, match="named 'lat', a name the footprint already uses"):
        foot.stilt.aggregate(clash)
    labels = xr.DataArray(np.zeros((3, 3), int), dims=("y", "x"), name="z")
    with pytest.raises(ValueError, match=r"zone labels must be a 2-D DataArray on \(lat, lon\)"):
        foot.stilt.aggregate(labels)
    with pytest.raises(ValueError, match="there are no targets"):
        foot.stilt.aggregate(_polygons(1).iloc[:0])
    with pytest.raises(ValueError, match="there are no targets"):
        unlabelled = xr.full_like(foot.isel(simulation=0, lag=0), None, dtype=object)
        foot.stilt.jacobian(unlabelled.rename("z"), sparse=True)
    projected = foot.rename(lat="y", lon="x")
    projected.attrs = {}
    with pytest.raises(ValueError, match="the footprint grid's CRS is unknown"):
        projected.stilt.aggregate(_polygons(1))
