"""Met paths of any length: each met file is linked into the work directory under a short name.

HYSPLIT cannot open a met file in a folder of more than 256 characters (a fact
about the real hycs_std, checked here); the runs below read the idealized met
(conftest) under a 300-character path and through a short symlink to it, with
``run_trajectory`` and with ``stilt-dask run`` as a user runs it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pystilt_dask.config import ModelConfig
from pystilt_dask.errors import HysplitError
from pystilt_dask.hysplit import resolve_hysplit, run_hysplit
from pystilt_dask.hysplit.inputs import control_text, setup_text
from pystilt_dask.receptors import PointReceptor
from pystilt_dask.trajectory import run_trajectory

POINT = PointReceptor(time="2019-05-30 10:00", longitude=-111.848, latitude=40.766, altitude=5)
GRID = {"xmin": -112.5, "xmax": -111.2, "ymin": 40.3, "ymax": 41.2, "xres": 0.01}


def _long_folder(root: Path, length: int) -> Path:
    """A folder ``length`` characters long, of nested folders with long names."""
    folder = root
    while len(str(folder)) < length:
        room = length - len(str(folder)) - 1
        folder = folder / ("a_long_folder_name_for_met_" * 3)[: max(room, 1)]
    folder.mkdir(parents=True)
    return folder


def _copy_met(idealized_met: dict, folder: Path) -> dict:
    for path in Path(idealized_met["directory"]).iterdir():
        shutil.copy(path, folder / path.name)
    return {**idealized_met, "directory": str(folder)}


def _config(met: dict) -> ModelConfig:
    return ModelConfig.from_dict(
        {"mets": {"m": met}, "hysplit": {"n_hours": -1, "numpar": 20, "seed": 7}}
    )


@pytest.fixture
def long_met(tmp_path, idealized_met) -> dict:
    folder = _long_folder(tmp_path / "deep", 300)
    assert len(str(folder)) == 300
    return _copy_met(idealized_met, folder)


def test_hysplit_itself_cannot_read_a_met_folder_of_300_characters(tmp_path, long_met):
    # Why the links exist: the long folder written into CONTROL as is.
    names = sorted(str(p) for p in Path(long_met["directory"]).iterdir())
    config = _config(long_met).hysplit
    (tmp_path / "CONTROL").write_text(control_text(POINT, config, names))
    (tmp_path / "SETUP.CFG").write_text(setup_text(config, POINT))
    with pytest.raises(HysplitError, match="exited with status 132"):
        run_hysplit(tmp_path, resolve_hysplit(), 60)


def test_met_under_a_300_character_path_and_through_a_short_symlink(
    tmp_path, idealized_met, long_met
):
    plain = run_trajectory(POINT, _config(idealized_met))
    deep = run_trajectory(POINT, _config(long_met), workdir=tmp_path / "work")
    pd.testing.assert_frame_equal(deep, plain, check_exact=True)
    # CONTROL names the links; each link is the path found, not resolved.
    control = (tmp_path / "work" / "CONTROL").read_text().splitlines()
    assert control[6:9] == ["1", "met/", "m0"]
    target = Path(os.readlink(tmp_path / "work" / "met" / "m0"))
    assert target == Path(long_met["directory"]) / "20190530_06-11_ideal"

    short = tmp_path / "m"
    short.symlink_to(long_met["directory"])
    through_link = run_trajectory(POINT, _config({**long_met, "directory": str(short)}))
    pd.testing.assert_frame_equal(through_link, plain, check_exact=True)


def test_met_files_are_matched_by_the_name_they_are_found_under(tmp_path, idealized_met):
    # A content-addressed store (git-annex, DVC) holds files under hashes; the met
    # folder holds symlinks named as the met is named.
    store = tmp_path / "objects"
    store.mkdir()
    folder = tmp_path / "met"
    folder.mkdir()
    for index, path in enumerate(sorted(Path(idealized_met["directory"]).iterdir())):
        shutil.copy(path, store / f"SHA256E-{index}")
        (folder / path.name).symlink_to(store / f"SHA256E-{index}")
    particles = run_trajectory(POINT, _config({**idealized_met, "directory": str(folder)}))
    pd.testing.assert_frame_equal(
        particles, run_trajectory(POINT, _config(idealized_met)), check_exact=True
    )


@pytest.mark.parametrize("route", ["long", "symlink"])
def test_stilt_dask_run_completes_on_met_under_a_long_path(tmp_path, long_met, stilt, route):
    directory = long_met["directory"]
    if route == "symlink":
        (tmp_path / "m").symlink_to(directory)
        directory = str(tmp_path / "m")
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "mets": {"m": {**long_met, "directory": directory}},
                "hysplit": {"n_hours": -1, "numpar": 20, "seed": 7},
                "footprints": {"default": GRID},
                "execution": {"n_workers": 1, "cluster": {"dashboard_address": ":0"}},
                "output": "project",
            }
        )
    )
    (tmp_path / "receptors.csv").write_text(
        "time,longitude,latitude,altitude\n2019-05-30 10:00,-111.848,40.766,5\n"
    )
    result = stilt("run", config)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    counts = json.loads(stilt("status", config, "--json").stdout)
    assert counts["complete"] == 1 and counts["failed"] == 0
