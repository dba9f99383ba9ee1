"""Compaction at campaign scale (issue #22): cost per simulation, workers, and status of 10⁶ packed.

``python -m pytest benchmarks/bench_compact.py --benchmark-only -s``

* ``test_compact``: a stand-in campaign of N simulations (``STILT_BENCH_COMPACT_N``,
  default 2,048: built and run as ``bench_campaign.py`` does, on 2 worker
  processes), or the project folder ``STILT_BENCH_COMPACT_STORE`` built so before
  (copied, never changed). Three copies of it are compacted: by the code at git
  revision ``STILT_BENCH_COMPACT_BEFORE`` (default ``0b7f07d``, the last before
  compaction copied row groups and packed blocks as tasks; exported with ``git
  archive`` and run in a fresh interpreter: one process, every particle table
  decoded and re-encoded), and by this checkout on a LocalCluster of 1 and of 2
  one-thread worker processes (started before the clock, as a user's own client
  is). Reported: each side's wall and wall / N. Then the three stores must hold
  the same: byte-equal shards and marker files, per block equal particle tables,
  footer entries and logs; and ``verify`` passes on the last.
* ``test_status_of_a_million_packed``: a project of ``STILT_BENCH_COMPACT_MILLION``
  (default 10⁶) registered simulations whose every block is packed, built from
  block 0 of the 2-worker store above: each block's shard and logs file are hard
  links to that block's (the same bytes), its particle file has the footer that
  file's row groups would have in the new block, listing the new block's ids and
  rows (:func:`pystilt_dask.store.rowgroups.join`, as ``compact`` writes it), after
  a hole of the row groups' size (a sparse file: 10⁶ simulations' particles are
  ~140 GB; ``status`` reads a block file's last 64 kB only). Then ``stilt-dask status
  --json`` is timed against ``stilt-dask --version`` (5 pairs run in turns, the
  least of each; the goal is ≤ 1 s net), and in-process.

Not collected by a plain ``pytest`` (``testpaths`` is ``tests/``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from distributed import Client, LocalCluster

from pystilt_dask.config import ModelConfig
from pystilt_dask.hysplit.standin import write_standin
from pystilt_dask.meteorology.idealized import write_idealized_met
from pystilt_dask.model import Model
from pystilt_dask.store import layout, packing, rowgroups
from pystilt_dask.store.compact import compact

sys.path.insert(0, str(Path(__file__).parent))
import bench_campaign  # noqa: E402  (its campaign and stand-in)

CHECKOUT = Path(__file__).resolve().parents[1]
N = int(os.environ.get("STILT_BENCH_COMPACT_N", "2048"))
STORE = os.environ.get("STILT_BENCH_COMPACT_STORE")
BEFORE = os.environ.get("STILT_BENCH_COMPACT_BEFORE", "0b7f07d")
MILLION = int(os.environ.get("STILT_BENCH_COMPACT_MILLION", str(10**6)))
GROUP = "compact"

#: The "before" side, run in a fresh interpreter with the exported code first on its path.
BEFORE_SCRIPT = """
import json, sys, time
import pystilt_dask
from pystilt_dask.config import ModelConfig
from pystilt_dask.hysplit.standin import write_standin
from pystilt_dask.meteorology.idealized import write_idealized_met
from pystilt_dask.model import Model
from pystilt_dask.store.compact import compact
assert pystilt_dask.__file__.startswith(sys.argv[2]), pystilt_dask.__file__
model = Model(sys.argv[1])
started = time.perf_counter()
report = compact(model.location, model.config, model.registry())
print(json.dumps({"seconds": time.perf_counter() - started, "simulations": report.simulations}))
"""

#: Packed stores of this run, for the status measurement.
PACKED: dict[str, Path] = {}


@pytest.fixture(scope="module")
def campaign(tmp_path_factory) -> Path:
    """The campaign's project folder, every simulation complete and unpacked."""
    if STORE:
        return Path(STORE)
    folder = tmp_path_factory.mktemp("campaign")
    write_idealized_met(
        folder / "met", bench_campaign.MET_START, bench_campaign.MET_HOURS, center=(-100.0, 40.0)
    )
    config = ModelConfig.from_dict(
        {
            "mets": {
                "idealized": {"directory": str(folder / "met"), "file_format": "%Y%m%d_%H"}
            },
            "hysplit": {
                "n_hours": bench_campaign.N_HOURS, "numpar": 50, "seed": 7,
                "executable": str(write_standin(folder / "standin")),
            },
            "footprints": {"near": bench_campaign.GRID},
        }
    )  # fmt: skip
    model = Model(folder / "project", bench_campaign.receptor_table(N), config)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster:
        with Client(cluster) as client:
            states = model.run(client=client, quiet=True)
    assert set(states.values()) <= {"complete", "complete-empty"}
    return Path(model.location.root)


