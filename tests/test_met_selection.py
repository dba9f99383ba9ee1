"""Met files chosen from their headers: any file period and time step, and the names' rules.

Archives written here with the idealized met writer (uniform 5 m/s westerly over
(-100, 40)): daily files of 3-hourly data (GFS 0.25°'s layout), one 6-hourly time
per file (GFS or ERA5 converted a time per file) and the same 6-hourly data a day
per file. Runs are the real ``hycs_std``: short (3 to 6 h) and with few particles.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pystilt_dask import preflight
from pystilt_dask.config import MetConfig, ModelConfig
from pystilt_dask.errors import ConfigError, MeteorologyError
from pystilt_dask.meteorology.files import find_met_files, run_window, select_files
from pystilt_dask.meteorology.idealized import write_idealized_met
from pystilt_dask.meteorology.join import hysplit_files
from pystilt_dask.model import Model
from pystilt_dask.receptors import PointReceptor
from pystilt_dask.trajectory import run_trajectory

START = datetime(2024, 7, 1)
DAY = pd.Timestamp("2024-07-02")
SITE = (-100.0, 40.0)
GRID = {"xmin": -101.5, "xmax": -99.5, "ymin": 39.5, "ymax": 40.5, "xres": 0.05}
#: Hours of the default suite's sweep: both ends of the day and around a file's last step.
HOURS = (0, 2, 3, 21, 22, 23)


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, MetConfig]:
    """Three days (2024-07-01 to 03) in three layouts, read-only like a real archive."""
    root = tmp_path_factory.mktemp("archives")
    layouts = {
        "daily3": {"file_hours": 24, "step_hours": 3, "file_format": "%Y%m%d"},
        "single6": {"file_hours": 6, "step_hours": 6, "file_format": "%Y%m%d_%H"},
        "daily6": {"file_hours": 24, "step_hours": 6, "file_format": "%Y%m%d"},
    }
    mets = {}
    for name, layout in layouts.items():
        for path in write_idealized_met(root / name, START, 72, center=SITE, **layout):
            path.chmod(0o444)
        mets[name] = MetConfig(directory=str(root / name), file_format=layout["file_format"])
    return mets


def receptor(time: pd.Timestamp) -> PointReceptor:
    return PointReceptor(time=time, longitude=SITE[0], latitude=SITE[1], altitude=5)


def names(time: str, n_hours: int, met: MetConfig) -> list[str]:
    return [path.name for path in find_met_files(pd.Timestamp(time), n_hours, met)]


def test_daily_files_of_3_hourly_data_take_the_next_day_after_the_last_step(archives):
    daily3 = archives["daily3"]
    # 22:00 lies between the day's last step (21:00) and the next day's first (00:00).
    assert names("2024-07-02 22:00", -3, daily3) == ["20240702", "20240703"]
    assert names("2024-07-02 23:00", -3, daily3) == ["20240702", "20240703"]
    assert names("2024-07-02 21:00", -3, daily3) == ["20240702"]
    assert names("2024-07-02 01:00", -3, daily3) == ["20240701", "20240702"]
    assert names("2024-07-02 10:00", 6, daily3) == ["20240702"]
    assert names("2024-07-02 20:00", 6, daily3) == ["20240702", "20240703"]


def test_one_time_per_file_takes_the_files_around_the_window(archives):
    single6 = archives["single6"]
    assert names("2024-07-02 10:00", -6, single6) == ["20240702_00", "20240702_06", "20240702_12"]
    assert names("2024-07-02 12:00", -6, single6) == ["20240702_06", "20240702_12"]
    assert names("2024-07-02 23:00", -1, single6) == ["20240702_18", "20240703_00"]


def test_one_time_files_are_joined_into_the_archives_day_file(archives):
    """A join of single-time files is the file a day-per-file archive holds, byte for byte."""
    single = sorted(Path(archives["single6"].directory).glob("20240702_*"))
    (joined,) = hysplit_files(single)
    assert joined.read_bytes() == (Path(archives["daily6"].directory) / "20240702").read_bytes()
    assert hysplit_files(single) == [joined]  # joined once, then found in the cache
    daily = sorted(Path(archives["daily3"].directory).iterdir())
    assert hysplit_files(daily) == daily  # files of several steps are given as they are


def run_hours(met: MetConfig, hours, n_hours: int, numpar: int = 10) -> dict[int, pd.DataFrame]:
    config = ModelConfig(
        mets={"archive": met}, hysplit={"n_hours": n_hours, "numpar": numpar, "seed": 3}
    )
    return {h: run_trajectory(receptor(DAY + pd.Timedelta(hours=h)), config) for h in hours}


def assert_complete(particles: dict[int, pd.DataFrame], n_hours: int, numpar: int) -> None:
    for hour, table in particles.items():
        assert table["time"].min() == 60 * n_hours, hour
        assert (table["time"] == 60 * n_hours).sum() == numpar, hour


@pytest.mark.parametrize("archive", ["daily3", "single6"])
def test_releases_around_the_day_run_to_the_end(archives, archive):
    assert_complete(run_hours(archives[archive], HOURS, -3), -3, 10)


def test_one_time_per_file_gives_the_particles_of_a_file_per_day(archives):
    hours = (10, 22, 23)  # inside a day, and needing the next day's 00:00
    single = run_hours(archives["single6"], hours, -6, numpar=20)
    daily = run_hours(archives["daily6"], hours, -6, numpar=20)
    for hour in hours:
        pd.testing.assert_frame_equal(single[hour], daily[hour])
    assert_complete(single, -6, 20)


@pytest.mark.slow
@pytest.mark.parametrize("archive", ["daily3", "single6"])
def test_every_hour_of_a_day_runs_to_the_end(archives, archive):
    assert_complete(run_hours(archives[archive], range(24), -3), -3, 10)


def write_project(folder: Path, met: Path, file_format: str, hours) -> Path:
    config = {
        "mets": {"archive": {"directory": str(met), "file_format": file_format}},
        "hysplit": {"n_hours": -3, "numpar": 10, "seed": 3},
        "footprints": {"default": GRID},
        "output": "project",
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    rows = [f"{DAY + pd.Timedelta(hours=h)},{SITE[0]},{SITE[1]},5" for h in hours]
    (folder / "receptors.csv").write_text("\n".join(["time,longitude,latitude,altitude", *rows]))
    return folder / "config.yaml"


def test_a_project_on_daily_3_hourly_files_completes_its_footprints(archives, tmp_path, client):
    config = write_project(tmp_path, Path(archives["daily3"].directory), "%Y%m%d", HOURS)
    model = Model.from_yaml(config)
    assert model.check().ok
    states = model.run(client)
    assert len(states) == len(HOURS) and set(states.values()) == {"complete"}
    foot = model.footprints["default"].load()
    assert foot.sizes["simulation"] == len(HOURS)
    assert float(foot.sum(["lag", "lat", "lon"]).min()) > 0


def test_a_missing_hour_is_named_before_any_cluster(archives, tmp_path):
    met = Path(shutil.copytree(archives["single6"].directory, tmp_path / "met"))
    (met / "20240702_12").chmod(0o644)
    (met / "20240702_12").unlink()
    config = write_project(tmp_path, met, "%Y%m%d_%H", (5, 14, 20))
    model = Model.from_yaml(config)
    ids, known = model.register()
    problems = preflight.check_run(model, known, ids)
    at = {h: f"{DAY + pd.Timedelta(hours=h):%Y%m%d%H%M}_-100_40_5" for h in (14, 20)}
    assert [str(p) for p in problems] == [
        f"{at[14]}: met 'archive' does not cover the run 2024-07-02 11:00–2024-07-02 14:00: "
        "no data for 2024-07-02 12:00",
        f"{at[20]}: met 'archive' does not cover the run 2024-07-02 17:00–2024-07-02 20:00: "
        "no data for 2024-07-02 12:00",
    ]
    with pytest.raises(MeteorologyError, match="^not started: 2 problems found before any cluster"):
        preflight.require(problems)
    window = run_window(DAY + pd.Timedelta(hours=14), -3)
    assert select_files(window, MetConfig(directory=str(met), file_format="%Y%m%d_%H")).missing == [
        pd.Timestamp("2024-07-02 12:00")
    ]


def test_file_format_is_a_regular_expression_on_the_path(archives, tmp_path):
    """R-STILT's rule: strftime fields in a regular expression, searched in the path."""
    tree = tmp_path / "tree"
    for path in Path(archives["daily3"].directory).iterdir():
        day = datetime.strptime(path.name, "%Y%m%d")
        target = tree / f"{day:%Y/%m/%d}" / f"gfs0p25.{day:%Y%m%d}.3h.arl"
        target.parent.mkdir(parents=True)
        target.symlink_to(path)
    (tree / "2024" / "07" / "02" / "notes.txt").write_text("not met")
    for file_format in ("%Y/%m/%d/gfs0p25", "%Y%m%d.*arl$", "gfs0p25.%Y%m%d"):
        met = MetConfig(directory=str(tree), file_format=file_format)
        assert names("2024-07-02 22:00", -3, met) == [
            "gfs0p25.20240702.3h.arl", "gfs0p25.20240703.3h.arl",
        ], file_format  # fmt: skip


def test_file_formats_that_name_no_time_are_refused_in_one_line():
    for file_format, message in (
        ("%Y%m%d_%H(", "is not a regular expression once its strftime fields are filled in"),
        ("%m%d_%H", "names no year (%Y or %y)"),
        ("%Y%U", "%U is not a field a met file's time can be read from"),
    ):
        with pytest.raises(ConfigError, match=r"^mets\.hrrr\.file_format: ") as caught:
            ModelConfig.from_dict(
                {"mets": {"hrrr": {"directory": ".", "file_format": file_format}}}
            )
        assert message in str(caught.value) and "\n" not in str(caught.value)


def test_old_configs_load_and_find_the_same_files(archives):
    """file_tres is accepted and not needed; a substring pattern still matches."""
    old = MetConfig(
        directory=archives["single6"].directory, file_format="%Y%m%d_%H", file_tres="6h"
    )
    assert names("2024-07-02 10:00", -6, old) == names("2024-07-02 10:00", -6, archives["single6"])
