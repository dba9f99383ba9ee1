"""Campaign scale: N simulations end to end with the stand-in transport (issue #22).

``Model.run`` of N point receptors (2 h backward, 50 particles, one hourly
footprint on a 0.01° grid around them) on idealized met, with ``hysplit.executable``
naming the stand-in (:mod:`pystilt_dask.hysplit.standin`, a test double that
writes a ``PARTICLE_STILT.DAT`` in tens of milliseconds), on a LocalCluster of 2
one-thread worker *processes* (so the coordinator's CPU is its own: this process
runs the client and the scheduler). Everything but the transport is real: met
lookup and coverage checks, inputs, the run and its classification, parsing,
hnf_plume, footprints, the store's writes and completion. It measures:

* **throughput**: N / wall of ``Model.run`` (registration done before, timed apart),
  and N / span of the tasks (first start → last stop);
* **per-task time outside the transport**: each task's compute interval in the
  scheduler's task stream minus the wall of its ``run_hysplit`` call (timed on the
  workers by wrapping the name ``pystilt_dask.trajectory.run_hysplit``); median and
  mean over all but each worker's first task (which also pays imports: its sum is
  reported apart), and the stand-in's own wall and CPU per run beside it;
* **coordinator CPU share**: user + system CPU of this process over the run / its wall;
* **files per simulation** in the store after the run, with the count per top folder;
* **compaction** (``stilt-dask compact``'s :func:`~pystilt_dask.store.compact.compact`)
  after the run: its wall, the files per simulation after it, ``verify`` of the
  compacted store, and ``load()`` equal before and after (every footprint compared
  cell for cell, :data:`COMPARE_BLOCK` simulations at a time).

N comes from ``STILT_BENCH_CAMPAIGN_N`` (default 1000; the issue's size is 10⁴,
about ten times as long). No time goal is asserted; the test fails when a
simulation does not complete, a transport run goes untimed, the compacted store
does not verify or its footprints differ from those before compaction.

Run: ``python -m pytest benchmarks/bench_campaign.py --benchmark-only -s``
(N=1000: a few minutes on 2 cores). Not collected by a plain ``pytest``
(``testpaths`` is ``tests/``).
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import cloudpickle
import pandas as pd
import psutil
import pytest
import xarray as xr
from distributed import Client, LocalCluster, get_task_stream, get_worker

from pystilt_dask.config import ModelConfig
from pystilt_dask.execution.run import TASK_PREFIX
from pystilt_dask.hysplit.standin import write_standin
from pystilt_dask.meteorology.idealized import write_idealized_met
from pystilt_dask.model import Model
from pystilt_dask.store.compact import compact

N = int(os.environ.get("STILT_BENCH_CAMPAIGN_N", "1000"))
WORKERS = 2
MET_START = datetime(2024, 7, 1)
MET_HOURS = 48
N_HOURS = -2
# Receptor hours: every hour whose 2 h backward window lies in the met.
HOURS = range(-N_HOURS, MET_HOURS)
SITES_PER_ROW = 20
SPACING = 0.02  # degrees between sites: 20 per row, as many rows as N needs
GRID = {"xmin": -100.6, "xmax": -99.0, "ymin": 39.4, "ymax": 41.0, "xres": 0.01}
GROUP = "campaign"
COMPARE_BLOCK = 500  # simulations compared at a time before and after compaction


def _load() -> str:
    """The 1, 5 and 15 minute load averages (the machine is shared)."""
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def receptor_table(n: int) -> pd.DataFrame:
    """``n`` distinct point receptors: every receptor hour at a site, then the next site."""
    rows = []
    for i in range(n):
        site, hour = divmod(i, len(HOURS))
        row, column = divmod(site, SITES_PER_ROW)
        rows.append({
            "time": pd.Timestamp(MET_START) + pd.Timedelta(hours=HOURS[hour]),
            "longitude": round(-100.0 + SPACING * column, 6),
            "latitude": round(40.0 + SPACING * row, 6),
            "altitude": 5,
        })  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory) -> Model:
    """A project of N registered, not yet run simulations that use the stand-in."""
    folder = tmp_path_factory.mktemp("campaign")
    write_idealized_met(folder / "met", MET_START, MET_HOURS, center=(-100.0, 40.0))
    config = ModelConfig.from_dict(
        {
            "mets": {
                "idealized": {"directory": str(folder / "met"), "file_format": "%Y%m%d_%H"}
            },
            "hysplit": {
                "n_hours": N_HOURS, "numpar": 50, "seed": 7,
                "executable": str(write_standin(folder / "standin")),
            },
            "footprints": {"near": GRID},
        }
    )  # fmt: skip
    model = Model(folder / "project", receptor_table(N), config)
    started = time.perf_counter()
    model.register_pending()
    model.register_s = time.perf_counter() - started
    return model


def _instrument_transport() -> None:
    """On a worker: time every transport run (wall, and its child's CPU) by task key."""
    from pystilt_dask import trajectory

    if hasattr(trajectory.run_hysplit, "bench_runs"):
        return
    original = trajectory.run_hysplit
    runs: list[tuple[str, float, float]] = []

    def timed(*args, **kwargs):
        key = get_worker().get_current_task()
        usage, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
            runs.append((key, wall, cpu))

    timed.bench_runs = runs
    trajectory.run_hysplit = timed


def _transport_runs() -> list[tuple[str, float, float]]:
    from pystilt_dask import trajectory

    return list(getattr(trajectory.run_hysplit, "bench_runs", []))


def _files(root: Path) -> tuple[int, Counter]:
    """Files under ``root``, and how many under each top folder."""
    by_folder: Counter = Counter()
    for folder, _, names in os.walk(root):
        relative = Path(folder).relative_to(root).parts
        by_folder[relative[0] if relative else "."] += len(names)
    return sum(by_folder.values()), by_folder


def _footprint_blocks(model: Model) -> list[xr.DataArray]:
    """Every stored footprint, read now, :data:`COMPARE_BLOCK` simulations at a time."""
    foot = model.footprints["near"].load()
    return [
        foot.isel(simulation=slice(start, start + COMPARE_BLOCK)).compute(scheduler="threads")
        for start in range(0, foot.sizes["simulation"], COMPARE_BLOCK)
    ]


def _compacted(model: Model) -> dict[str, object]:
    """Compact the store; its wall, files per simulation, verify, and load() before == after."""
    before = _footprint_blocks(model)
    started = time.perf_counter()
    report = compact(model.location, model.config, model.registry())
    wall = time.perf_counter() - started
    n_files, by_folder = _files(Path(model.location.root))
    verified = model.verify()
    after = _footprint_blocks(model)
    # identical: the same values (NaN where NaN), coordinates and attributes.
    equal = len(before) == len(after) and all(
        a.identical(b) for a, b in zip(before, after, strict=True)
    )
    return {
        "compact_s": wall,
        "compacted_simulations": report.simulations,
        "files_per_simulation_after_compact": n_files / N,
        "files_by_folder_after_compact": " ".join(f"{k}={v}" for k, v in sorted(by_folder.items())),
        "verify_ok_after_compact": verified.ok,
        "load_equal_after_compact": equal,
    }


def test_campaign(benchmark, campaign, bench_report):
    model = campaign
    result = {}
    with LocalCluster(
        n_workers=WORKERS, threads_per_worker=1, processes=True, resources={"hysplit": 1},
        dashboard_address="127.0.0.1:0",
    ) as cluster, Client(cluster) as client:  # fmt: skip
        # This file is not importable on the worker processes: the wrapper travels by value.
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
        try:
            client.run(_instrument_transport)
        finally:
            cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        load = _load()

        def run() -> None:
            me = psutil.Process()
            cpu, started = sum(me.cpu_times()[:2]), time.perf_counter()
            with get_task_stream(client=client) as stream:
                result["states"] = model.run(client=client, quiet=True)
            result["wall"] = time.perf_counter() - started
            result["cpu"] = sum(me.cpu_times()[:2]) - cpu
            result["tasks"] = [t for t in stream.data if t["key"].startswith(TASK_PREFIX)]

        benchmark.group = GROUP
        benchmark.pedantic(run, rounds=1, iterations=1)
        runs = {
            key: (wall, cpu) for rs in client.run(_transport_runs).values() for key, wall, cpu in rs
        }

    states = result["states"]
    assert len(states) == N and set(states.values()) == {"complete"}, Counter(states.values())
    computes = {
        task["key"]: part
        for task in result["tasks"]
        for part in task["startstops"]
        if part["action"] == "compute"
    }
    assert set(computes) == set(runs), "transport runs were not timed: did run_hysplit move?"
    outside = {k: part["stop"] - part["start"] - runs[k][0] for k, part in computes.items()}
    # A fresh worker's first task also pays the imports left to it: reported apart.
    first = {}
    for task in sorted(result["tasks"], key=lambda t: t["startstops"][0]["start"]):
        first.setdefault(task["worker"], task["key"])
    later = [v for k, v in outside.items() if k not in first.values()]
    span = max(p["stop"] for p in computes.values()) - min(p["start"] for p in computes.values())
    n_files, by_folder = _files(Path(model.location.root))
    metrics = {
        "n": float(N),
        "register_s": model.register_s,
        "run_wall_s": result["wall"],
        "throughput_per_s": N / result["wall"],
        "task_span_s": span,
        "throughput_in_span_per_s": N / span,
        "outside_transport_median_s": statistics.median(later),
        "outside_transport_mean_s": statistics.fmean(later),
        "outside_transport_first_tasks_s": sum(outside[k] for k in first.values()),
        "transport_wall_median_s": statistics.median(w for w, _ in runs.values()),
        "transport_cpu_median_s": statistics.median(c for _, c in runs.values()),
        "coordinator_cpu_s": result["cpu"],
        "coordinator_cpu_share": result["cpu"] / result["wall"],
        "files_per_simulation": n_files / N,
        "files_by_folder": " ".join(f"{k}={v}" for k, v in sorted(by_folder.items())),
        "load": f"{load} -> {_load()}",
    }
    benchmark.extra_info.update(metrics)
    bench_report.ours(f"{GROUP}: {N} simulations, stand-in transport, 2 workers", **metrics)
    compacted = _compacted(model)
    benchmark.extra_info.update(compacted)
    bench_report.ours(f"{GROUP}: compact after the run", **compacted)
    assert compacted["verify_ok_after_compact"], "the compacted store does not verify"
    assert compacted["load_equal_after_compact"], "load() differs after compaction"
