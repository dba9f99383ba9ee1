"""Benchmark of ``foot.stilt.convolve`` against PYSTILT's per-receptor Jacobian, same data.

Run with ``pytest benchmarks/bench_analysis.py --benchmark-only``; the comparison
section printed at the end gives both sides.

The data: ``N`` synthetic footprints (default 10,000; ``STILT_BENCH_ANALYSIS_N``
sets another) of 24 hourly layers on a 300 × 300 grid, ~1 % of cells non-zero (a
plume drifting upwind and widening with age), for receptors at 100 sites hourly.
Built once, in two processes, and cached under ``~/.cache/pystilt_dask_bench/``:

* ours: a real project store (registered receptors, chunks published with
  :func:`pystilt_dask.store.publish.publish_footprint`);
* PYSTILT's: one zstd Parquet file of non-zero cells per receptor in PYSTILT's
  footprint schema (``hour, y, x, foot``), written with its own ``write_parquet``.

The measurement: the enhancement of every receptor for an hourly flux on the
footprint grid. Ours is ``foot.stilt.convolve(flux).compute()`` on dask's
threaded scheduler (2 threads). PYSTILT's is what ``Project.jacobian`` runs:
``stilt.footprint.aggregation._jacobian`` reading each receptor's file in 2
threads into a sparse H (target: its own grid, hourly bins), then ``H @ x``.
Each side reports footprints per second, the process's CPU time and its peak
RSS during the call (sampled every 10 ms); both sides' enhancements are checked equal. Before
the timed call each side runs once on one footprint (imports, compiled kernels
loaded). The same convolution also runs on a LocalCluster of 2 worker processes,
beside the threads (each warmed up the same way, in every worker process), with
the bytes sent between workers.

The Jacobian onto 1,000 polygons (Voronoi tiles of the grid, a GeoDataFrame)
and 6-hour bins: ours is ``foot.stilt.jacobian(tiles, bins, sparse=True)``
written with ``to_parquet`` (weights, every footprint, every block written);
PYSTILT's is ``_jacobian`` onto ``Mesh.from_geodataframe(tiles)``, one receptor
at a time in 2 threads, held in memory. Both report wall time, CPU time, peak
RSS and its rise during the call (an earlier test in the session may leave the
process larger), ours the bytes written; the two matrices are checked equal.
Each side first runs once on one footprint and three other tiles. The overlap weights
alone are timed too: our clipping kernel against shapely's intersections of
every candidate cell box (an STRtree query per polygon).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import psutil
import pytest
import xarray as xr
from conftest import CACHE

from pystilt_dask.accessor import register
from pystilt_dask.analysis import read_jacobian, weights
from pystilt_dask.config import ModelConfig
from pystilt_dask.model import Model
from pystilt_dask.receptors import PointReceptor
from pystilt_dask.store import publish

N = int(os.environ.get("STILT_BENCH_ANALYSIS_N", "10000"))
N_LAG, N_GRID, SITES = 24, 300, 100
GRID = {"xmin": -113.0, "xmax": -110.0, "ymin": 39.5, "ymax": 42.5, "xres": 0.01}
START = datetime(2023, 7, 1, 0)
WORKERS = 2


def receptors(n: int) -> list[PointReceptor]:
    """``n`` receptors: ``SITES`` sites, hourly."""
    return [
        PointReceptor(
            time=START + timedelta(hours=i // SITES),
            longitude=-111.9 + 0.01 * (i % SITES),
            latitude=40.7,
            altitude=5,
        )
        for i in range(n)
    ]


def synthetic_chunk(i: int) -> np.ndarray:
    """Footprint ``i`` as a ``(lag, y, x)`` chunk: lags -24..-1, a plume widening with age."""
    rng = np.random.default_rng(i)
    chunk = np.zeros((N_LAG, N_GRID, N_GRID), dtype=np.float32)
    cy, cx = rng.integers(100, 200, 2)
    drift = rng.uniform(2.0, 5.0, 2)
    for k in range(N_LAG):
        age = N_LAG - k  # hours before the receptor time
        sigma = 1.0 + 0.6 * age
        y0, x0 = cy - drift[0] * age / 2, cx + drift[1] * age
        half = int(2 * sigma) + 1
        ys = np.arange(max(int(y0) - half, 0), min(int(y0) + half + 1, N_GRID))
        xs = np.arange(max(int(x0) - half, 0), min(int(x0) + half + 1, N_GRID))
        if ys.size == 0 or xs.size == 0:
            continue
        d2 = ((ys[:, None] - y0) ** 2 + (xs[None, :] - x0) ** 2) / sigma**2
        values = np.exp(-d2 / 2) * rng.gamma(2.0, 0.5, d2.shape) * 1e-3 / age
        values[d2 > 4] = 0  # a round plume within 2 sigma
        chunk[k, ys[:, None], xs[None, :]] = values
    return chunk


def _write_rows(root: str, rows: range) -> None:
    """Publish footprints ``rows`` to our store and to PYSTILT's Parquet files."""
    import pyarrow as pa
    from stilt._paths import write_parquet
    from stilt.footprint.io import FOOTPRINT_SCHEMA

    model = Model(Path(root) / "project")
    ids = model.simulations.ids()
    lags = np.arange(-N_LAG, 0, dtype=np.int16)
    for row in rows:
        chunk = synthetic_chunk(row)
        publish.publish_footprint(model.location, "bench", ids[row], row, chunk, empty=False)
        t, y, x = np.nonzero(chunk)
        table = pa.table(
            {
                "receptor": pa.array([ids[row]] * len(t)).dictionary_encode(),
                "hour": pa.array(lags[t]),
                "y": pa.array(y.astype(np.int16)),
                "x": pa.array(x.astype(np.int16)),
                "foot": pa.array(chunk[t, y, x]),
            },
            schema=FOOTPRINT_SCHEMA,
        )
        write_parquet(table, Path(root) / "pystilt" / f"{ids[row]}.parquet")


