"""Slurm settings without Slurm: time limits, worker job scripts, the coordinator script.

The job-script tests build ``SLURMCluster`` as dask-jobqueue's own
``job_script()`` tests do: the cluster starts only its scheduler (on loopback
here) and submits nothing until scaled.
"""

from __future__ import annotations

import datetime
import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import dask.config
import pytest

from pystilt_dask.config import ExecutionConfig
from pystilt_dask.errors import ConfigError
from pystilt_dask.execution.clusters import _slurm
from pystilt_dask.execution.slurm import (
    coordinator_script,
    lifetime_args,
    parse_walltime,
    slurm_cluster_kwargs,
)

pytest.importorskip("dask_jobqueue")
from dask_jobqueue import SLURMCluster  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="runs scripts with bash")

SLOT = "--resources hysplit=1 --preload pystilt_dask.execution.preload"
# A scheduler no other machine can reach, with a free dashboard port.
LOOPBACK = {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}
# What a site's jobqueue.yaml might hold.
SITE = {
    "jobqueue.slurm.cores": 4,
    "jobqueue.slurm.memory": "8GB",
    "jobqueue.slurm.processes": 4,
    "jobqueue.slurm.name": "site-worker",
    "jobqueue.slurm.queue": "compute",
    "jobqueue.slurm.account": "climate",
    "jobqueue.slurm.walltime": "02:00:00",
    "jobqueue.slurm.worker-extra-args": [],
    "jobqueue.slurm.job-extra-directives": [],
    "jobqueue.slurm.job-directives-skip": [],
}

minutes = datetime.timedelta(minutes=1)
seconds = datetime.timedelta(seconds=1)
hours = datetime.timedelta(hours=1)
days = datetime.timedelta(days=1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30", 30 * minutes),  # minutes, not nanoseconds
        ("90", 90 * minutes),  # fields may exceed their usual range
        ("0:30", 30 * seconds),  # minutes:seconds
        ("30:00", 30 * minutes),
        ("30:30", 30 * minutes + 30 * seconds),
        ("1:30:00", 90 * minutes),  # hours:minutes:seconds
        ("00:30:00", 30 * minutes),
        ("48:00:00", 2 * days),
        ("2-12", 2 * days + 12 * hours),  # days-hours
        ("2-12:30", 2 * days + 12 * hours + 30 * minutes),  # days-hours:minutes
        ("1-00:00:00", days),  # days-hours:minutes:seconds
        ("1-0:0:1", days + seconds),
        (" 45 ", 45 * minutes),
        ("UNLIMITED", None),
        ("unlimited", None),
        ("INFINITE", None),
        ("-1", None),
        ("0", None),  # sbatch: a limit of zero is no limit
        ("0-0:0:0", None),
    ],
)
def test_walltime_in_slurm_grammar(text, expected):
    assert parse_walltime(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "", " ", "abc", "30s", "1h", "30 min", "1 day", "2 days 12:00:00", "1.5", "-5",
        "1-", "-", ":", "1:", ":30", "1::", "1:2:3:4", "1-2-3", "1-2:3:4:5", "1:2-3",
        "٣٠",  # Arabic-Indic digits: int() reads them, Slurm does not
        "UNLIMITED!", 30, 1800, None, 1.5,
    ],
)  # fmt: skip
def test_walltime_outside_slurm_grammar(text):
    with pytest.raises(ConfigError) as caught:
        parse_walltime(text, "execution.cluster.walltime")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"execution.cluster.walltime {text!r} ")


def test_lifetime_leaves_before_the_walltime():
    # "30" is 30 minutes: retire at 28.5 min +- 45 s, well before Slurm's kill.
    assert lifetime_args("30", []) == [
        "--lifetime", "1710s", "--lifetime-stagger", "45s", "--lifetime-restart",
    ]  # fmt: skip
    # Long jobs: a 5% margin, a stagger of at most 5 minutes.
    assert lifetime_args("2-00", [])[:4] == ["--lifetime", "164160s", "--lifetime-stagger", "300s"]
    assert lifetime_args("UNLIMITED", []) == []
    assert lifetime_args(None, []) == []
    assert lifetime_args("30", ["--lifetime", "10m"]) == []
    assert lifetime_args("30", ["--lifetime=10m"]) == []
    with pytest.raises(ConfigError, match="^jobqueue.slurm.walltime '30 min' "):
        lifetime_args("30 min", [], field="jobqueue.slurm.walltime")


