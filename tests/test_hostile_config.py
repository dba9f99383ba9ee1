"""Hostile or absurd configs are one line and exit 2, before anything is allocated.

Each ``stilt-dask run`` here runs under a 1 GiB address-space limit it must not
reach: a config that made it allocate would fail with a MemoryError traceback.
"""

from __future__ import annotations

import resource
import shutil
import signal
import subprocess

import pytest
import yaml

from pystilt_dask.config import load_yaml
from pystilt_dask.errors import ConfigError

GRID = {"xmin": -112.5, "xmax": -111.2, "ymin": 40.3, "ymax": 41.2, "xres": 0.01}
LIMIT = 2**30

BOMB = """\
a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
"""


def _limited() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


def _run(config, env) -> subprocess.CompletedProcess:
    stilt = shutil.which("stilt-dask", path=env["PATH"])
    return subprocess.run(
        [stilt, "run", str(config)], env=env, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=300, preexec_fn=_limited,
    )  # fmt: skip


def _project(tmp_path, idealized_met, hysplit=None, grid=GRID) -> dict:
    (tmp_path / "receptors.csv").write_text(
        "time,longitude,latitude,altitude\n2019-05-30 08:00,-111.848,40.766,5\n"
    )
    return {
        "mets": {"idealized": idealized_met},
        "hysplit": {"n_hours": -1, "numpar": 20, **(hysplit or {})},
        "footprints": {"default": grid},
        "output": "project",
    }


def _assert_one_line(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [f"error: {result.stderr[7:].strip()}"], result.stderr
    assert message in result.stderr and result.stdout == ""


def test_an_alias_bomb_in_the_cluster_settings(tmp_path, idealized_met, env):
    data = _project(tmp_path, idealized_met)
    cluster = "\n".join("    " + line for line in BOMB.splitlines())
    text = yaml.safe_dump(data) + f"execution:\n  cluster:\n{cluster}\n"
    config = tmp_path / "config.yaml"
    config.write_text(text)
    result = _run(config, env)
    _assert_one_line(result, "its YAML aliases expand to more than 100000 values")
    assert not (tmp_path / "project").exists()


@pytest.mark.parametrize(
    "hysplit, grid, message",
    [
        ({"numpar": 10**23}, GRID, "hysplit.numpar: Input should be less than or equal to 1000"),
        ({"n_hours": -99999999999}, GRID, "hysplit.n_hours: Input should be greater than or equal"),
        ({}, {**GRID, "xres": 1e-9}, "footprints.default: the grid has"),
        ({"n_hours": -8000}, {**GRID, "xres": 0.001},
         "footprint 'default': 8001 hourly layers of 1300 x 900 cells are 35 GiB"),
    ],
    ids=["numpar", "n_hours", "xres", "footprint-bytes"],
)  # fmt: skip
def test_absurd_numbers_name_their_field(tmp_path, idealized_met, env, hysplit, grid, message):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(_project(tmp_path, idealized_met, hysplit, grid)))
    _assert_one_line(_run(config, env), message)
    assert not (tmp_path / "project").exists()


def test_aliases_that_reuse_a_section_still_load():
    text = "base: &base {numpar: 100, seed: 3}\nhysplit: *base\nother: *base\n"
    assert load_yaml(text, "x.yaml")["hysplit"] == {"numpar": 100, "seed": 3}
    with pytest.raises(ConfigError, match="x.yaml is not valid YAML"):
        load_yaml("a: [", "x.yaml")