def build(root: Path) -> Path:
    """Build the stores of ``N`` footprints under ``root`` unless built (``WORKERS`` processes)."""
    done = root / "complete"
    if not done.exists():
        config = ModelConfig.from_dict(
            {
                "mets": {"met": {"directory": str(root / "met"), "file_format": "%Y%m%d"}},
                "hysplit": {"n_hours": -N_LAG},
                "footprints": {"bench": GRID},
            }
        )
        Model(root / "project", receptors(N), config).register_pending()
        step = 250
        with ProcessPoolExecutor(WORKERS) as pool:
            jobs = [
                pool.submit(_write_rows, str(root), range(a, min(a + step, N)))
                for a in range(0, N, step)
            ]
            for job in jobs:
                job.result()
        done.touch()
    return root


@pytest.fixture(scope="module")
def data() -> Path:
    """The cached stores of ``N`` footprints, chunks stored as their non-zero cells."""
    return build(CACHE / f"analysis_nonzero_{N}x{N_LAG}x{N_GRID}x{N_GRID}")


def _flux(foot: xr.DataArray) -> xr.DataArray:
    times = pd.date_range(
        pd.Timestamp(foot["time"].values.min()), pd.Timestamp(foot["time"].values.max()), freq="h"
    )
    rng = np.random.default_rng(0)
    values = rng.gamma(2.0, 1.0, (len(times), N_GRID, N_GRID))
    coords = {"time": times, "lat": foot["lat"].values, "lon": foot["lon"].values}
    return xr.DataArray(values, dims=("time", "lat", "lon"), coords=coords, name="flux")


class PeakRSS:
    """The process's peak resident memory while the ``with`` block runs (10 ms samples).

    Also the CPU time the process used meanwhile (``cpu``, every thread's), which
    other work on a shared machine changes far less than the wall time.
    """

    def __enter__(self) -> PeakRSS:
        self._cpu = time.process_time()
        self._process = psutil.Process()
        self.peak = self.start = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)
        self.cpu = time.process_time() - self._cpu


