"""Model end to end with the real trajectory and footprint functions (HYSPLIT, idealized met)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import dask
import numpy as np
import pytest
from distributed import Client, LocalCluster
from store_helpers import RaiseIfComputes

from pystilt_dask.config import ModelConfig
from pystilt_dask.footprint import calc_footprint
from pystilt_dask.model import Model
from pystilt_dask.receptors import PointReceptor
from pystilt_dask.simulation import run_simulation
from pystilt_dask.store import layout

GRIDS = {
    "slv": {"xmin": -112.3, "xmax": -111.5, "ymin": 40.4, "ymax": 41.0, "xres": 0.01},
    "total": {
        "xmin": -112.3, "xmax": -111.5, "ymin": 40.4, "ymax": 41.0, "xres": 0.02,
        "time_integrate": True,
    },
    "far": {"xmin": -100.0, "xmax": -99.0, "ymin": 40.0, "ymax": 41.0, "xres": 0.1},
}  # fmt: skip
RECEPTORS = [
    PointReceptor(time=f"2019-05-30 {hour:02d}:00", longitude=lon, latitude=40.766, altitude=5)
    for hour, lon in ((10, -111.848), (9, -111.848), (11, -111.9), (8, -111.8))
]


@pytest.fixture(scope="module", autouse=True)
def client():
    """One two-worker LocalCluster, the default client for every run in this module."""
    with LocalCluster(
        n_workers=2, threads_per_worker=1, resources={"hysplit": 1}, dashboard_address=":0"
    ) as cluster, Client(cluster) as client:  # fmt: skip
        yield client


@pytest.fixture
def config(idealized_met) -> ModelConfig:
    return ModelConfig.from_dict(
        {
            "mets": {"idealized": idealized_met},
            "hysplit": {"n_hours": -2, "numpar": 50, "seed": 7},
            "footprints": GRIDS,
        }
    )


@pytest.fixture
def model(tmp_path, config) -> Model:
    model = Model(tmp_path / "project", RECEPTORS, config)
    model.register_pending()
    return model


def mtimes(model: Model, key_for) -> list[int]:
    return [
        os.stat(model.location.url(key_for(sim_id, row))).st_mtime_ns
        for row, sim_id in enumerate(model.simulations.ids())
    ]


def slv_chunk(sim_id: str, row: int) -> str:
    return layout.chunk_key("slv", row)


def far_chunk(sim_id: str, row: int) -> str:
    return layout.chunk_key("far", row)


def particle_file(sim_id: str, row: int) -> str:
    return layout.particles_key(sim_id)


def test_run_then_load_equals_calc_footprint(model, config):
    assert set(model.run().values()) == {"complete"}
    assert "Complete Hysplit" in model.simulations.log(RECEPTORS[0].sim_id)
    with dask.config.set(scheduler=RaiseIfComputes()):
        loaded = {name: model.footprints[name].load() for name in GRIDS}
        loaded["slv"].sel(simulation=RECEPTORS[1].sim_id).isel(lag=-1)
    for row, receptor in enumerate(RECEPTORS):
        table = model.trajectories.load(receptor.sim_id)
        for name in ("slv", "total"):
            expected = calc_footprint(table, receptor, config.footprints[name])
            got = loaded[name].isel(simulation=row)
            other = np.flatnonzero(~np.isin(got.time.values, expected.time.values))
            assert float(got.isel(lag=other).sum()) == 0  # layers no particle reached
            by_time = got.swap_dims(lag="time").sel(time=expected.time)
            np.testing.assert_array_equal(by_time.values, expected.values)
            assert expected.sum() > 0
    table = model.status().table
    assert set(table["far"]) == {"complete-empty"}
    assert set(table["state"]) == {"complete"}
    assert loaded["slv"].dims == ("simulation", "lag", "lat", "lon")
    assert loaded["total"].sizes["lag"] == 1


def test_empty_footprints_are_complete_empty_and_not_rerun(tmp_path, config):
    far_only = config.model_copy(update={"footprints": {"far": config.footprints["far"]}})
    model = Model(tmp_path / "far", RECEPTORS[:2], far_only)
    model.register_pending()
    assert set(model.run().values()) == {"complete-empty"}
    before = mtimes(model, far_chunk)
    assert model.run() == {}
    assert run_simulation(model.location, RECEPTORS[0].sim_id, far_only) == "complete-empty"
    assert mtimes(model, far_chunk) == before
    assert float(model.footprints["far"].load().sum()) == 0.0


def test_missing_chunk_recomputed_from_stored_particles(model):
    model.run()
    particles_before = mtimes(model, particle_file)
    path = model.location.url(layout.chunk_key("slv", 2))
    data = open(path, "rb").read()
    os.unlink(path)
    table = model.status().table
    assert table.index[table["state"] == "pending"].tolist() == [RECEPTORS[2].sim_id]
    assert model.run() == {RECEPTORS[2].sim_id: "complete"}
    assert open(path, "rb").read() == data
    assert mtimes(model, particle_file) == particles_before


def test_skip_existing_false_redoes_everything(model):
    model.run()
    chunks, particles = mtimes(model, slv_chunk), mtimes(model, particle_file)
    data = open(model.location.url(layout.chunk_key("slv", 0)), "rb").read()
    assert set(model.run(skip_existing=False).values()) == {"complete"}
    assert np.all(np.array(mtimes(model, slv_chunk)) > chunks)
    assert np.all(np.array(mtimes(model, particle_file)) > particles)
    assert open(model.location.url(layout.chunk_key("slv", 0)), "rb").read() == data  # seeded


def test_failure_is_recorded_and_cleared(tmp_path, config, stand_in):
    failing = stand_in('echo "stand-in failure"; exit 3')
    hysplit = config.hysplit.model_copy(update={"executable": str(failing)})
    config = config.model_copy(update={"hysplit": hysplit})
    model = Model(tmp_path / "project", RECEPTORS[:1], config)
    (sim_id,) = model.register_pending()
    assert model.run() == {sim_id: "failed"}
    record = model.simulations.failure(sim_id)
    assert record["reason"] == "nonzero_exit" and "status 3" in record["message"]
    assert model.simulations.failed() == [sim_id]
    assert model.status().table.loc[sim_id, "slv"] == "failed"
    assert not model.location.exists(layout.particles_key(sim_id))
    assert model.footprints["slv"].load().isel(simulation=0).isnull().all()


def test_transport_error_particles_are_a_completion_key(tmp_path, idealized_met):
    config = ModelConfig.from_dict(
        {
            "mets": {"idealized": idealized_met},
            "hysplit": {
                "n_hours": -1, "numpar": 20, "seed": 3,
                "siguverr": 1.0, "tluverr": 60.0, "zcoruverr": 500.0, "horcoruverr": 40.0,
            },
            "footprints": {"slv": GRIDS["slv"]},
        }
    )  # fmt: skip
    model = Model(tmp_path / "project", RECEPTORS[:1], config)
    (sim_id,) = model.register_pending()
    assert model.run() == {sim_id: "complete"}
    assert list(model.trajectories.paths(error=True)) == [sim_id]
    errors = model.trajectories.load(sim_id, error=True)
    assert len(errors) and not errors.equals(model.trajectories.load(sim_id))
    os.unlink(model.location.url(layout.error_particles_key(sim_id)))
    assert model.simulations.incomplete() == [sim_id]
    assert model.run() == {sim_id: "complete"}
    assert model.location.exists(layout.error_particles_key(sim_id))


@pytest.mark.slow
def test_killed_run_resumes_with_only_the_missing_work(model, stand_in):
    # A coordinator whose workers are its own threads: SIGKILL ends the whole run. Its
    # hycs_std ($STILT_HYSPLIT_EXE; the resuming run here uses the real one) runs the
    # first simulation and holds the second, so the kill lands after exactly one.
    first_only = stand_in('mkdir "$RUNS/real" 2>/dev/null && exec "$REAL"\nhold')
    script = (
        "import sys; from distributed import Client, LocalCluster; "
        "from pystilt_dask.model import Model; "
        "cluster = LocalCluster(processes=False, n_workers=1, threads_per_worker=1, "
        "resources={'hysplit': 1}, dashboard_address=':0'); "
        "Model(sys.argv[1]).run(Client(cluster))"
    )
    env = {
        **os.environ,
        "STILT_HYSPLIT_EXE": str(first_only),
        "DASK_STILT__COMPUTE_ROOT": dask.config.get("stilt.compute-root"),
        # The killed run's claims outlive it until they expire: keep that short here.
        "DASK_STILT__CLAIM_TTL": "2s",
    }
    held = first_only.with_suffix(".runs")
    process = subprocess.Popen([sys.executable, "-c", script, model.location.root], env=env)
    try:
        deadline = time.monotonic() + 300  # a bound on failure only
        while not list(held.glob("held.*")):
            assert process.poll() is None, "the run ended before its second simulation"
            assert time.monotonic() < deadline, "the second simulation never started"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    table = model.status().table
    done = table.index[table["state"] == "complete"].tolist()
    assert len(done) == 1, table["state"]
    before = {s: os.stat(model.location.url(layout.particles_key(s))).st_mtime_ns for s in done}
    assert set(model.run()) == {r.sim_id for r in RECEPTORS} - set(done)
    assert model.status().counts()["complete"] == len(RECEPTORS)
    after = {s: os.stat(model.location.url(layout.particles_key(s))).st_mtime_ns for s in done}
    assert before == after
