"""A simulation whose task kills its worker on every attempt: the run ends (issue #21).

The coordinator used to hang. A ``LocalCluster`` (any ``SpecCluster``) gives a
worker's nanny up for good when, ``distributed.deploy.lost-worker-timeout``
(15 s) after the scheduler lost the worker, no worker of that name is back, and
never replaces it; a task that kills every worker it runs on makes that likely,
as the nanny is restarting the worker just then. With every nanny given up, the
tasks left wait for a worker that never comes: the coordinator waited forever,
in ``as_completed`` or in gathering a result lost with its worker ("Couldn't
gather keys … rescheduling"), with no failure record and the killed attempt's
claim left behind. Here the timeout is 0 s, so every death gives its nanny up
at once: each repetition reproduces that (one worker, or two in the slow
test), and passes only because the run replaces the workers its cluster gave up
(:func:`pystilt_dask.execution.run.keep_workers`).

``allowed-failures`` 0 (1 in the slow test) makes Dask give the task up after
one death (two), and also every task that was waiting on that worker: those
never started, and the run sends them again. HYSPLIT is a stand-in (``stand_in``)
that kills the Dask worker process above it for one simulation, and is the real
``hycs_std`` for the others. Timeouts only guard against the hang.
"""

from __future__ import annotations

import shlex
import socket
from pathlib import Path

import dask.config
import pytest
from demo_helpers import use_hycs_std, worker_killer
from distributed import default_client

from pystilt_dask.config import ModelConfig
from pystilt_dask.demo import make_demo_project
from pystilt_dask.model import Model
from pystilt_dask.store import claims

RECEPTORS = 4


def killer(poison: str) -> str:
    """The body of a stand-in hycs_std: the real one, but for the simulation ``poison``
    (its work directory is named after it), whose run kills its Dask worker process.
    The coordinator (this test, or stilt-dask) is never killed."""
    real_but_for_poison = f"""case "$(basename "$PWD")" in
  {shlex.quote(poison)}-*) ;;
  *) exec "$REAL" ;;
esac
"""
    return real_but_for_poison + worker_killer('"$RUNS/killed"', "*stilt-dask*|*pytest*")


#: Dask settings of every repetition, as ``dask.config`` keys.
SETTINGS = {
    "distributed.scheduler.allowed-failures": 0,
    "distributed.deploy.lost-worker-timeout": "0s",
}


def _environment(env: dict[str, str], settings: dict[str, object]) -> dict[str, str]:
    """``env`` with ``settings`` as the ``DASK_*`` variables Dask reads on import."""
    names = {
        "DASK_" + key.upper().replace(".", "__").replace("-", "_"): str(value)
        for key, value in settings.items()
    }
    return {**env, **names}


def poisoned_project(folder: Path, stand_in, n_workers: int = 1) -> tuple[Path, str, Path]:
    """A demo project whose first simulation kills its worker; config, that id, pid file."""
    config = make_demo_project(folder, RECEPTORS)
    # 20 particles, set before registering (the store keeps the settings): the deaths
    # are the point here, not HYSPLIT.
    settings = ModelConfig.from_yaml(config)
    hysplit = settings.hysplit.model_copy(update={"numpar": 20})
    settings.model_copy(update={"hysplit": hysplit}).to_yaml(config)
    (poison, *_) = Model.from_yaml(config).register()[1].sim_ids
    fake = stand_in(killer(poison))
    use_hycs_std(config, fake, {
        "backend": "local",
        "n_workers": n_workers,
        "cluster": {"processes": True, "dashboard_address": "127.0.0.1:0"},
    })  # fmt: skip
    return config, poison, fake.with_suffix(".runs") / "killed"


def check_ending(config: Path, poison: str, killed: Path, deaths: int) -> None:
    """The poisoned simulation failed with a record naming its worker; the others are done."""
    model = Model.from_yaml(config)
    states = model.status().table["state"]
    assert states[poison] == "failed", states.to_dict()
    assert (states.drop(poison) == "complete").all(), states.to_dict()
    pids = killed.read_text().split()
    # Each death is one HYSPLIT run of the poisoned simulation, on a worker of its own.
    assert len(pids) == deaths and len(set(pids)) == deaths, pids
    failure = model.simulations.failure(poison)
    assert failure is not None and failure["reason"] == "KilledWorker", failure
    assert "tcp://127.0.0.1:" in failure["message"], failure
    assert f"process {pids[-1]} on {socket.gethostname()}" in failure["message"], failure
    assert [sim for sim in states.index if model.simulations.failure(sim)] == [poison]
    # No claim is left behind: not the killed attempts', not anyone's.
    assert claims.current(model.location) == {}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("repetition", range(4))
def test_a_run_on_a_worker_killed_every_time_ends(tmp_path, stand_in, repetition):
    with pytest.raises(ValueError):
        default_client()  # the run builds its own cluster (and keeps its workers)
    config, poison, killed = poisoned_project(tmp_path / "project", stand_in)
    with dask.config.set(SETTINGS):
        states = Model.from_yaml(config).run(quiet=True)
    assert states.pop(poison) == "failed"
    assert set(states.values()) == {"complete"} and len(states) == RECEPTORS - 1
    check_ending(config, poison, killed, deaths=1)


def test_stilt_dask_run_on_a_worker_killed_every_time_exits_1(tmp_path, stand_in, stilt, env):
    config, poison, killed = poisoned_project(tmp_path / "project", stand_in)
    result = stilt("run", config, env=_environment(env, SETTINGS), timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"failed {poison}: KilledWorker" in result.stdout, result.stdout
    check_ending(config, poison, killed, deaths=1)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("repetition", range(20))
def test_runs_on_two_workers_killed_in_turn_end(tmp_path, stand_in, stilt, env, repetition):
    # Two deaths on two workers (allowed-failures 1), each giving its nanny up;
    # every other repetition through stilt-dask, the others in this process.
    settings = {**SETTINGS, "distributed.scheduler.allowed-failures": 1}
    config, poison, killed = poisoned_project(tmp_path / "project", stand_in, n_workers=2)
    if repetition % 2:
        with dask.config.set(settings):
            states = Model.from_yaml(config).run(quiet=True)
        assert states[poison] == "failed" and len(states) == RECEPTORS
    else:
        result = stilt("run", config, env=_environment(env, settings), timeout=540)
        assert result.returncode == 1, result.stdout + result.stderr
    check_ending(config, poison, killed, deaths=2)