def test_convolve_against_pystilt(benchmark, data, bench_report):
    stilt = pytest.importorskip("stilt")
    import pyarrow.parquet as pq
    from stilt.footprint.aggregation import _jacobian
    from stilt.footprint.config import FootprintConfig as TheirConfig

    register()  # importing PYSTILT took `foot.stilt`
    foot = Model(data / "project").footprints["bench"].load()
    flux = _flux(foot)
    ids = list(foot["simulation"].values)

    def ours() -> np.ndarray:
        with dask.config.set(scheduler="threads", num_workers=WORKERS):
            return foot.stilt.convolve(flux).values

    _warm_up(*_first(foot, flux))
    with PeakRSS() as memory:
        started = time.perf_counter()
        enhancement = benchmark.pedantic(ours, rounds=1, iterations=1)
        our_seconds = time.perf_counter() - started
    our_peak, our_cpu = memory.peak, memory.cpu

    grid = stilt.Grid(**{k: GRID[k] for k in ("xmin", "xmax", "ymin", "ymax")},
                      xres=GRID["xres"], yres=GRID["xres"])  # fmt: skip
    config = TheirConfig(grid=grid)
    times = pd.DatetimeIndex(flux["time"].values)
    bins = pd.IntervalIndex.from_arrays(times, times + pd.Timedelta("1h"), closed="left")
    folder = data / "pystilt"

    def read(receptor_id: str):
        return pq.read_table(folder / f"{receptor_id}.parquet", columns=["hour", "y", "x", "foot"])

    _jacobian(read, ids[:1], config, grid, bins, workers=WORKERS)  # its warm-up
    with PeakRSS() as memory:
        started = time.perf_counter()
        H = _jacobian(read, ids, config, grid, bins, workers=WORKERS)
        # PYSTILT's state order: time, then lon, then lat (its Grid.index).
        theirs = H.data @ flux.transpose("time", "lon", "lat").values.ravel()
        their_seconds = time.perf_counter() - started
    their_peak, their_cpu = memory.peak, memory.cpu

    np.testing.assert_allclose(enhancement, theirs, rtol=1e-5)
    group = f"convolve {N} footprints ({N_LAG} x {N_GRID} x {N_GRID}), {WORKERS} threads"
    bench_report.ours(
        group, seconds=our_seconds, footprints_per_s=N / our_seconds, cpu_s=our_cpu,
        peak_rss_mb=our_peak / 2**20,
    )  # fmt: skip
    bench_report.baseline(
        group, "PYSTILT", seconds=their_seconds, footprints_per_s=N / their_seconds,
        cpu_s=their_cpu, peak_rss_mb=their_peak / 2**20,
    )  # fmt: skip
    assert our_peak < 2**30


def test_convolve_on_processes_against_threads(data, bench_report):
    """The same convolution on a LocalCluster of 2 worker processes and on 2 threads."""
    from distributed import Client, LocalCluster

    foot = Model(data / "project").footprints["bench"].load()
    flux = _flux(foot)
    _warm_up(*_first(foot, flux))
    with dask.config.set(scheduler="threads", num_workers=WORKERS):
        started = time.perf_counter()
        on_threads = foot.stilt.convolve(flux).values
    thread_seconds = time.perf_counter() - started
    with (
        LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True) as cluster,
        Client(cluster) as client,
    ):
        client.run(_warm_up, *_first(foot, flux))
        started = time.perf_counter()
        on_processes = foot.stilt.convolve(flux).values
        process_seconds = time.perf_counter() - started
        moved = sum(client.run(_bytes_sent).values())
    np.testing.assert_array_equal(on_processes, on_threads)
    group = f"convolve {N} footprints: {WORKERS} processes against {WORKERS} threads"
    bench_report.ours(
        group, seconds=process_seconds, footprints_per_s=N / process_seconds,
        mb_between_workers=moved / 2**20,
    )  # fmt: skip
    bench_report.baseline(
        group, "threads", seconds=thread_seconds, footprints_per_s=N / thread_seconds
    )


