"""Benchmarks of the registry: registering 10⁵ and 10⁶ receptors, and the cost of a claim.

Run with ``pytest benchmarks/bench_registry.py --benchmark-only``.

* **registration**: ``Model(...).register_pending()`` of N new receptors into an
  empty local project, in a fresh interpreter, so peak memory is that process's
  maximum RSS. Building the receptor objects is timed apart: it is the caller's.
  The same measurement runs against any checkout (e.g. the commit before a
  change, for the before/after numbers)::

      python benchmarks/bench_registry.py --checkout PATH 100000

* **claim overhead**: taking and releasing a simulation's claim on local disk
  (what every simulation task now adds), against the median non-HYSPLIT work of
  a task measured in ``bench_execution.py`` (0.131 s).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pystilt_dask.config import ModelConfig
from pystilt_dask.model import Model
from pystilt_dask.store import claims

CHECKOUT = Path(__file__).resolve().parents[1]
TASK_OVERHEAD_SECONDS = 0.131  # bench_execution.py: median non-HYSPLIT work per task

SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, tempfile, time
    from datetime import datetime, timedelta
    from pystilt_dask.config import ModelConfig
    from pystilt_dask.model import Model
    from pystilt_dask.receptors import PointReceptor

    n = int(sys.argv[1])
    root = tempfile.mkdtemp()
    config = ModelConfig.from_dict({
        "mets": {"met": {"directory": root, "file_format": "%Y%m%d"}},
        "hysplit": {"n_hours": -24},
        "footprints": {"slv": {"xmin": -112, "xmax": -111, "ymin": 40, "ymax": 41, "xres": 0.1}},
    })
    t0 = time.perf_counter()
    receptors = [
        PointReceptor(time=datetime(2023, 1, 1) + timedelta(hours=i // 500),
                      longitude=-111.9 + 0.001 * (i % 500), latitude=40.7, altitude=5)
        for i in range(n)
    ]
    t1 = time.perf_counter()
    new = Model(root + "/project", receptors, config).register_pending()
    t2 = time.perf_counter()
    again = Model(root + "/project", receptors, config).register_pending()
    t3 = time.perf_counter()
    assert len(new) == n and again == []
    print(json.dumps({
        "receptors_s": t1 - t0, "register_s": t2 - t1, "register_again_s": t3 - t2,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))
    """
)


def measure(n: int, checkout: Path = CHECKOUT) -> dict[str, float]:
    """Register ``n`` receptors with the code in ``checkout``, in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(n)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("n", [100_000, 1_000_000])
def test_registration(benchmark, n, bench_report):
    found = benchmark.pedantic(measure, args=(n,), rounds=1, iterations=1)
    bench_report.ours(f"registration of {n:,} receptors", **found)


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
    parser.add_argument("n", type=int)
    options = parser.parse_args()
    print(json.dumps(measure(options.n, options.checkout.resolve())))
