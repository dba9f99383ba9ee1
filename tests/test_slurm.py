"""The Slurm backend against the real single-node Slurm that .ci/run starts (idealized met).

``stilt-dask`` runs as a subprocess with the ``env`` fixture's environment (the code
under test), which Slurm hands on to the jobs it starts.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pystilt_dask.model import Model

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm")]


def _project(tmp_path: Path, idealized_met: dict, n_workers: int) -> Path:
    receptors = pd.DataFrame(
        {
            "time": ["2019-05-30 10:00", "2019-05-30 10:00", "2019-05-30 09:00"],
            "longitude": [-111.848, -111.9, -111.848],
            "latitude": [40.766, 40.7, 40.766],
            "altitude": [5, 5, 5],
        }
    )
    receptors.to_csv(tmp_path / "receptors.csv", index=False)
    slurm = {
        "backend": "slurm",
        "n_workers": n_workers,
        "cluster": {
            "cores": 1,
            "memory": "1GB",
            "walltime": "00:10:00",
            "job_name": "stilt-dask",
            "log_directory": str(tmp_path / "slurm-logs"),
            # one machine: keep scheduler and workers on loopback
            "scheduler_options": {"host": "127.0.0.1"},
            "worker_extra_args": ["--host", "127.0.0.1"],
        },
    }
    config = {
        "mets": {"idealized": idealized_met},
        "hysplit": {"n_hours": -1, "numpar": 50, "seed": 3},
        "footprints": {
            "default": {"xmin": -112.5, "xmax": -111.2, "ymin": 40.3, "ymax": 41.2, "xres": 0.01}
        },
        "profiles": {"hpc": slurm},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _jobs(name: str) -> list[str]:
    shown = subprocess.run(["scontrol", "show", "jobs", "-o"], capture_output=True, text=True)
    return [line for line in shown.stdout.splitlines() if f"JobName={name} " in line]


def test_cli_run_with_slurm_backend(tmp_path, idealized_met, stilt):
    config = _project(tmp_path, idealized_met, n_workers=2)
    before = len(_jobs("stilt-dask"))
    run = stilt("run", config, "--profile", "hpc", timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Dask dashboard" in run.stdout
    assert Model.from_yaml(config).status().counts()["complete"] == 3
    # The workers were Slurm jobs that joined this run's scheduler.
    assert len(_jobs("stilt-dask")) >= before + 2
    logs = [log.read_text() for log in (tmp_path / "slurm-logs").glob("stilt-dask-*.err")]
    assert sum("Registered to" in log for log in logs) == 2


def test_coordinator_as_a_batch_job(tmp_path, idealized_met, stilt):
    # 2 CPUs: one for the coordinator job, one for its single worker job.
    config = _project(tmp_path, idealized_met, n_workers=1)
    submitted = stilt("submit", config, "--profile", "hpc", "--walltime", "00:10:00")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.split("coordinator job ")[1].split()[0]
    deadline = time.monotonic() + 600  # guards against a job that never ends
    while subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True).stdout:
        assert time.monotonic() < deadline, "coordinator job did not finish"
        time.sleep(1)
    output = (tmp_path / f"stilt-coordinator-{job_id}.out").read_text()
    assert Model.from_yaml(config).status().counts()["complete"] == 3, output


def test_a_users_own_adaptive_slurm_cluster(tmp_path):
    from dask_jobqueue import SLURMCluster
    from distributed import Client

    from pystilt_dask.demo import make_demo_project

    model = Model.from_yaml(make_demo_project(tmp_path / "demo", 4))
    with SLURMCluster(
        cores=1, memory="1GB", walltime="00:10:00", log_directory=str(tmp_path / "logs"),
        scheduler_options={"host": "127.0.0.1"}, worker_extra_args=["--host", "127.0.0.1"],
    ) as cluster:  # fmt: skip
        cluster.adapt(minimum=0, maximum=2)
        with Client(cluster) as client:  # no workers yet: adapt starts them for the work
            assert set(model.run(client=client, quiet=True).values()) == {"complete"}
    assert model.status().counts()["complete"] == 4


def test_a_job_slurm_refuses_is_one_line_and_exit_2(tmp_path, stilt):
    from pystilt_dask.demo import make_demo_project

    config = make_demo_project(tmp_path / "demo", 1)
    data = yaml.safe_load(config.read_text())
    data["profiles"] = {"bad": {"backend": "slurm", "cluster": {
        "cores": 1, "memory": "1GB", "queue": "no-such-partition",
        "scheduler_options": {"host": "127.0.0.1"},
    }}}  # fmt: skip
    config.write_text(yaml.safe_dump(data))
    result = stilt("run", config, "--profile", "bad", timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: sbatch refuses the worker job: ")
    assert "no-such-partition" in result.stderr or "partition" in result.stderr
    assert result.stderr.count("\n") == 1