def _job_script(user: dict, site: dict | None = None) -> tuple[dict, str]:
    """The kwargs pystilt_dask passes for ``user`` and the worker job script they give."""
    with dask.config.set({**SITE, **(site or {})}):
        kwargs = slurm_cluster_kwargs(user)
        with SLURMCluster(**kwargs, scheduler_options=LOOPBACK) as cluster:
            return kwargs, cluster.job_script()


def _worker_command(script: str) -> str:
    return next(line for line in script.splitlines() if "distributed.cli.dask_worker" in line)


def test_site_config_is_honoured_when_the_user_sets_nothing():
    kwargs, script = _job_script({})
    # Nothing is passed but the worker arguments pystilt_dask adds.
    assert set(kwargs) == {"worker_extra_args"}
    for line in [
        "#SBATCH -J site-worker",
        "#SBATCH -p compute",
        "#SBATCH -A climate",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=8G",
        "#SBATCH -t 02:00:00",
    ]:
        assert line in script.splitlines()
    command = _worker_command(script)
    assert "--nthreads 1" in command  # 4 cores / 4 processes
    assert "--nworkers 4" in command
    assert SLOT in command
    # 2 h job: retire at 1 h 54 min +- 3 min.
    assert "--lifetime 6840s --lifetime-stagger 180s --lifetime-restart" in command


def test_user_settings_win_over_site_config():
    user = {
        "cores": 1, "processes": 1, "memory": "2GB", "job_name": "stilt-dask",
        "queue": "short", "walltime": "30", "worker_extra_args": ["--host", "127.0.0.1"],
    }  # fmt: skip
    kwargs, script = _job_script(user)
    assert kwargs == {**user, "worker_extra_args": kwargs["worker_extra_args"]}
    for line in [
        "#SBATCH -J stilt-dask",
        "#SBATCH -p short",
        "#SBATCH --cpus-per-task=1",
        "#SBATCH --mem=2G",
        "#SBATCH -t 30",
    ]:
        assert line in script.splitlines()
    command = _worker_command(script)
    assert "--nthreads 1" in command and "--nworkers" not in command
    # The user's arguments first, then the slot and a lifetime for 30 minutes, not 60 s.
    assert f"--host 127.0.0.1 {SLOT} --lifetime 1710s --lifetime-stagger 45s" in command


def test_site_worker_args_are_kept():
    _, script = _job_script({}, {"jobqueue.slurm.worker-extra-args": ["--interface", "ib0"]})
    assert f"--interface ib0 {SLOT}" in _worker_command(script)


def test_lifetime_follows_the_time_limit_the_job_gets():
    # sbatch keeps the last --time: an extra directive overrides the walltime.
    _, script = _job_script({"walltime": "30", "job_extra_directives": ["--time=2-00"]})
    assert "--lifetime 164160s" in _worker_command(script)
    # The site's directives count when the user sets none.
    _, script = _job_script({}, {"jobqueue.slurm.job-extra-directives": ["-t 60"]})
    assert "--lifetime 3420s" in _worker_command(script)
    # A skipped "-t" line leaves the partition's default: no lifetime can be derived.
    _, script = _job_script({}, {"jobqueue.slurm.job-directives-skip": ["-t"]})
    assert "#SBATCH -t" not in script
    assert "--lifetime" not in _worker_command(script)


@pytest.mark.parametrize("walltime", ["UNLIMITED", "0"])
def test_no_lifetime_without_a_time_limit(walltime):
    _, script = _job_script({"walltime": walltime})
    assert f"#SBATCH -t {walltime}" in script
    assert "--lifetime" not in _worker_command(script)


def test_a_given_lifetime_wins():
    _, script = _job_script({"worker_extra_args": ["--lifetime", "10m"]})
    command = _worker_command(script)
    assert command.count("--lifetime") == 1 and "--lifetime 10m" in command
    assert SLOT in command


