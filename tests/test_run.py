"""One planned Run on any cluster a user brings, and as dask.delayed on any scheduler.

Real HYSPLIT on the demo's idealized meteorology.
"""

from __future__ import annotations

import dask
import pytest
from distributed import Client, LocalCluster

from pystilt_dask.config import ModelConfig
from pystilt_dask.demo import make_demo_project
from pystilt_dask.model import Model
from pystilt_dask.store import layout

N = 3


def demo_model(folder, output: str = "output", n: int = N) -> Model:
    """The demo project at 20 particles (the runs are the point here, not HYSPLIT)."""
    path = make_demo_project(folder, n)
    config = ModelConfig.from_yaml(path)
    hysplit = config.hysplit.model_copy(update={"numpar": 20})
    config = config.model_copy(update={"output": str(folder / output), "hysplit": hysplit})
    return Model(config.output, path.with_name("receptors.csv"), config)


def results(model: Model) -> dict[str, bytes]:
    """Particle files and footprint chunks by key, for byte comparisons."""
    keys = [layout.particles_key(s) for s in model.simulations.ids()]
    keys += [layout.chunk_key("default", r) for r in model.registry().rows]
    return {key: model.location.read_bytes(key) for key in keys}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, bytes]:
    model = demo_model(tmp_path_factory.mktemp("reference"))
    with LocalCluster(n_workers=2, processes=False, dashboard_address=":0") as cluster:
        assert set(model.run(client=Client(cluster), quiet=True).values()) == {"complete"}
    return results(model)


def test_a_plan_says_what_will_run_before_anything_runs(tmp_path):
    model = demo_model(tmp_path)
    run = model.plan(n_workers=1, retries=5)
    assert len(run) == N and run.execution.retries == 5 and run.execution.n_workers == 1
    text = repr(run)
    assert f"{N} of {N} registered" in text and "stilt-sim-" in text and "retries: 5" in text
    assert "<table>" in run._repr_html_()
    assert model.status().counts()["pending"] == N  # planning ran nothing


def test_adaptive_cluster_with_no_workers_yet(tmp_path, reference):
    model = demo_model(tmp_path)
    with LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as cluster:
        cluster.adapt(minimum=0, maximum=2)
        with Client(cluster) as client:
            assert set(model.run(client=client, quiet=True).values()) == {"complete"}
    assert results(model) == reference


def test_workers_added_after_the_run_started(tmp_path, reference):
    model = demo_model(tmp_path)
    with LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            futures = model.run(client=client, wait=False)
            assert len(futures) == N and not client.scheduler_info()["workers"]
            cluster.scale(2)
            assert client.gather(futures) == ["complete"] * N
    assert results(model) == reference


def test_a_cluster_object_and_workers_with_several_threads(tmp_path, reference):
    model = demo_model(tmp_path)
    with LocalCluster(
        n_workers=1, threads_per_worker=3, processes=False, dashboard_address=":0"
    ) as cluster:  # fmt: skip
        assert set(model.run(client=cluster, quiet=True).values()) == {"complete"}
    assert results(model) == reference


def test_two_projects_sharing_receptors_on_one_client(tmp_path, reference):
    first, second = demo_model(tmp_path / "a"), demo_model(tmp_path / "b")
    assert first.simulations.ids() == second.simulations.ids()  # the same simulation ids
    with LocalCluster(n_workers=2, processes=False, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            futures = first.run(client=client, wait=False) + second.run(client=client, wait=False)
            assert len({f.key for f in futures}) == 2 * N
            assert client.gather(futures) == ["complete"] * (2 * N)
    assert results(first) == reference and results(second) == reference


@pytest.mark.parametrize("scheduler", ["threads", "processes", "distributed"])
def test_to_delayed_on_any_scheduler(tmp_path, reference, scheduler):
    model = demo_model(tmp_path)
    delayed = model.to_delayed()
    assert len(delayed) == N
    if scheduler == "distributed":
        with LocalCluster(n_workers=2, processes=False, dashboard_address=":0") as cluster:
            with Client(cluster):
                states = dask.compute(*delayed)
    else:
        states = dask.compute(*delayed, scheduler=scheduler, num_workers=2)
    assert list(states) == ["complete"] * N
    assert results(model) == reference
    assert model.to_delayed() == []  # nothing left to do


def test_progress_line_says_when_it_waits_for_workers(tmp_path):
    from pystilt_dask.execution.console import cluster_text, cluster_threads

    with LocalCluster(
        n_workers=0, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as cluster:  # fmt: skip
        with Client(cluster) as client:
            assert cluster_text(*cluster_threads(client)).startswith("waiting for workers")
            cluster.scale(1)
            client.wait_for_workers(1)
            assert cluster_text(*cluster_threads(client)) == "on 1 workers (1 threads)"


def test_progress_and_dashboard_link_unless_quiet(tmp_path, capsys):
    model = demo_model(tmp_path, n=1)
    with LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as cluster:
        model.run(client=cluster)
    shown = capsys.readouterr().out
    assert "Dask dashboard: http://" in shown and "stilt-sim" in shown and "1/1" in shown
    model2 = demo_model(tmp_path / "quiet", n=1)
    with LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as cluster:
        model2.run(client=cluster, quiet=True)
    assert capsys.readouterr().out == ""