def _copy(project: Path, folder: Path) -> Path:
    target = folder / "project"
    shutil.copytree(project, target)
    return target


def _before(project: Path, folder: Path) -> dict:
    code = folder / "code"
    code.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(CHECKOUT), "archive", BEFORE, "pystilt_dask"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True)
    env = {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run(
        [sys.executable, "-c", BEFORE_SCRIPT, str(project), str(code)],
        env=env, cwd=code, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.splitlines()[-1])


def _after(project: Path, workers: int) -> dict:
    model = Model(project)
    registry = model.registry()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True) as cluster:
        with Client(cluster) as client:
            client.wait_for_workers(workers)
            started = time.perf_counter()
            report = compact(model.location, model.config, registry, client=client)
            seconds = time.perf_counter() - started
    return {"seconds": seconds, "simulations": report.simulations, "blocks": report.blocks}


def _same(a: Path, b: Path) -> None:
    """Assert two compacted stores hold the same (see the module docstring)."""
    shards = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and "/foot/c/" in str(p))
    markers = sorted(p.relative_to(a) for p in a.rglob("block-*.json"))
    assert shards and shards == sorted(
        p.relative_to(b) for p in b.rglob("*") if p.is_file() and "/foot/c/" in str(p)
    )
    for key in shards + markers:
        assert (a / key).read_bytes() == (b / key).read_bytes(), key
    blocks = sorted(p.name for p in (a / layout.PARTICLES).iterdir())
    assert blocks == sorted(p.name for p in (b / layout.PARTICLES).iterdir())
    for name in blocks:
        one, two = (pq.ParquetFile(root / layout.PARTICLES / name) for root in (a, b))
        assert packing.block_entries(one) == packing.block_entries(two), name
        assert one.read().replace_schema_metadata().equals(two.read().replace_schema_metadata())
        logs = [pq.read_table(root / layout.LOGS / name) for root in (a, b)]
        assert logs[0].equals(logs[1]), name


@pytest.mark.timeout(3600)
def test_compact(benchmark, campaign, bench_report, tmp_path):
    n = len(Model(campaign).registry().rows)
    group = f"{GROUP}: {n:,} stand-in simulations"
    stores = {side: _copy(campaign, tmp_path / side) for side in ("before", "1", "2")}
    before = _before(stores["before"], tmp_path / "before")
    one = _after(stores["1"], 1)
    two = benchmark.pedantic(_after, args=(stores["2"], 2), rounds=1, iterations=1)
    for side in (before, one, two):
        assert side["simulations"] == n
    bench_report.baseline(
        group, f"{BEFORE}, one process", **before, per_simulation_ms=before["seconds"] / n * 1e3
    )
    for workers, side in ((1, one), (2, two)):
        bench_report.ours(
            f"{group}, {workers} worker process(es)",
            **side,
            per_simulation_ms=side["seconds"] / n * 1e3,
            speedup=before["seconds"] / side["seconds"],
        )
    _same(stores["before"], stores["2"])
    _same(stores["1"], stores["2"])
    assert Model(stores["2"]).verify().ok
    PACKED["campaign"] = stores["2"]