@pytest.mark.parametrize(
    ("user", "site", "field"),
    [
        ({"walltime": "30 min"}, {}, "execution.cluster.walltime"),
        ({"walltime": 1800}, {}, "execution.cluster.walltime"),  # YAML's reading of 30:00
        ({}, {"jobqueue.slurm.walltime": "2 hours"}, "jobqueue.slurm.walltime"),
        ({"job_extra_directives": ["--time=soon"]}, {}, "job_extra_directives"),
    ],
)
def test_a_bad_time_limit_names_its_setting(user, site, field):
    with dask.config.set({**SITE, **site}), pytest.raises(ConfigError) as caught:
        slurm_cluster_kwargs(user)
    assert str(caught.value).startswith(f"{field} ")
    assert "\n" not in str(caught.value)


def test_missing_cores_and_memory_is_one_clear_line():
    unset = {"jobqueue.slurm.cores": None, "jobqueue.slurm.memory": None}
    with dask.config.set({**SITE, **unset}), pytest.raises(ConfigError) as caught:
        slurm_cluster_kwargs({})
    message = str(caught.value)
    assert "\n" not in message
    for name in ["execution.cluster.cores", "execution.cluster.memory", "jobqueue.yaml"]:
        assert name in message
    # Either one may come from the site.
    with dask.config.set({**SITE, **unset}), pytest.raises(ConfigError) as caught:
        slurm_cluster_kwargs({"cores": 1})
    assert "execution.cluster.memory" in str(caught.value)
    assert "cores" not in str(caught.value)
    with dask.config.set({**SITE, **unset}):
        assert slurm_cluster_kwargs({"cores": 1, "memory": "2GB"})["cores"] == 1


