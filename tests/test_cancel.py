"""Endings of a simulation task that Dask gives up on, on real clusters (issue #11).

HYSPLIT is a stand-in shell script set as ``hysplit.executable``: it writes its
PID to a file (what the tests wait for, instead of a time) and then either sleeps
for ten minutes or kills the Dask worker running it. The demo project (idealized
met) provides everything before HYSPLIT starts. Waits are bounded only to turn a
hang into a failure: a stand-in HYSPLIT nobody kills would sleep for ten minutes.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from pathlib import Path

import dask
import dask.config
import pytest
from demo_helpers import use_hycs_std, worker_killer
from distributed import Client

from pystilt_dask.demo import make_demo_project
from pystilt_dask.hysplit.run import CANCEL_POLL
from pystilt_dask.model import Model
from pystilt_dask.simulation import cancellation_probe
from pystilt_dask.store import claims, layout
from pystilt_dask.store.completion import State

# Stands in for hycs_std: publish the PID atomically (a reader never sees it half
# written), then become a long sleep with that PID, in HYSPLIT's process group.
SLEEPER = """#!/bin/sh
echo $$ > "{pids}.tmp" && mv "{pids}.tmp" "{pids}"
exec sleep 600
"""


def demo_project(folder: Path, script: str, **execution) -> Path:
    """A one-receptor demo project whose ``hycs_std`` is ``script``; return its config."""
    config = make_demo_project(folder / "project", 1)
    fake = folder / "fake_hycs_std"
    fake.write_text(script)
    fake.chmod(0o755)
    use_hycs_std(config, fake, execution)
    return config


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Wait until ``condition()``; ``timeout`` (seconds) only guards against a hang."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {timeout} s")
        time.sleep(0.01)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie is dead, merely not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_outside_a_dask_task_nothing_is_watched():
    assert cancellation_probe() is None
    # A task of another scheduler is not a Dask worker's task either.
    assert dask.compute(dask.delayed(cancellation_probe)(), scheduler="threads") == (None,)


@pytest.mark.parametrize("ending", ["cancel", "close-client"])
def test_cancel_kills_hysplit_and_publishes_nothing(tmp_path, ending, cluster):
    pids = tmp_path / "hycs_std.pid"
    model = Model.from_yaml(demo_project(tmp_path, SLEEPER.format(pids=pids)))
    scratch = tmp_path / "compute"
    # The cluster's workers are threads of this process: they see this setting.
    with dask.config.set({"stilt.compute-root": str(scratch)}):
        client = Client(cluster)
        try:
            futures = model.run(client=client, wait=False)
            wait_for(pids.exists, 120, "hycs_std started")
            pid = int(pids.read_text())
            assert alive(pid)
            # A task still wanted is left alone, however often the watchdog looks.
            time.sleep(4 * CANCEL_POLL)
            assert alive(pid)
            if ending == "cancel":
                client.cancel(futures)
            else:
                client.close()
            # Killed, not left to sleep its ten minutes.
            wait_for(lambda: not alive(pid), 120, f"end of hycs_std (PID {pid})")
            # The worker forgets a cancelled task once it has returned.
            workers = cluster.workers.values()
            wait_for(lambda: not any(w.state.tasks for w in workers), 120, "end of the task")
        finally:
            client.close()

    (sim_id,) = model.simulations.ids()
    row = int(model.registry().table.loc[sim_id, "row"])
    assert model.status().ids(State.COMPLETE, State.COMPLETE_EMPTY) == []
    assert not model.location.exists(layout.particles_key(sim_id))
    assert not model.location.exists(layout.chunk_key("default", row))
    assert model.simulations.log(sim_id) is None
    assert claims.live_ids(model.location) == set()
    # A cancelled run leaves no work directory behind, even with keep-failed-workdirs.
    assert list(scratch.iterdir()) == []
    # A cancel is not the simulation's failure: it stays pending.
    assert model.simulations.failure(sim_id) is None
    assert model.status().table.loc[sim_id, "state"] == "pending"


@pytest.mark.slow
def test_a_simulation_killing_its_worker_every_time_fails_with_exit_1(tmp_path, stilt, env):
    killed = tmp_path / "killed-workers"
    config = demo_project(
        tmp_path,
        "#!/bin/sh\n" + worker_killer(shlex.quote(str(killed))),
        backend="local",
        n_workers=1,
        cluster={"processes": True, "dashboard_address": ":0"},
    )
    env = {
        **env,
        "DASK_STILT__COMPUTE_ROOT": str(tmp_path / "compute"),
        # KilledWorker after the second death, not the fourth.
        "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1",
    }
    result = stilt("run", config, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    workers = killed.read_text().split()
    assert len(workers) == 2 and len(set(workers)) == 2, workers

    model = Model.from_yaml(config)
    (sim_id,) = model.simulations.ids()
    failure = model.simulations.failure(sim_id)
    assert failure is not None, result.stdout + result.stderr
    assert failure["reason"] == "KilledWorker", failure
    assert "died while running it" in failure["message"]
    assert not model.location.exists(layout.particles_key(sim_id))
    # The dead attempts' claim was this run's: released, so the simulation reads failed.
    assert model.status().table.loc[sim_id, "state"] == "failed"