def _million_blocks(project: Path, blocks: range, template: Path) -> None:
    """Write packed blocks ``blocks`` of ``project`` from block 0 of the packed ``template``."""
    registry = Model(project).registry()
    ids = registry.entries["sim_id"].to_pylist()
    rows = registry.rows
    source = rowgroups.Footer.of((template / layout.block_key(layout.PARTICLES, 0)).read_bytes())
    entries = list(packing.footer_entries(source).values())
    groups = source.groups()
    name = next(iter(Model(template).config.footprints))
    shard = template / layout.shard_key(name, 0)
    logs = template / layout.block_key(layout.LOGS, 0)
    for block in blocks:
        at = np.flatnonzero(rows // layout.BLOCK_ROWS == block)
        held = []
        for i, position in enumerate(at):
            entry = {k: v for k, v in entries[i].items() if k != "row_group"}
            entry.update(sim_id=ids[position], row=type(entry["row"])(rows[position]))
            group = entries[i]["row_group"]
            held.append((entry, None if group is None else groups[group]))
        for key, same in (
            (layout.shard_key(name, block), shard),
            (layout.block_key(layout.LOGS, block), logs),
        ):
            (project / key).parent.mkdir(parents=True, exist_ok=True)
            os.link(same, project / key)
        # The row groups' bytes are a hole of their size: status reads the footer's end only.
        parts = packing.particle_block(source, held)
        path = project / layout.block_key(layout.PARTICLES, block)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            f.write(parts[0])
            f.seek(sum(len(p) for p in parts[1:-3]), os.SEEK_CUR)
            f.write(b"".join(parts[-3:]))


def _cli_seconds(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pystilt_dask", *args], capture_output=True, check=True)
    return time.perf_counter() - started


@pytest.mark.timeout(3600)
def test_status_of_a_million_packed(benchmark, campaign, bench_report, tmp_path):
    template = PACKED.get("campaign")
    if template is None:  # run alone: pack a copy of the campaign first
        template = _copy(campaign, tmp_path / "template")
        compact(Model(template).location, Model(template).config, Model(template).registry())
    source = Model(template)
    table = bench_campaign.receptor_table(MILLION)
    model = Model(tmp_path / "million", table, source.config)
    model.register_pending()
    n_blocks = -(-MILLION // layout.BLOCK_ROWS)
    halves = [range(0, n_blocks // 2), range(n_blocks // 2, n_blocks)]
    started = time.perf_counter()
    with ProcessPoolExecutor(2) as pool:
        for done in [
            pool.submit(_million_blocks, tmp_path / "million", half, template) for half in halves
        ]:
            done.result()
    built = time.perf_counter() - started
    project = tmp_path / "million"
    files = sum(1 for p in project.rglob("*") if p.is_file())

    def in_process() -> dict:
        fresh = Model(project)
        t0 = time.perf_counter()
        counts = fresh.status().counts()
        return {"seconds": time.perf_counter() - t0, **{k: counts[k] for k in ("complete",)}}

    inside = benchmark.pedantic(in_process, rounds=3, iterations=1)
    assert inside["complete"] == MILLION, inside
    pairs = [(_cli_seconds("--version"), _cli_seconds("status", str(project), "--json"))
             for _ in range(5)]  # fmt: skip
    start, status = (min(side) for side in zip(*pairs, strict=True))
    group = f"status of {MILLION:,} packed simulations"
    bench_report.ours(
        f"{group}, net of CLI start", seconds=status - start, files=files, build_seconds=built
    )
    bench_report.baseline(f"{group}, net of CLI start", "CLI start", seconds=start)
    bench_report.ours(f"{group}, in-process (the command's work)", **inside)
