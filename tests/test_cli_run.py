"""``stilt-dask run | logs | status | serve | worker`` as real processes (issue #5).

Every command is the installed console script in a subprocess, on a real
LocalCluster or a real scheduler and worker, running real HYSPLIT on the
idealized met of conftest (``idealized_met``). Runs are tiny (20 particles, 1 hour
back) so the whole file takes a few minutes at most on two cores; a HYSPLIT that
must still be running when the test acts is a stand-in that holds until killed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.request import urlopen

import pytest
import yaml
from distributed import Client

from pystilt_dask.hysplit.inputs import format_value
from pystilt_dask.model import Model

BIN = Path(sys.executable).parent
STILT = str(BIN / "stilt-dask")
GRID = {"xmin": -112.5, "xmax": -111.2, "ymin": 40.3, "ymax": 41.2, "xres": 0.01}
VALLEY = [(-111.85, 40.77), (-111.9, 40.7), (-111.7, 40.8)]
# Within two cells of the idealized met's southern edge (39.75 N, 0.05° cells): the
# pre-flight of `run` refuses this receptor before any cluster starts.
EDGE = (-111.85, 39.8)
STATE_KEYS = ["pending", "running", "complete", "complete-empty", "failed", "interrupted"]
INTERRUPTED = "interrupted: finished simulations are stored; rerun to resume"


def at(hour: int, site: tuple[float, float]) -> tuple[str, float, float]:
    """A receptor row (time, longitude, latitude) on the morning the met covers."""
    return (f"2019-05-30 {hour:02d}:00", *site)


def write_project(folder: Path, met: dict, receptors, **hysplit) -> Path:
    """Write config.yaml (store ``project/`` beside it) and receptors.csv; return the config."""
    config = {
        "mets": {"idealized": met},
        "hysplit": {"n_hours": -1, "numpar": 20, "seed": 3, **hysplit},
        "footprints": {"default": GRID},
        # Two workers whatever the core count; a free dashboard port, as 8787 may
        # belong to another run on the machine.
        "execution": {"n_workers": 2, "cluster": {"dashboard_address": ":0"}},
        # Only ever run here with --backend local: the override must win.
        "profiles": {"hpc": {"backend": "slurm"}},
        "output": "project",
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    add_receptors(path, receptors)
    return path


def add_receptors(config: Path, receptors) -> None:
    """Append rows (5 m above ground) to the receptors.csv beside ``config``."""
    table = config.with_name("receptors.csv")
    lines = [] if table.exists() else ["time,longitude,latitude,altitude"]
    lines += [f"{when},{lon},{lat},5" for when, lon, lat in receptors]
    with table.open("a") as f:
        f.write("\n".join(lines) + "\n")


def _default_sigint() -> None:
    # Children inherit an ignored SIGINT (pytest started in the background by a
    # script), and Python then never raises KeyboardInterrupt: restore the default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stilt(*args, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``stilt-dask ARGS`` to the end."""
    return subprocess.run(
        [STILT, *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout,
        preexec_fn=_default_sigint,
    )  # fmt: skip


def run_watching_workers(
    *args, env: dict[str, str], hold: Path, timeout: float = 300
) -> tuple[subprocess.CompletedProcess, dict]:
    """``stilt-dask run ARGS``, and the workers of its cluster, read off its dashboard.

    The link is the first line printed, once the cluster is up; its hycs_std is
    ``hold`` (a ``stand_in`` that holds), released once the workers have been read,
    so the cluster is still there to be read however fast the simulations are.
    """
    command = [STILT, "run", *map(str, args)]
    with subprocess.Popen(
        command, env={**env, "STILT_HYSPLIT_EXE": str(hold)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint,
    ) as process:  # fmt: skip
        # Bounds the blocking readline too: a killed run closes its output.
        watchdog = threading.Timer(timeout, process.kill)
        watchdog.start()
        try:
            first = process.stdout.readline()
            link = re.fullmatch(r"Dask dashboard: (http://\S+)/status\n", first)
            workers = {}
            if link:
                with urlopen(f"{link[1]}/json/identity.json", timeout=60) as response:
                    workers = json.load(response)["workers"]
            hold.with_suffix(".runs").joinpath("release").touch()
            out, err = process.communicate()
        except BaseException:
            process.kill()
            raise
        finally:
            watchdog.cancel()
    result = subprocess.CompletedProcess(command, process.returncode, first + out, err)
    assert link, result.stdout + result.stderr
    return result, workers


@contextmanager
def started(log: Path, command: list, env: dict[str, str], **popen) -> Iterator[subprocess.Popen]:
    """A long-lived process writing ``log``.out and ``log``.err; stopped on exit."""
    with log.with_suffix(".out").open("w") as out, log.with_suffix(".err").open("w") as err:
        process = subprocess.Popen(
            list(map(str, command)), env=env, stdout=out, stderr=err,
            preexec_fn=_default_sigint, **popen,
        )  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {timeout} s")
        time.sleep(0.1)


def summary(stdout: str) -> dict[str, tuple[int, int]]:
    """The run's summary table: per state, (this run, project)."""
    rows = re.findall(r"^\W*([a-z-]+)\W+(\d+)\W+(\d+)\W*$", stdout, re.MULTILINE)
    return {state: (int(this_run), int(project)) for state, this_run, project in rows}


def expected(**rows: tuple[int, int]) -> dict[str, tuple[int, int]]:
    """A summary table: the given rows, every other state (0, 0)."""
    return {state: rows.get(state, (0, 0)) for state in STATE_KEYS}


def assert_one_line_error(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr


def _stat_fields(pid: int) -> list[str] | None:
    # /proc/PID/stat after the ")" closing the command name: state, ppid, ...
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (workers, HYSPLIT, multiprocessing helpers)."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").glob("[0-9]*"):
        fields = _stat_fields(int(proc.name))
        if fields:
            children.setdefault(int(fields[1]), []).append(int(proc.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (a zombie is dead, merely not yet reaped)."""
    return {pid for pid in pids if (fields := _stat_fields(pid)) and fields[0] != "Z"}


def hysplit_under(root: Path) -> list[int]:
    """Live ``hycs_std`` processes working in a directory under ``root``."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "comm").read_text().strip() != "hycs_std":
                continue
            if Path(os.readlink(proc / "cwd")).is_relative_to(root):
                found.append(int(proc.name))
        except OSError:
            continue  # gone meanwhile
    return found


def test_run_completes_then_finds_nothing_to_do_then_redoes_all(
    tmp_path, idealized_met, env, stand_in
):
    config = write_project(tmp_path, idealized_met, [at(8, VALLEY[0]), at(9, VALLEY[0])])
    result, workers = run_watching_workers(config, env=env, hold=stand_in('hold\nexec "$REAL"'))
    assert result.returncode == 0, result.stderr
    assert [(w["nthreads"], w["resources"]) for w in workers.values()] == [(1, {"hysplit": 1})] * 2
    assert "stilt-dask run finished in" in result.stdout
    assert summary(result.stdout) == expected(complete=(2, 2))
    model = Model.from_yaml(config)
    paths = model.trajectories.paths()
    written = {sim_id: os.stat(path).st_mtime_ns for sim_id, path in paths.items()}
    assert sorted(written) == sorted(model.simulations.ids())

    again = stilt("run", config, env=env)
    assert again.returncode == 0, again.stderr
    assert summary(again.stdout) == expected(complete=(0, 2))

    # A Slurm profile forced onto the local backend, with one worker instead of one per core.
    options = ["--no-skip", "--profile", "hpc", "--backend", "local", "--n-workers", "1"]
    redo, workers = run_watching_workers(
        config, *options, env=env, hold=stand_in('hold\nexec "$REAL"')
    )
    assert redo.returncode == 0, redo.stderr
    assert len(workers) == 1
    assert summary(redo.stdout) == expected(complete=(2, 2))
    assert all(os.stat(paths[sim_id]).st_mtime_ns > mtime for sim_id, mtime in written.items())


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--profile", "nope"], "unknown execution profile 'nope' (profiles: hpc)"),
        (["--backend", "nope"], "Input should be 'local', 'slurm' or 'kubernetes'"),
        (["--n-workers", "0"], "Input should be greater than 0"),
    ],
    ids=["profile", "backend", "n-workers"],
)
def test_bad_run_options_are_one_line_before_anything_starts(
    tmp_path, idealized_met, env, option, message
):
    config = write_project(tmp_path, idealized_met, [at(8, VALLEY[0])])
    result = stilt("run", config, *option, env=env)
    assert_one_line_error(result, message)
    assert result.stdout == "" and not (tmp_path / "project").exists()


def test_a_receptor_the_met_cannot_run_is_refused_before_any_cluster(tmp_path, idealized_met, env):
    config = write_project(tmp_path, idealized_met, [at(8, VALLEY[0]), at(8, EDGE)])
    result = stilt("run", config, env=env)
    assert result.returncode == 2 and result.stdout == "", result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: not started: 1 problem found before any cluster"), lines
    assert lines[1].startswith("201905300800_-111.85_39.8_5: receptor (-111.85, 39.8) is outside")
    assert not (tmp_path / "project" / "particles").exists()


def test_failed_simulation_exits_1_and_logs_say_why(tmp_path, idealized_met, env, stand_in):
    config = write_project(tmp_path, idealized_met, [at(8, VALLEY[0]), at(8, VALLEY[1])])
    valley_id, edge_id = (f"201905300800_{lon}_{lat}_5" for lon, lat in VALLEY[:2])
    # HYSPLIT fails for the second receptor (its release line in CONTROL) only.
    line = " ".join(format_value(float(v)) for v in (VALLEY[1][1], VALLEY[1][0], 5))
    failing = stand_in(f'grep -qxF "{line}" CONTROL && {{ echo "stand-in failure"; exit 3; }}\n'
                       'exec "$REAL"')  # fmt: skip
    env = {**env, "STILT_HYSPLIT_EXE": str(failing)}
    result = stilt("run", config, env=env)
    assert result.returncode == 1, result.stderr
    assert f"failed {edge_id}" in result.stdout
    assert summary(result.stdout) == expected(complete=(1, 1), failed=(1, 1))

    status = stilt("status", config, "--json", env=env)
    assert status.returncode == 0, status.stderr
    counts = json.loads(status.stdout)
    assert list(counts) == [*STATE_KEYS, "footprints", "unregistered", "claims"]
    assert counts["unregistered"] == 0
    per_state = dict(zip(STATE_KEYS, [0, 0, 1, 0, 1, 0], strict=True))
    assert {k: counts[k] for k in STATE_KEYS} == per_state
    assert counts["footprints"] == {"default": per_state}

    logs = stilt("logs", config, edge_id, env=env)
    assert logs.returncode == 0, logs.stderr
    assert re.search(
        r"^failed at \S+ in trajectory: nonzero_exit: .*hycs_std exited with status 3",
        logs.stdout, re.MULTILINE,
    ), logs.stdout  # fmt: skip
    assert "stand-in failure" in logs.stdout
    assert "Complete Hysplit" in stilt("logs", config, valley_id, env=env).stdout
    assert_one_line_error(stilt("logs", config, "nope", env=env), "no simulation 'nope' in ")


@pytest.mark.parametrize("command", ["register", "run"])
@pytest.mark.parametrize(
    ("receptors", "hysplit", "message"),
    [
        (
            [at(8, VALLEY[0])],
            {"numparr": 20},
            "hysplit: unknown key 'numparr' in HysplitConfig; did you mean 'numpar'?",
        ),
        ([("not a time", *VALLEY[0])], {}, "receptors.csv row 1, field 'time': "),
        ([at(8, VALLEY[0]), at(9, (-111.85, 95))], {}, "receptors.csv row 2, field 'latitude': "),
        (
            [at(8, VALLEY[0]), at(9, VALLEY[0])],
            {"z_top": 4},  # the receptors are 5 m above ground
            "receptors released at or above hysplit.z_top (4 m above ground): "
            "'201905300800_-111.85_40.77_5', '201905300900_-111.85_40.77_5' (2 in all)",
        ),
    ],
    ids=["unknown-key", "bad-time", "latitude-95", "above-z-top"],
)
def test_bad_input_is_one_line_at_register_and_run(
    tmp_path, idealized_met, env, command, receptors, hysplit, message
):
    config = write_project(tmp_path, idealized_met, receptors, **hysplit)
    result = stilt(command, config, env=env)
    assert_one_line_error(result, message)
    assert result.stdout == ""  # `run` started no cluster


@pytest.mark.parametrize(
    "grid, message",
    [
        ({**GRID, "xmin": GRID["xmax"], "xmax": GRID["xmin"]}, "footprints.default: xmax ("),
        (
            {**GRID, "projection": "+proj=lcc +lat_1=33 +lat_2=45 +lon_0=-97", "xres": 0.01},
            "footprints.default: xres/yres (0.01, 0.01) are metres in this projection",
        ),
        ({**GRID, "xres": 1e-6}, "footprints.default: the grid has 1299999 x 900000 cells"),
    ],
    ids=["swapped-bounds", "degrees-for-metres", "too-many-cells"],
)
def test_a_bad_grid_is_one_line_before_anything_runs(tmp_path, idealized_met, env, grid, message):
    config = write_project(tmp_path, idealized_met, [at(8, VALLEY[0])])
    data = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**data, "footprints": {"default": grid}}))
    result = stilt("run", config, env=env)
    assert_one_line_error(result, message)
    assert result.stdout == "" and not (tmp_path / "project").exists()


