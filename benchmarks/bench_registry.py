"""Benchmarks of the registry and the bookkeeping around a campaign (issue #22).

Run with ``pytest benchmarks/bench_registry.py --benchmark-only -s`` (about ten
minutes at N = 10⁶ on 2 cores); N comes from ``STILT_BENCH_REGISTRY_N``
(default 1,000,000). Every measurement that needs a clean peak memory runs in a
fresh interpreter (its own maximum RSS), and both sides of a ratio run in the
same session:

* **register from CSV**: ``Model(project, table.csv).register_pending()`` of N
  point receptors into an empty project, against ``pandas.read_csv`` of the same
  file plus a Parquet write of it, three pairs in turns, the least of each side
  (goal: ≤ 10×, ≤ 1 GB peak RSS).
* **one-receptor registrations**: 200 registrations of one receptor each into one
  project (``Model.register_pending``), each followed by ``Model.status()``; the
  mean of the last 64 against the mean of the first 64 (goal: ≤ 1.5× for both).
  A checkpoint is written every 64 versions, so a read costs one checkpoint and
  0–63 commits: two full periods of 64 compare like with like.
* **N pending**: a project with N registered simulations, none run:
  ``Model.plan()`` (registration of the same table, nothing new, the pre-flight
  met checks, status; goal ≤ 5 s), ``stilt-dask status --json`` net of the CLI's
  own start (``stilt-dask --version``, run in turns with it, the least of 5 each;
  goal ≤ 1 s), the same work in-process after the imports, and
  ``footprints[...].load()`` (goal ≤ 3 s), each with its peak RSS.
* **claim overhead**: taking and releasing a simulation's claim on local disk,
  against the median non-HYSPLIT work of a task (``bench_execution.py``, 0.131 s).

Any checkout can be measured with the same scripts (``--checkout PATH``)::

    python benchmarks/bench_registry.py --checkout PATH register 100000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pystilt_dask.config import ModelConfig
from pystilt_dask.meteorology.idealized import write_idealized_met
from pystilt_dask.model import Model
from pystilt_dask.receptors import PointReceptor
from pystilt_dask.store import claims

CHECKOUT = Path(__file__).resolve().parents[1]
TASK_OVERHEAD_SECONDS = 0.131  # bench_execution.py: median non-HYSPLIT work per task
N = int(os.environ.get("STILT_BENCH_REGISTRY_N", "1000000"))
REGISTRATIONS = 200
REGISTER_ROUNDS = 3  # registration and its floor, in turns
PERIOD = 64  # registry checkpoint interval
MET_START = datetime(2024, 7, 1)
HOURS = 96  # receptor hours; the met covers one day more before them
SITES_PER_SIDE = 1000  # sites on a grid of up to 1000 x 1000 around the met's centre


def receptor_table(n: int) -> pd.DataFrame:
    """``n`` point receptors: every receptor hour at a site, then the next site.

    Sites lie on a 0.001° grid around (-100, 40), heights 5 or 50 m, times
    hourly over :data:`HOURS` hours after the met's first day, as a tower network
    or a sounding campaign writes them (``yyyy-mm-dd HH:MM``).
    """
    i = np.arange(n)
    site, hour = np.divmod(i, HOURS)
    row, column = np.divmod(site, SITES_PER_SIDE)
    times = pd.Timestamp(MET_START) + pd.to_timedelta(24 + hour, "h")
    return pd.DataFrame(
        {
            "time": times.strftime("%Y-%m-%d %H:%M"),
            "longitude": np.round(-100.5 + 0.001 * column, 3),
            "latitude": np.round(39.5 + 0.001 * row, 3),
            "altitude": np.where(site % 3 == 0, 5.0, 50.0),
        }
    )


def config(folder: Path, receptors: str | None = None) -> ModelConfig:
    """A project config on the idealized met in ``folder/met`` (written by :func:`met`)."""
    return ModelConfig.from_dict(
        {
            "mets": {"idealized": {"directory": str(folder / "met"), "file_format": "%Y%m%d_%H"}},
            "hysplit": {"n_hours": -24, "numpar": 10},
            "footprints": {"slv": {"xmin": -101, "xmax": -99, "ymin": 39, "ymax": 41, "xres": 0.1}},
            "output": str(folder / "project"),
            **({"receptors": receptors} if receptors else {}),
        }
    )


def met(folder: Path) -> None:
    """Idealized met covering every receptor's run: a day before the first, to the last."""
    write_idealized_met(folder / "met", MET_START, 24 + HOURS + 6, center=(-100.0, 40.0))


CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    {body}
    print(json.dumps({{**found,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
    """
)

BODIES = {
    # pandas' own reading and writing of the same table: the floor registration is held to.
    "baseline": """
    import pandas as pd
    t0 = time.perf_counter()
    pd.read_csv(sys.argv[1]).to_parquet(sys.argv[2])
    found = {"seconds": time.perf_counter() - t0}
    """,
    "register": """
    from pystilt_dask.config import ModelConfig
    from pystilt_dask.model import Model
    config = ModelConfig.from_yaml(sys.argv[2])
    t0 = time.perf_counter()
    new = Model(config.output, sys.argv[1], config).register_pending()
    found = {"seconds": time.perf_counter() - t0, "registered": len(new)}
    """,
    "plan": """
    from pystilt_dask.model import Model
    model = Model.from_yaml(sys.argv[1])
    t0 = time.perf_counter()
    run = model.plan()
    found = {"seconds": time.perf_counter() - t0, "planned": len(run)}
    """,
    # What `stilt-dask status` does once its modules are imported.
    "status": """
    from pystilt_dask.model import Model
    from pystilt_dask.store.status import status
    model = Model.from_yaml(sys.argv[1])
    t0 = time.perf_counter()
    known = model.registry()
    counts = status(model.location, known, model.completion).counts()
    unregistered = model.unregistered(known)
    found = {"seconds": time.perf_counter() - t0, "unregistered": unregistered,
             "pending": counts["pending"]}
    """,
    "load": """
    from pystilt_dask.model import Model
    model = Model.from_yaml(sys.argv[1])
    t0 = time.perf_counter()
    foot = model.footprints["slv"].load()
    found = {"seconds": time.perf_counter() - t0, "simulations": foot.sizes["simulation"]}
    """,
}


def child(name: str, *args: str, checkout: Path = CHECKOUT) -> dict[str, float]:
    """Run measurement ``name`` in a fresh interpreter with the code in ``checkout``."""
    script = CHILD.format(body=textwrap.dedent(BODIES[name]))
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.splitlines()[-1])


def cli_seconds(*args: str, checkout: Path = CHECKOUT) -> float:
    """Wall time of ``stilt-dask ARGS`` (the console script's own module, as installed)."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pystilt_dask", *args], env=env, capture_output=True, check=True
    )
    return time.perf_counter() - t0


@pytest.fixture(scope="module")
def campaign(tmp_path_factory) -> Path:
    """A folder with idealized met, the N-receptor table and its config (nothing registered)."""
    folder = tmp_path_factory.mktemp("campaign")
    met(folder)
    receptor_table(N).to_csv(folder / "receptors.csv", index=False)
    config(folder, str(folder / "receptors.csv")).to_yaml(folder / "config.yaml")
    return folder


def test_register_from_csv(benchmark, campaign, bench_report):
    """Registration and the pandas floor in turns, :data:`REGISTER_ROUNDS` pairs: the least of each.

    Each pair runs one after the other, so both sides see the same load of a shared
    machine; the last registration stays for :func:`test_pending`.
    """
    group = f"register {N:,} receptors from CSV"
    floors, ours = [], []

    def paired() -> None:
        for _ in range(REGISTER_ROUNDS):
            shutil.rmtree(campaign / "project", ignore_errors=True)
            floors.append(child("baseline", campaign / "receptors.csv", campaign / "copy.parquet"))
            ours.append(child("register", campaign / "receptors.csv", campaign / "config.yaml"))

    benchmark.pedantic(paired, rounds=1, iterations=1)
    assert all(side["registered"] == N for side in ours)
    floor = min(side["seconds"] for side in floors)
    seconds = min(side["seconds"] for side in ours)
    peak = max(side["peak_rss_mb"] for side in ours)
    bench_report.ours(group, seconds=seconds, peak_rss_mb=peak, ratio=seconds / floor)
    bench_report.baseline(group, "pandas.read_csv + to_parquet", seconds=floor)


def test_pending(benchmark, campaign, bench_report):
    """Plan, status and load of N registered, pending simulations (after registration)."""
    if not (campaign / "project").is_dir():
        child("register", campaign / "receptors.csv", campaign / "config.yaml")
    yaml = campaign / "config.yaml"
    plan = benchmark.pedantic(child, args=("plan", yaml), rounds=1, iterations=1)
    assert plan["planned"] == N
    bench_report.ours(f"plan() of {N:,} pending", **plan)
    # Pairs, one after the other, so that both sides see the same load; the least of each.
    pairs = [
        (cli_seconds("--version"), cli_seconds("status", str(yaml), "--json")) for _ in range(5)
    ]
    start, status = (min(side) for side in zip(*pairs, strict=True))
    bench_report.ours(f"status of {N:,} pending, net of CLI start", seconds=status - start)
    bench_report.baseline(f"status of {N:,} pending, net of CLI start", "CLI start", seconds=start)
    inside = child("status", yaml)
    assert inside["pending"] == N and inside["unregistered"] == 0
    bench_report.ours(f"status of {N:,} pending, in-process (the command's work)", **inside)
    bench_report.ours(f"load() of {N:,} simulations", **child("load", yaml))


def test_one_receptor_registrations(benchmark, tmp_path, bench_report):
    """200 registrations of one receptor each, each followed by a status."""
    folder = tmp_path
    table = receptor_table(REGISTRATIONS)
    receptors = [PointReceptor(**row) for row in table.to_dict(orient="records")]
    project = config(folder)
    register, status = [], []

    def run() -> None:
        for receptor in receptors:
            model = Model(project.output, [receptor], project)
            t0 = time.perf_counter()
            model.register_pending()
            t1 = time.perf_counter()
            model.status()
            register.append(t1 - t0)
            status.append(time.perf_counter() - t1)

    benchmark.pedantic(run, rounds=1, iterations=1)
    for name, seconds in (("register", register), ("status", status)):
        first, last = np.mean(seconds[:PERIOD]), np.mean(seconds[-PERIOD:])
        group = f"one-receptor {name}: last {PERIOD} of {REGISTRATIONS} vs first {PERIOD}"
        bench_report.ours(group, seconds=last, ratio=last / first, worst=max(seconds))
        bench_report.baseline(group, f"first {PERIOD}", seconds=first)


def test_claim_overhead(benchmark, tmp_path, bench_report):
    config = ModelConfig.from_dict({"mets": {"m": {"directory": ".", "file_format": "%Y"}}})
    location = Model(tmp_path / "p", [], config).location

    def take_and_release() -> None:
        with claims.hold(location, "201905301000_-111.848_40.766_5") as claim:
            assert claim is not None

    benchmark.pedantic(take_and_release, rounds=200, iterations=1, warmup_rounds=5)
    seconds = benchmark.stats.stats.median
    bench_report.ours("claim per simulation (take + release, local disk)", seconds=seconds)
    bench_report.baseline(
        "claim per simulation (take + release, local disk)",
        "non-HYSPLIT work of a task",
        seconds=TASK_OVERHEAD_SECONDS,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, default=CHECKOUT)
    parser.add_argument("what", choices=["register"])
    parser.add_argument("n", type=int)
    options = parser.parse_args()
    import tempfile

    folder = Path(tempfile.mkdtemp())
    receptor_table(options.n).to_csv(folder / "receptors.csv", index=False)
    config(folder, str(folder / "receptors.csv")).to_yaml(folder / "config.yaml")
    checkout = options.checkout.resolve()
    print(json.dumps({
        "baseline": child("baseline", folder / "receptors.csv", folder / "copy.parquet",
                          checkout=checkout),
        "register": child("register", folder / "receptors.csv", folder / "config.yaml",
                          checkout=checkout),
    }))  # fmt: skip