def _first(foot: xr.DataArray, flux: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    """The first simulation and the flux steps its layers meet."""
    first = foot.isel(simulation=slice(0, 1))
    times = first["time"].values
    return first, flux.sel(time=slice(times.min(), times.max()))


def _warm_up(foot: xr.DataArray, flux: xr.DataArray) -> None:
    """Import the analysis and load its compiled kernels in this process, as a first call does.

    Run before timing on both sides (in this process, and in each worker
    process), so that neither side's time holds a process's one-time start.
    """
    from pystilt_dask.analysis import convolve

    with dask.config.set(scheduler="sync"):
        convolve(foot, flux).values  # noqa: B018 (computes)


def _bytes_sent(dask_worker) -> int:
    """Bytes a worker sent to other workers (distributed logs each transfer)."""
    return sum(entry["total"] for entry in dask_worker.transfer_outgoing_log)


N_POLYGONS = 1000


def _tiles(n: int):
    """``n`` Voronoi tiles of random points, cut to the footprint grid: they tile it."""
    import geopandas as gpd
    import shapely

    domain = shapely.box(GRID["xmin"], GRID["ymin"], GRID["xmax"], GRID["ymax"])
    points = np.random.default_rng(1).uniform(
        (GRID["xmin"], GRID["ymin"]), (GRID["xmax"], GRID["ymax"]), (n, 2)
    )
    cells = shapely.get_parts(
        shapely.voronoi_polygons(shapely.MultiPoint(points), extend_to=domain)
    )
    tiles = shapely.intersection(np.asarray(cells), domain)
    index = pd.Index([f"t{k:04d}" for k in range(len(tiles))], name="tile")
    return gpd.GeoDataFrame(geometry=tiles, index=index, crs="EPSG:4326")


def _shapely_weights(geometries, x: np.ndarray, y: np.ndarray, res: float) -> int:
    """The same fractions from shapely (boxes queried per polygon); returns the non-zeros."""
    import shapely

    xs, ys = np.meshgrid(x, y)
    boxes = shapely.box(xs - res / 2, ys - res / 2, xs + res / 2, ys + res / 2).ravel()
    tree = shapely.STRtree(boxes)
    count = 0
    for polygon in geometries:
        hits = tree.query(polygon)
        area = shapely.area(shapely.intersection(boxes[hits], polygon))
        count += int((area > 0).sum())
    return count


def test_jacobian_onto_polygons_against_pystilt(benchmark, data, bench_report, tmp_path):
    stilt = pytest.importorskip("stilt")
    pytest.importorskip("geopandas")
    import pyarrow.parquet as pq
    from stilt.footprint.aggregation import _jacobian
    from stilt.footprint.config import FootprintConfig as TheirConfig

    register()  # importing PYSTILT took `foot.stilt`
    foot = Model(data / "project").footprints["bench"].load()
    ids = list(foot["simulation"].values)
    tiles = _tiles(N_POLYGONS)
    start = pd.Timestamp(foot["time"].values.min()).floor("6h")
    end = pd.Timestamp(foot["time"].values.max()).ceil("6h") + pd.Timedelta("6h")
    bins = pd.interval_range(start, end, freq="6h", closed="left")

    x, y = foot["lon"].values, foot["lat"].values
    started = time.perf_counter()
    ours_w = weights.polygon_weights(np.asarray(tiles.geometry.values), x, y)
    kernel_seconds = time.perf_counter() - started
    started = time.perf_counter()
    shapely_nnz = _shapely_weights(tiles.geometry.values, x, y, GRID["xres"])
    shapely_seconds = time.perf_counter() - started
    assert shapely_nnz == ours_w.nnz

    folder = tmp_path / "H"

    def ours() -> int:
        with dask.config.set(scheduler="threads", num_workers=WORKERS):
            return foot.stilt.jacobian(tiles, bins, sparse=True).to_parquet(str(folder))

    # Warm-ups on one footprint and a few other tiles (the timed runs build the weights).
    few = _tiles(3)
    with dask.config.set(scheduler="sync"):
        foot.isel(simulation=slice(0, 1)).stilt.jacobian(few, bins, sparse=True).to_scipy()
    with PeakRSS() as memory:
        started = time.perf_counter()
        written = benchmark.pedantic(ours, rounds=1, iterations=1)
        our_seconds = time.perf_counter() - started
    ours_memory = memory

    grid = stilt.Grid(**{k: GRID[k] for k in ("xmin", "xmax", "ymin", "ymax")},
                      xres=GRID["xres"], yres=GRID["xres"])  # fmt: skip
    mesh = stilt.Mesh.from_geodataframe(tiles)
    pystilt_folder = data / "pystilt"

    def read(receptor_id: str):
        return pq.read_table(
            pystilt_folder / f"{receptor_id}.parquet", columns=["hour", "y", "x", "foot"]
        )

    config = TheirConfig(grid=grid)
    _jacobian(read, ids[:1], config, stilt.Mesh.from_geodataframe(few), bins, workers=WORKERS)
    with PeakRSS() as memory:
        started = time.perf_counter()
        theirs = _jacobian(read, ids, config, mesh, bins, workers=WORKERS)
        their_seconds = time.perf_counter() - started
    their_memory = memory

    with dask.config.set(scheduler="threads", num_workers=WORKERS):
        back = read_jacobian(str(folder)).to_scipy()
    difference = abs(back - theirs.data)
    assert difference.max() <= 1e-6 * abs(theirs.data).max()
    group = f"jacobian of {N} footprints onto {len(tiles)} polygons x {len(bins)} bins"
    bench_report.ours(
        group, seconds=our_seconds, cpu_s=ours_memory.cpu, peak_rss_mb=ours_memory.peak / 2**20,
        rss_rise_mb=(ours_memory.peak - ours_memory.start) / 2**20, mb_written=written / 2**20,
        nnz=float(back.nnz), weights_s=kernel_seconds,
    )  # fmt: skip
    bench_report.baseline(
        group, "PYSTILT", seconds=their_seconds, cpu_s=their_memory.cpu,
        peak_rss_mb=their_memory.peak / 2**20,
        rss_rise_mb=(their_memory.peak - their_memory.start) / 2**20,
        nnz=float(theirs.data.nnz),
    )  # fmt: skip
    bench_report.baseline(group, "shapely weights", weights_s=shapely_seconds)
