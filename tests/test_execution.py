"""Dask execution on a real LocalCluster: task names, fault tolerance, timeouts.

Real HYSPLIT on the idealized met (conftest ``idealized_met``); a HYSPLIT that
never finishes is a stand-in executable (conftest ``stand_in``).
"""

from __future__ import annotations

import hashlib
import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from pystilt_dask.config import ModelConfig
from pystilt_dask.execution.serve import serve
from pystilt_dask.execution.waves import Outcome, capacity
from pystilt_dask.hysplit.inputs import format_value
from pystilt_dask.model import Model
from pystilt_dask.receptors import PointReceptor
from pystilt_dask.store import records

GRID = {"xmin": -112.5, "xmax": -111.2, "ymin": 40.3, "ymax": 41.2, "xres": 0.01}


def _receptors(n: int) -> list[PointReceptor]:
    sites = [(-111.848, 40.766), (-111.9, 40.7), (-111.7, 40.8), (-112.0, 40.6)]
    return [
        PointReceptor(
            time=f"2019-05-30 {8 + i // len(sites):02d}:00", longitude=lon, latitude=lat, altitude=5
        )  # fmt: skip
        for i, (lon, lat) in ((i, sites[i % len(sites)]) for i in range(n))
    ]


def _model(path: Path, idealized_met: dict, receptors, **hysplit) -> Model:
    config = ModelConfig.from_dict(
        {
            "mets": {"idealized": idealized_met},
            "hysplit": {"n_hours": -2, "numpar": 100, "seed": 11, **hysplit},
            "footprints": {"default": GRID},
            "execution": {"retries": 3},
        }
    )
    model = Model(path, receptors=receptors, config=config)
    model.register_pending()
    return model


def _process_cluster() -> LocalCluster:
    return LocalCluster(
        n_workers=2, threads_per_worker=1, resources={"hysplit": 1}, dashboard_address=":0"
    )


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes shared by the tests that leave them as they found them."""
    with _process_cluster() as cluster:
        yield cluster


@pytest.fixture
def client(cluster):
    # A client of its own per test: ``client.futures`` (the window test) is per client.
    with Client(cluster) as client:
        yield client


@pytest.fixture
def own_client():
    """A cluster of its own, for a test that kills a worker or reads the scheduler's
    task prefixes (which keep every earlier test's keys)."""
    with _process_cluster() as cluster, Client(cluster) as client:
        yield client


def _digest(root: Path) -> dict[str, str]:
    """Content hash of every result file (footprint chunks, particles)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ("/c." in f"/{p.name}" or p.suffix == ".parquet")
        and ".stilt" not in p.parts
    }  # fmt: skip


def test_local_cluster_runs_every_simulation_under_stilt_sim_keys(
    tmp_path, idealized_met, own_client
):
    client = own_client
    model = _model(tmp_path / "proj", idealized_met, _receptors(4))
    outcomes = list(model.plan().outcomes(client))
    assert sorted(o.state for o in outcomes) == ["complete"] * 4
    assert model.status().counts()["complete"] == 4
    prefixes = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes))
    assert "stilt-sim" in prefixes
    # A second run finds nothing to do.
    assert model.simulations.incomplete() == []


def test_bounded_waves_never_exceed_the_window(tmp_path, idealized_met, client):
    model = _model(tmp_path / "proj", idealized_met, _receptors(6), n_hours=-1, numpar=20)
    seen: list[int] = []

    def watch(ids):
        for sim_id in ids:
            seen.append(len(client.futures))
            yield sim_id

    run = model.plan()
    # The waves take ids from the run one at a time: watch how many are in flight then.
    outcomes = list(replace(run, sim_ids=watch(run.sim_ids)).outcomes(client, window=2))
    assert len(outcomes) == 6 and max(seen) <= 2


def test_serve_runs_what_another_process_registers(tmp_path, idealized_met, client):
    first, second = _receptors(2)
    model = _model(tmp_path / "proj", idealized_met, [first], n_hours=-1, numpar=20)
    outcomes = serve(model, client, poll=0.2)
    assert next(outcomes) == Outcome(first.sim_id, "complete")
    Model(model.location.root, [second]).register_pending()  # e.g. `stilt-dask register`
    assert next(outcomes) == Outcome(second.sim_id, "complete")
    outcomes.close()
    assert model.status().counts()["complete"] == 2


def test_killed_worker_still_completes_every_simulation_exactly(
    tmp_path, idealized_met, own_client
):
    client = own_client
    receptors = _receptors(6)
    calm = _model(tmp_path / "calm", idealized_met, receptors)
    calm.run()
    model = _model(tmp_path / "stormy", idealized_met, receptors)
    killed = False
    outcomes = []
    for outcome in model.plan().outcomes(client):
        outcomes.append(outcome)
        if not killed:
            # Kill a worker process while it is running HYSPLIT for another simulation.
            pids = client.run(os.getpid)
            busy = client.processing()
            victim = next((w for w, tasks in busy.items() if tasks), next(iter(pids)))
            os.kill(pids[victim], signal.SIGKILL)
            killed = True
    assert killed and sorted(o.state for o in outcomes) == ["complete"] * 6
    assert model.status().counts()["complete"] == 6
    assert _digest(tmp_path / "stormy") == _digest(tmp_path / "calm")


def test_timeout_fails_only_the_slow_simulation(tmp_path, idealized_met, client, stand_in):
    quick, slow = _receptors(2)
    # The slow one never finishes (its hycs_std holds until killed), so it always times
    # out; the quick one is the real hycs_std on a tiny run (~0.1 s against the 5 s
    # timeout, which only bounds how long the test waits for the slow one).
    (point,) = slow.release_points  # its line in CONTROL
    line = " ".join(format_value(float(v)) for v in point)
    hold_slow = stand_in(f'grep -qxF "{line}" CONTROL && hold\nexec "$REAL"')
    model = _model(tmp_path / "proj", idealized_met, [quick, slow], n_hours=-1, numpar=20,
                   timeout=5, executable=str(hold_slow))  # fmt: skip
    outcomes = {o.sim_id: o.state for o in model.plan().outcomes(client)}
    assert outcomes == {quick.sim_id: "complete", slow.sim_id: "failed"}
    assert model.status().ids("failed") == [slow.sim_id]
    assert records.read_failure(model.location, slow.sim_id)["reason"] == "timeout"
    # Held once per attempt: a timeout is not retried.
    assert len(list((hold_slow.with_suffix(".runs")).glob("held.*"))) == 1


def test_a_plain_cluster_without_hysplit_slots_runs_one_task_per_thread(tmp_path, idealized_met):
    # A user's own cluster (e.g. SLURMCluster() in a notebook) advertises no resource.
    model = _model(tmp_path / "proj", idealized_met, _receptors(3), n_hours=-1, numpar=20)
    with LocalCluster(n_workers=1, threads_per_worker=2, dashboard_address=":0") as cluster:
        with Client(cluster) as plain:
            assert capacity(plain) == 2
            assert set(model.run(client=plain).values()) == {"complete"}
            futures = model.run(client=plain, wait=False, skip_existing=False)
            assert plain.gather(futures) == ["complete"] * 3
