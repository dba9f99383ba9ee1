"""Separate coordinators on one project: claims keep them from doing the same work.

Real ``stilt-dask run`` processes, real HYSPLIT on the demo's idealized met; the
``hycs_std`` they run is a wrapper that records each run before handing over.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest

from pystilt_dask.config import ModelConfig
from pystilt_dask.demo import make_demo_project
from pystilt_dask.hysplit.executable import resolve_hysplit
from pystilt_dask.model import Model
from pystilt_dask.store import layout

STILT = str(Path(sys.executable).parent / "stilt-dask")
N = 4


def wrapper(folder: Path, name: str, body: str) -> Path:
    """An executable standing in for hycs_std."""
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def counting(folder: Path) -> Path:
    """hycs_std that appends a line to ``runs.log`` per run, then runs the real one."""
    real = shlex.quote(str(resolve_hysplit().executable))
    log = shlex.quote(str(folder / "runs.log"))
    return wrapper(folder, "counting_hycs", f'echo "$PWD" >> {log}\nexec {real} "$@"')


def project(folder: Path, executable: Path) -> Path:
    """The demo project (N receptors, 20 particles each: the claims are the point, not
    HYSPLIT) with ``executable`` as hycs_std."""
    path = make_demo_project(folder, N)
    config = ModelConfig.from_yaml(path)
    hysplit = config.hysplit.model_copy(update={"executable": str(executable), "numpar": 20})
    config.model_copy(update={"hysplit": hysplit}).to_yaml(path)
    return path


@pytest.fixture(scope="module")
def env(env: dict[str, str]) -> dict[str, str]:
    # Short claims, so a coordinator waiting on another one's claims looks often.
    return {**env, "DASK_STILT__CLAIM_TTL": "4s"}


@pytest.fixture(scope="module")
def single(tmp_path_factory, env: dict[str, str]) -> Path:
    """The project run by one coordinator alone, which runs at once must match (read only)."""
    folder = tmp_path_factory.mktemp("single")
    config = project(folder / "project", counting(folder))
    assert run(config, env).wait(timeout=600) == 0
    return config


def results(root: str) -> dict[str, bytes]:
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if "/particles/" in path or "/foot/c." in path:
                found[os.path.relpath(path, root)] = Path(path).read_bytes()
    return found


def run(config: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [STILT, "run", str(config)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def test_two_runs_at_once_run_each_hysplit_once_and_match_a_single_run(tmp_path, env, single):
    shared = project(tmp_path / "shared", counting(tmp_path))
    first, second = run(shared, env), run(shared, env)
    for coordinator in (first, second):
        out, err = coordinator.communicate(timeout=600)
        assert coordinator.returncode == 0, out + err
    runs = (tmp_path / "runs.log").read_text().splitlines()
    assert len(runs) == N  # every simulation's HYSPLIT ran once, whichever coordinator ran it
    model = Model.from_yaml(shared)
    assert model.status().counts()["complete"] == N
    assert results(model.location.root) == results(Model.from_yaml(single).location.root)
    assert model.location.list_names(layout.CLAIMS) == []


@pytest.mark.slow
def test_claims_of_a_killed_coordinator_are_dead_and_another_finishes(tmp_path, env):
    held = tmp_path / "held"
    # hycs_std that announces itself and never finishes: its coordinator holds claims.
    stuck = wrapper(tmp_path, "stuck_hycs", f"touch {shlex.quote(str(held))}\nexec sleep 600")
    config = project(tmp_path / "proj", stuck)
    doomed = run(config, env)
    model = Model.from_yaml(config)
    while not held.exists():  # synchronised on the event, not on time
        assert doomed.poll() is None, doomed.communicate()
    assert model.location.list_names(layout.CLAIMS)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    # Its claims are left, their holder (the coordinator, whose workers are threads) gone.
    counts = model.status().counts()
    assert counts["interrupted"] >= 1 and counts["running"] == 0, counts

    resumed = ModelConfig.from_yaml(config)
    hysplit = resumed.hysplit.model_copy(update={"executable": str(counting(tmp_path))})
    resumed.model_copy(update={"hysplit": hysplit}).to_yaml(config)
    finisher = run(config, env)
    out, err = finisher.communicate(timeout=600)
    assert finisher.returncode == 0, out + err
    counts = model.status().counts()
    assert counts["complete"] == N and counts["running"] == 0
    assert len((tmp_path / "runs.log").read_text().splitlines()) == N
    assert model.verify().ok


@pytest.mark.slow
def test_run_beside_serve_runs_each_hysplit_once(tmp_path, env):
    from test_cli_run import BIN, _scheduler_address, started, wait_for

    config = project(tmp_path / "proj", counting(tmp_path))
    model = Model.from_yaml(config)
    scheduler_file = tmp_path / "scheduler.json"
    with ExitStack() as stack:
        stack.enter_context(started(tmp_path / "scheduler", [
            BIN / "dask", "scheduler", "--scheduler-file", scheduler_file, "--host", "127.0.0.1",
            "--port", "0", "--dashboard-address", ":0",
        ], env))  # fmt: skip
        wait_for(lambda: _scheduler_address(scheduler_file), 60, "scheduler file")
        address = _scheduler_address(scheduler_file)
        stack.enter_context(started(tmp_path / "worker", [STILT, "worker", address], env))
        serve = stack.enter_context(started(
            tmp_path / "serve", [STILT, "serve", config, "--scheduler", address, "--poll", "1"], env
        ))  # fmt: skip
        coordinator = run(config, env)  # registers the receptors; serve sees them too
        out, err = coordinator.communicate(timeout=600)
        assert coordinator.returncode == 0, out + err
        assert model.status().counts()["complete"] == N
        serve.send_signal(signal.SIGINT)
        assert serve.wait(timeout=60) == 0
    assert len((tmp_path / "runs.log").read_text().splitlines()) == N
    assert model.verify().ok


def test_two_runs_at_once_on_a_compacted_store_run_what_is_left_once(tmp_path, env, single):
    """Half the project run and compacted, then two coordinators at once: each HYSPLIT once."""
    shared = project(tmp_path / "shared", counting(tmp_path))
    table = shared.with_name("receptors.csv")
    rows = table.read_text().splitlines(keepends=True)
    table.write_text("".join(rows[: 1 + N // 2]))  # the header and the first half
    assert run(shared, env).wait(timeout=600) == 0
    compacted = subprocess.run([STILT, "compact", str(shared)], env=env, capture_output=True)
    assert compacted.returncode == 0, compacted.stderr
    assert list(results(Model.from_yaml(shared).location.root)) == ["particles/block-0.parquet"]
    table.write_text("".join(rows))
    first, second = run(shared, env), run(shared, env)
    for coordinator in (first, second):
        out, err = coordinator.communicate(timeout=600)
        assert coordinator.returncode == 0, out + err
    assert len((tmp_path / "runs.log").read_text().splitlines()) == N
    model = Model.from_yaml(shared)
    assert model.status().counts()["complete"] == N
    assert len(results(model.location.root)) == 1 + 2 * (N - N // 2)  # the new ones, unpacked
    alone = Model.from_yaml(single)
    assert model.simulations.ids() == alone.simulations.ids()
    for name in model.config.footprints:
        expected = alone.footprints[name].load().compute()
        assert model.footprints[name].load().compute().identical(expected)
    for sim_id in model.simulations.ids():
        assert model.trajectories.load(sim_id).equals(alone.trajectories.load(sim_id))
    assert model.verify().ok
