"""Footprint speed and peak memory: pystilt_dask vs PYSTILT on the same particles.

Run with ``pytest benchmarks/bench_footprint.py --benchmark-only`` (add ``-s`` to
see the peak-memory lines; on a shared machine ``--benchmark-timer=time.process_time``
measures CPU time, which other processes disturb less). The particles are a
seeded synthetic 24 h backward run of 1000 particles (1.44 M rows; ``tests/footprint_helpers.py``,
``random_walk_particles``): the shared met covers only 12 h. It drifts ~1.2°
west-south-west and spreads to ~0.1° after a day; ~55 % of steps touch the
surface. Two grids:

* ``0.01deg``: 800 x 500 cells of 0.01° (8° x 5°), holding the whole plume;
  kernels reach 23 x 23 cells.
* ``0.002deg``: 800 x 500 cells of 0.002° (1.6° x 1°) around the receptor, which
  cuts the plume; kernels reach 119 x 119 cells, so stamping dominates.

The store's path (``store-chunk`` group) is timed both ways on the 0.01° grid:
``core`` is what a simulation runs (``footprint_layers`` placed on the chunk by
``place_layers``), ``dataarray`` the path it replaced (``calc_footprint``, then
``to_chunk`` checking the DataArray against the grid and placing it).

Peak memory is the tracemalloc peak of one call above what was allocated before
it (numpy and pandas report to tracemalloc; our large arrays are all allocated
by numpy, numba kernels only allocate per-bucket scratch).
"""

from __future__ import annotations

import datetime as dt
import sys
import tracemalloc
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from footprint_helpers import (  # noqa: E402
    as_pystilt_table,
    pystilt_grid,
    random_walk_particles,
)

from pystilt_dask.config import FootprintConfig, HysplitConfig  # noqa: E402
from pystilt_dask.footprint import calc_footprint, footprint_layers  # noqa: E402
from pystilt_dask.receptors import PointReceptor  # noqa: E402
from pystilt_dask.store.footprints import place_layers, to_chunk  # noqa: E402

RELEASE = {
    "time": dt.datetime(2019, 5, 30, 10),
    "longitude": -111.85,
    "latitude": 40.77,
    "altitude": 5.0,
}
GRIDS = {
    "0.01deg": FootprintConfig(xmin=-116.0, xmax=-108.0, ymin=38.0, ymax=43.0, xres=0.01),
    "0.002deg": FootprintConfig(xmin=-112.9, xmax=-111.3, ymin=40.2, ymax=41.2, xres=0.002),
}
ROUNDS = {"ours": 5, "pystilt": 3}
_PEAKS: dict[tuple[str, str], float] = {}


@pytest.fixture(scope="module")
def particles():
    return random_walk_particles(n_particles=1000, n_minutes=1440, seed=0)


def _ours(particles):
    receptor = PointReceptor(**RELEASE)
    return lambda config: calc_footprint(particles, receptor, config)


def _pystilt(particles):
    stilt = pytest.importorskip("stilt")
    table = as_pystilt_table(particles)
    receptor = stilt.PointReceptor(**RELEASE)

    def run(config):
        grid = pystilt_grid(config)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return stilt.calc_footprint(table, receptor, grid, smooth_factor=config.smooth_factor)

    return run


def _peak_mib(func, config) -> float:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        result = func(config)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    return (peak - before) / 2**20


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("impl", ["ours", "pystilt"])
def test_footprint(benchmark, particles, impl, grid):
    func = (_ours if impl == "ours" else _pystilt)(particles)
    config = GRIDS[grid]
    benchmark.group = f"footprint-1000p-24h-{grid}"
    foot = benchmark.pedantic(func, args=(config,), rounds=ROUNDS[impl], warmup_rounds=1)
    assert foot.sizes["time"] == 24
    peak = _peak_mib(func, config)
    _PEAKS[impl, grid] = peak
    benchmark.extra_info["peak_mib"] = round(peak, 1)
    print(f"\n{impl} {grid}: peak {peak:.1f} MiB")
    if ("ours", grid) in _PEAKS and ("pystilt", grid) in _PEAKS:
        ratio = _PEAKS["pystilt", grid] / _PEAKS["ours", grid]
        benchmark.extra_info["pystilt_over_ours_peak"] = round(ratio, 2)
        print(f"{grid}: PYSTILT peak / ours = {ratio:.2f}")


def _store_path(particles, path: str):
    receptor = PointReceptor(**RELEASE)
    hysplit = HysplitConfig(n_hours=-24)
    if path == "core":
        return lambda config: place_layers(
            *footprint_layers(particles, receptor, config), config, hysplit
        )
    return lambda config: to_chunk(
        calc_footprint(particles, receptor, config), config, hysplit, receptor.time
    )


@pytest.mark.parametrize("path", ["core", "dataarray"])
def test_store_chunk(benchmark, particles, path):
    func = _store_path(particles, path)
    config = GRIDS["0.01deg"]
    benchmark.group = "store-chunk-1000p-24h-0.01deg"
    chunk = benchmark.pedantic(func, args=(config,), rounds=ROUNDS["ours"], warmup_rounds=1)
    assert chunk.shape == (24, 500, 800)
    peak = _peak_mib(func, config)
    benchmark.extra_info["peak_mib"] = round(peak, 1)
    print(f"\nstore chunk via {path}: peak {peak:.1f} MiB")
