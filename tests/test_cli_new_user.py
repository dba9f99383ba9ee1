"""A new user's first commands (issue #12): init, run FOLDER, status, ls, --version.

Every command is the installed console script in a subprocess, as a user types
it, with relative folder names from the user's working directory. Only the
package's idealized met is used (no ../shared), so this runs on a fresh machine;
the one real run is the default 8-receptor demo (about 30 s on two cores).
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pystilt_dask.cli import app
from pystilt_dask.config import ModelConfig
from pystilt_dask.model import Model
from pystilt_dask.receptors import read_receptors

STILT = str(Path(sys.executable).parent / "stilt-dask")
#: Text only an internal object's repr would print.
REPRS = ("Frozen(", " object at 0x", "PosixPath(", "State.", "<Model ")


def stilt(*args: object, cwd: Path, env: dict[str, str], timeout: float = 120):
    """Run ``stilt-dask ARGS`` in ``cwd`` to the end; its output holds no internal repr."""
    result = subprocess.run(
        [STILT, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    for text in (result.stdout, result.stderr):
        assert not any(r in text for r in REPRS), text
    return result


def counts(project: str, cwd: Path, env: dict[str, str]) -> dict:
    """``stilt-dask status PROJECT --json``."""
    result = stilt("status", project, "--json", cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    """Exit 2 with exactly one ``error: …`` line on stderr, naming ``words``."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, env) -> Path:
    """``stilt-dask init --demo demo && stilt-dask run demo``: the user's folder."""
    home = tmp_path_factory.mktemp("user")
    init = stilt("init", "--demo", "demo", cwd=home, env=env)
    assert init.returncode == 0, init.stderr
    assert "stilt-dask run demo" in init.stdout
    # init runs nothing: no store yet, and status of the folder reports nothing done.
    assert not (home / "demo" / "output").exists()
    before = counts("demo", home, env)
    # Nothing registered yet, and status says how many receptors wait for it.
    assert before["pending"] == before["complete"] == 0 and before["unregistered"] == 8
    run = stilt("run", "demo", cwd=home, env=env, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stderr == ""  # no warnings on a normal run
    return home


def test_init_demo_run_status(demo_run, env):
    # `run demo` ran the folder's config.yaml (store demo/output), not an empty store at demo/.
    assert not (demo_run / "demo" / ".stilt").exists()
    status = stilt("status", "demo", cwd=demo_run, env=env)
    assert status.returncode == 0, status.stderr
    assert "demo/output" in status.stdout
    # Table rows: state, simulations, footprint default.
    cells = [line.strip("│ ").split("│") for line in status.stdout.splitlines() if "│" in line]
    rows = {row[0].strip(): [c.strip() for c in row[1:]] for row in cells}
    assert rows["complete"] == ["8", "8"] and rows["pending"] == ["0", "0"], status.stdout
    assert "not registered" not in status.stdout


def test_ls_lists_ids_and_states(demo_run, env):
    ids = Model.from_yaml(demo_run / "demo" / "config.yaml").simulations.ids()
    assert len(ids) == 8
    complete = stilt("ls", "demo", "--state", "complete", cwd=demo_run, env=env)
    assert complete.returncode == 0, complete.stderr
    assert complete.stdout.splitlines() == ids
    everything = stilt("ls", "demo", cwd=demo_run, env=env)
    assert [line.split() for line in everything.stdout.splitlines()] == [
        [sim_id, "complete"] for sim_id in ids
    ]
    none = stilt("ls", "demo", "--state", "failed", "--state", "pending", cwd=demo_run, env=env)
    assert none.returncode == 0 and none.stdout == ""
    # The listed ids are what `logs` takes.
    log = stilt("logs", "demo", ids[0], cwd=demo_run, env=env)
    assert log.returncode == 0 and "HYSPLIT" in log.stdout


def test_status_takes_folder_store_or_yaml(tmp_path, env, monkeypatch):
    init = stilt("init", "--demo", "proj", "--n-receptors", "3", cwd=tmp_path, env=env)
    assert init.returncode == 0, init.stderr
    register = stilt("register", "proj", cwd=tmp_path, env=env)
    assert register.returncode == 0, register.stderr
    assert "registered 3 new simulations" in register.stdout
    # The store holds its own config.yaml copy beside .stilt/: it is still the store,
    # and the copy names the store as its output, so every form finds the same project.
    assert (tmp_path / "proj" / "output" / "config.yaml").is_file()
    forms = ["proj/", "proj/config.yaml", "proj/output", "proj/output/config.yaml"]
    forms += [f"file://{tmp_path / 'proj' / 'output'}"]
    assert counts(forms[0], tmp_path, env)["pending"] == 3
    # The other forms in process: the same resolution, without the console script's
    # start-up (the slow part, checked by the form above).
    monkeypatch.chdir(tmp_path)
    for form in forms[1:]:
        result = CliRunner().invoke(app, ["status", form, "--json"])
        assert result.exit_code == 0, (form, result.output)
        assert not any(r in result.output for r in REPRS), result.output
        assert json.loads(result.stdout)["pending"] == 3, form


def test_bad_project_is_one_line(tmp_path, env, monkeypatch):
    (tmp_path / "empty").mkdir()
    (tmp_path / "table.csv").write_text("time,longitude,latitude,altitude\n")
    for path in ("nowhere", "empty", "table.csv"):
        result = stilt("status", path, cwd=tmp_path, env=env)
        assert_one_line_error(result, path, "config.yaml", "project folder", "store")
    # The other commands resolve PROJECT the same way (in process: the console
    # script's start-up is the slow part, and the error path is the same).
    monkeypatch.chdir(tmp_path)
    for command in ("ls", "run", "verify", "register", "logs", "serve"):
        extra = {"logs": ["x"], "serve": ["--scheduler", "tcp://127.0.0.1:1"]}.get(command, [])
        result = CliRunner().invoke(app, [command, "empty", *extra])
        assert result.exit_code == 2, (command, result.output)
        assert result.stderr.startswith("error: empty is a folder with no config.yaml"), command
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    result = CliRunner().invoke(app, ["status", "nowhere.yaml"])
    assert result.exit_code == 2 and "nowhere.yaml" in result.stderr


def test_init_writes_a_commented_config_that_loads(tmp_path, env):
    result = stilt("init", "new", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "new" / "config.yaml"
    config = ModelConfig.from_yaml(path)
    assert config.output == str(tmp_path / "new" / "output")
    assert not (tmp_path / "new" / "output").exists()  # nothing ran
    # Every top-level section is written, with a comment right above it.
    lines = path.read_text().splitlines()
    assert set(yaml.safe_load(path.read_text())) == set(ModelConfig.model_fields)
    for key in ModelConfig.model_fields:
        at = lines.index(next(line for line in lines if line.startswith(f"{key}:")))
        assert lines[at - 1].startswith("# "), key
    # The receptor table has the columns and one example row, which reads as a receptor.
    (receptor,) = read_receptors(tmp_path / "new" / "receptors.csv")
    assert receptor.longitude == -111.85
    assert config.receptors == str(tmp_path / "new" / "receptors.csv")


def test_init_refuses_to_overwrite(tmp_path, env):
    assert stilt("init", "p", cwd=tmp_path, env=env).returncode == 0
    before = (tmp_path / "p" / "config.yaml").read_text()
    for args in (["init", "p"], ["init", "--demo", "p"]):
        result = stilt(*args, cwd=tmp_path, env=env)
        assert_one_line_error(result, "config.yaml", "exists")
    assert (tmp_path / "p" / "config.yaml").read_text() == before
    assert not (tmp_path / "p" / "met").exists()  # --demo wrote nothing either


def test_version(tmp_path, env):
    result = stilt("--version", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == importlib.metadata.version("pystilt-dask")