def fake_sbatch(folder, monkeypatch, code: int = 0, stderr: str = ""):
    """An ``sbatch`` first on PATH that keeps the script it is given and exits ``code``."""
    seen = folder / "checked.sh"
    script = folder / "sbatch"
    script.write_text(
        f'#!/bin/sh\n[ "$1" = --test-only ] || exit 9\ncat > {shlex.quote(str(seen))}\n'
        f"echo {shlex.quote(stderr)} >&2\nexit {code}\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return seen


def test_make_cluster_builds_the_slurm_cluster_from_these_kwargs(tmp_path, monkeypatch):
    checked = fake_sbatch(tmp_path, monkeypatch)
    execution = ExecutionConfig(
        backend="slurm", cluster={"walltime": "30", "scheduler_options": LOOPBACK}
    )
    # dask-jobqueue reads the config again for each job: keep the site's in force.
    with dask.config.set(SITE):
        cluster = _slurm(execution)
        try:
            script = cluster.job_script()
        finally:
            cluster.close()
    assert "#SBATCH --cpus-per-task=4" in script and "#SBATCH -t 30" in script
    assert f"{SLOT} --lifetime 1710s" in _worker_command(script)
    assert checked.read_text() == script  # Slurm was asked about exactly this job


def test_a_worker_job_slurm_refuses_is_one_clear_error(tmp_path, monkeypatch):
    fake_sbatch(tmp_path, monkeypatch, 1, "sbatch: error: invalid partition specified: compute")
    execution = ExecutionConfig(backend="slurm", cluster={"scheduler_options": LOOPBACK})
    with dask.config.set(SITE), pytest.raises(ConfigError) as refused:
        _slurm(execution)
    assert str(refused.value) == (
        "sbatch refuses the worker job: sbatch: error: invalid partition specified: compute"
    )


# --- the coordinator job of `stilt-dask submit` ----------------------------------------

# A folder name a shell would split, expand and run, and Slurm would expand.
HOSTILE = "my project $(touch x) `touch y`; touch z it's 100% #1"


def _sbatch_arguments(line: str) -> list[str]:
    """Split an #SBATCH line as sbatch does (Slurm's ``_get_argument``, src/sbatch/opt.c).

    Whitespace separates arguments; single or double quotes group; a backslash
    escapes the next character, inside quotes too; an unquoted ``#`` ends the line.
    """
    rest, args = line.removeprefix("#SBATCH"), []
    i = 0
    while i < len(rest):
        while i < len(rest) and rest[i].isspace():
            i += 1
        if i == len(rest):
            break
        arg, quote, escaped, comment = [], "", False, False
        while i < len(rest) and (quote or not rest[i].isspace()):
            char = rest[i]
            i += 1
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
                continue
            elif quote:
                if char == quote:
                    quote = ""
                    continue
            elif char in "\"'":
                quote = char
                continue
            elif char == "#":
                comment = True
                break
            arg.append(char)
        assert not quote, f"sbatch would stop at an unmatched quote in {line!r}"
        if arg:
            args.append("".join(arg))
        if comment:
            break
    return args


def _slurm_file_name(pattern: str, job_id: int) -> str:
    """Expand %j and %% in an output file name as Slurm does."""
    return pattern.replace("%j", str(job_id)).replace("%%", "%")


def _fake_python(folder: Path) -> Path:
    # Prints its arguments NUL-separated, as a stand-in for the coordinator's Python.
    folder.mkdir(parents=True, exist_ok=True)
    fake = folder / "python"
    fake.write_text("#!/bin/sh\nprintf '%s\\0' \"$@\"\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return fake


def test_coordinator_script_runs_exactly_the_config_path(tmp_path):
    project = tmp_path / HOSTILE
    project.mkdir()
    config = project / "config.yaml"
    python = _fake_python(tmp_path / "bin $(touch x)")
    script = coordinator_script(config, "hpc $(touch x)", "30", ["--mem=2G"], python=str(python))
    path = tmp_path / "stilt-coordinator.sbatch"
    path.write_text(script)

    assert script.startswith("#!/usr/bin/env bash\n")
    exec_line = script.splitlines()[-1]
    assert exec_line.startswith("exec ")
    assert subprocess.run(["bash", "-n", "-c", exec_line]).returncode == 0
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0

    run = subprocess.run(["bash", str(path)], cwd=tmp_path, capture_output=True)
    assert run.returncode == 0, run.stderr
    argv = run.stdout.decode().split("\0")[:-1]
    assert argv == ["-m", "pystilt_dask", "run", str(config), "--profile", "hpc $(touch x)"]
    # Nothing in the paths was executed.
    for name in ["x", "y", "z"]:
        assert not list(tmp_path.rglob(name)), name


def test_coordinator_directives_read_back_as_written(tmp_path):
    config = tmp_path / HOSTILE / "config.yaml"
    options = ["--mem=2G", "--account=climate", '--comment=a "quoted" \\ note # not a comment']
    script = coordinator_script(config, None, "1-00:00:00", options, python="/usr/bin/python3")
    directives = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    parsed = [_sbatch_arguments(line) for line in directives]
    assert all(len(args) == 1 for args in parsed), parsed
    args = [arg for (arg,) in parsed]
    assert args[:3] == ["--job-name=stilt-coordinator", "--time=1-00:00:00", "--cpus-per-task=1"]
    output = args[3].removeprefix("--output=")
    assert _slurm_file_name(output, 42) == str(config.parent / "stilt-coordinator-42.out")
    assert args[4:] == options
    # Plain options stay readable.
    assert "#SBATCH --mem=2G" in directives
    assert script.splitlines()[-1].endswith(" run " + shlex.quote(str(config)))


def test_coordinator_script_without_profile_and_relative_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    here = Path.cwd()
    script = coordinator_script(Path("config.yaml"), None, "2-12", [], python="python3")
    assert script.splitlines()[-1] == f"exec python3 -m pystilt_dask run {here}/config.yaml"
    assert f"#SBATCH --output={here}/stilt-coordinator-%j.out" in script
    assert "#SBATCH --time=2-12" in script


@pytest.mark.parametrize(
    ("walltime", "options", "folder", "match"),
    [
        ("1 day", [], "p", r"^--walltime '1 day' is not a Slurm time limit"),
        ("30", ["--comment=a\nrm -rf ~"], "p", "line break"),
        ("30", [], "a\nb", "line break"),
        ("30", [], "my-hetjob", "hetjob"),
        ("30", ["--comment=PackJob"], "p", "packjob"),
        ("30", [], "back\\slash", "folder with a"),
    ],
)
def test_coordinator_script_refuses_what_sbatch_cannot_read(
    tmp_path, walltime, options, folder, match
):
    with pytest.raises(ConfigError, match=match) as caught:
        coordinator_script(tmp_path / folder / "config.yaml", None, walltime, options, "python3")
    assert "\n" not in str(caught.value)


def test_the_coordinator_runs_this_python_by_default(tmp_path):
    script = coordinator_script(tmp_path / "config.yaml", None, "30", [])
    assert shlex.split(script.splitlines()[-1])[1] == sys.executable