@pytest.mark.parametrize(
    "command", [["register"], ["run"], ["status"], ["logs", "any-id"]], ids=lambda c: c[0]
)
def test_missing_config_file_is_one_line(tmp_path, env, command):
    missing = tmp_path / "config.yaml"
    result = stilt(command[0], missing, *command[1:], env=env)
    assert_one_line_error(result, f"config file {missing} does not exist")


@pytest.mark.parametrize("target", ["coordinator", "process-group"])
def test_ctrl_c_stops_everything_and_a_rerun_resumes(
    tmp_path, idealized_met, env, target, stand_in
):
    """SIGINT to ``stilt-dask run`` alone (``kill -INT``) or to its group (a terminal's Ctrl-C)."""
    receptors = [at(hour, site) for hour in (8, 9) for site in VALLEY]
    config = write_project(tmp_path, idealized_met, receptors)
    model = Model.from_yaml(config)
    root = Path(env["DASK_STILT__COMPUTE_ROOT"])
    # The interrupted run's hycs_std runs the first simulation and holds every other
    # one until killed: SIGINT always finds one stored and both workers in HYSPLIT.
    first_only = stand_in('mkdir "$RUNS/real" 2>/dev/null && exec "$REAL"\nhold')
    held = first_only.with_suffix(".runs")

    def stored_one_and_holding_two() -> bool:
        assert run.poll() is None, "the run ended before it was interrupted"
        holding = len(list(held.glob("held.*")))
        return model.status().counts()["complete"] == 1 and holding == 2

    # Its own session: a group SIGINT spares pytest, and a failed test kills the lot.
    held_env = {**env, "STILT_HYSPLIT_EXE": str(first_only)}
    with started(tmp_path / "run", [STILT, "run", config], held_env, start_new_session=True) as run:
        try:
            wait_for(stored_one_and_holding_two, 300, "stored simulation with two held")
            assert len(hysplit_under(root)) >= 2  # (a holding one may be forking its sleep)
            family = descendants(run.pid)
            if target == "coordinator":
                run.send_signal(signal.SIGINT)
            else:
                os.killpg(run.pid, signal.SIGINT)
            assert run.wait(timeout=120) == 130
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
    # One line, and nothing else: no warnings or tracebacks from the cancelled tasks.
    assert (tmp_path / "run.err").read_text().splitlines() == [INTERRUPTED]
    wait_for(lambda: not alive(family), 60, "exit of every process the run started")
    assert hysplit_under(root) == []
    counts = model.status().counts()
    # Interrupted simulations are pending again, not failed.
    assert counts["complete"] == 1 and counts["failed"] == 0, counts

    rerun = stilt("run", config, env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert summary(rerun.stdout) == expected(complete=(5, 6))
    assert model.status().counts()["complete"] == 6


def _scheduler_address(scheduler_file: Path) -> str | None:
    try:
        return json.loads(scheduler_file.read_text())["address"]
    except (FileNotFoundError, json.JSONDecodeError):  # not (fully) written yet
        return None


def test_serve_runs_batches_registered_while_it_waits(tmp_path, idealized_met, env):
    config = write_project(tmp_path, idealized_met, [at(8, VALLEY[0])])
    model = Model.from_yaml(config)
    log = tmp_path / "serve.out"

    def served() -> list[str]:
        # Printed once serve has the task's result, which is after the store has it.
        return re.findall(r"^\s*complete (\S+)$", log.read_text(), re.MULTILINE)

    scheduler_file = tmp_path / "scheduler.json"
    with ExitStack() as stack:
        stack.enter_context(started(tmp_path / "scheduler", [
            BIN / "dask", "scheduler", "--scheduler-file", scheduler_file, "--host", "127.0.0.1",
            "--port", "0", "--dashboard-address", ":0",
        ], env))  # fmt: skip
        wait_for(lambda: _scheduler_address(scheduler_file), 60, "scheduler file")
        address = _scheduler_address(scheduler_file)
        # Extra arguments go through to `dask worker`.
        worker = [STILT, "worker", address, "--name", "solo"]
        stack.enter_context(started(tmp_path / "worker", worker, env))
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(1, timeout=60)
            workers = client.scheduler_info(n_workers=-1)["workers"].values()
            assert [(w["name"], w["nthreads"], w["resources"]) for w in workers] == [
                ("solo", 1, {"hysplit": 1})
            ]
        command = [STILT, "serve", config, "--scheduler", address, "--poll", "0.2"]
        serve = stack.enter_context(started(tmp_path / "serve", command, env))

        first = stilt("register", config, env=env)
        assert "registered 1 new simulations (1 in total)" in first.stdout, first.stderr
        wait_for(lambda: len(served()) == 1, 90, "first batch run by serve")
        add_receptors(config, [at(9, VALLEY[0]), at(9, VALLEY[1])])
        second = stilt("register", config, env=env)
        assert "registered 2 new simulations (3 in total)" in second.stdout, second.stderr
        wait_for(lambda: len(served()) == 3, 90, "second batch run by serve")

        serve.send_signal(signal.SIGINT)
        assert serve.wait(timeout=30) == 0
    out = log.read_text()
    assert out.startswith(f"serving {model.location.root} on {address}")
    assert out.splitlines()[-1] == "stopped: finished simulations are stored"
    assert sorted(served()) == sorted(model.simulations.ids())
    assert model.status().counts()["complete"] == 3
