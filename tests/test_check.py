"""``stilt-dask check`` and the pre-flight of a run: what would stop a run, before any run.

Every check here is the installed console script in a subprocess on a project
over a private copy of the idealized met of conftest, damaged as each test needs.
No HYSPLIT runs: a check starts no cluster and writes nothing into the output.
"""

from __future__ import annotations

from pathlib import Path

import arlmet
import pandas as pd
import pytest
import yaml
from arlmet.header import Header

from pystilt_dask import preflight
from pystilt_dask.errors import MeteorologyError
from pystilt_dask.meteorology.coverage import verify_checksums
from pystilt_dask.meteorology.manifest import write_manifest
from pystilt_dask.model import Model
from pystilt_dask.store.paths import Location

VALLEY = (-111.85, 40.77)
# Within two cells of the idealized met's southern edge (39.75 N, 0.05° cells).
EDGE = (-111.85, 39.8)
FAR = (-105.0, 40.0)
GRID = {"xmin": -112.5, "xmax": -111.2, "ymin": 40.3, "ymax": 41.2, "xres": 0.01}
FIRST_FILE = "20190530_00-05_ideal"
SECOND_FILE = "20190530_06-11_ideal"


def sim_id(when: str, site: tuple[float, float]) -> str:
    return f"{pd.Timestamp(when):%Y%m%d%H%M}_{site[0]:g}_{site[1]:g}_5"


def write_project(folder: Path, met: Path, receptors, **config) -> Path:
    """config.yaml (1 h backward, store ``project/``) and receptors.csv; return the config."""
    settings = {
        "mets": {"idealized": {"directory": str(met), "file_format": "%Y%m%d_%H"}},
        "hysplit": {"n_hours": -1, "numpar": 20},
        "footprints": {"default": GRID},
        "output": "project",
        **config,
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(settings))
    rows = [f"{when},{lon},{lat},5" for when, (lon, lat) in receptors]
    (folder / "receptors.csv").write_text("\n".join(["time,longitude,latitude,altitude", *rows]))
    return path


def damage(path: Path, time: str, variable: str, level: int) -> None:
    """Change ten bytes inside one record's packed data, its header intact."""
    with arlmet.File(path) as met:
        record = met[pd.Timestamp(time)][(level, variable)]
        start = record.position + Header.N_BYTES + 10
    data = bytearray(path.read_bytes())
    data[start : start + 10] = bytes((b + 1) % 256 for b in data[start : start + 10])
    path.write_bytes(bytes(data))


def shift_bytes(path: Path, time: str, variable: str, level: int) -> None:
    """Raise one byte of a record's packed data and lower the next: ARL's byte sum is kept."""
    with arlmet.File(path) as met:
        record = met[pd.Timestamp(time)][(level, variable)]
        start = record.position + Header.N_BYTES
    data = bytearray(path.read_bytes())
    up, down = start, start + 1
    if data[up] == 255 or data[down] == 0:
        up, down = down, up
    data[up] += 1
    data[down] -= 1
    path.write_bytes(bytes(data))


def problem_lines(stdout: str) -> list[str]:
    """The problem lines of a check's output (all but the summary)."""
    *lines, summary = stdout.strip().splitlines()
    counted = "1 problem" if len(lines) == 1 else f"{len(lines)} problems"
    assert summary == f"{counted} would stop a run", stdout
    return lines


def assert_nothing_started(result, folder: Path) -> None:
    """No cluster (no dashboard, no worker noise) and no output store written."""
    assert "dashboard" not in (result.stdout + result.stderr).lower()
    assert result.stderr == ""
    assert not (folder / "project").exists()


def test_clean_project_has_no_problems(stilt, tmp_path, met_copy):
    # 05:00–06:00 reads both files.
    config = write_project(tmp_path, met_copy, [("2019-05-30 06:00", VALLEY)])
    result = stilt("check", config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("no problems: 1 receptor inside their met in space and time")
    assert "2 met files intact" in result.stdout and "output writable" in result.stdout
    assert_nothing_started(result, tmp_path)


def test_outside_domain_missing_hour_and_damaged_file_each_named(stilt, tmp_path, met_copy):
    damage(met_copy / FIRST_FILE, "2019-05-30 03:00", "UWND", 1)
    receptors = [
        ("2019-05-30 08:00", VALLEY),  # fine
        ("2019-05-30 04:00", VALLEY),  # reads 03:00 and 04:00 of the damaged file
        ("2019-05-30 00:00", VALLEY),  # one hour back: 2019-05-29 23:00, before the met
        ("2019-05-30 08:00", FAR),
        ("2019-05-30 09:00", EDGE),
    ]
    config = write_project(tmp_path, met_copy, receptors)
    result = stilt("check", config)
    assert result.returncode == 1, result.stdout + result.stderr
    assert sorted(problem_lines(result.stdout)) == sorted(
        [
            f"{sim_id('2019-05-30 00:00', VALLEY)}: met 'idealized' does not cover the run "
            "2019-05-29 23:00–2019-05-30 00:00: no data for 2019-05-29 23:00",
            f"{sim_id('2019-05-30 08:00', FAR)}: receptor (-105.0, 40.0) is outside the domain "
            f"of met 'idealized', or within 2 cells of its edge ({SECOND_FILE}: 41×41 grid)",
            f"{sim_id('2019-05-30 09:00', EDGE)}: receptor (-111.85, 39.8) is outside the "
            f"domain of met 'idealized', or within 2 cells of its edge ({SECOND_FILE}: 41×41 grid)",
            f"met file {met_copy / FIRST_FILE} is damaged: 2019-05-30 03:00 UWND level 1 fails "
            "its checksum",
        ]
    )
    assert_nothing_started(result, tmp_path)


def test_a_left_out_met_file_is_a_missing_hour_or_no_file(stilt, tmp_path, met_copy):
    (met_copy / SECOND_FILE).unlink()
    receptors = [
        ("2019-05-30 05:00", VALLEY),  # fine: 04:00–05:00
        ("2019-05-30 06:00", VALLEY),  # 05:00–06:00: 06:00 was in the file left out
        ("2019-05-30 08:00", VALLEY),  # no file matches 20190530_06
    ]
    config = write_project(tmp_path, met_copy, receptors)
    result = stilt("check", config)
    assert result.returncode == 1, result.stdout + result.stderr
    assert problem_lines(result.stdout) == [
        f"{sim_id('2019-05-30 06:00', VALLEY)}: met 'idealized' does not cover the run "
        "2019-05-30 05:00–2019-05-30 06:00: no data for 2019-05-30 06:00",
        f"{sim_id('2019-05-30 08:00', VALLEY)}: met 'idealized' does not cover the run "
        "2019-05-30 07:00–2019-05-30 08:00: no data for 2019-05-30 07:00, 2019-05-30 08:00",
    ]
    assert_nothing_started(result, tmp_path)


def test_met_changed_since_its_manifest_is_named(stilt, tmp_path, met_copy):
    manifest, _ = write_manifest(met_copy)
    shift_bytes(met_copy / SECOND_FILE, "2019-05-30 07:00", "VWND", 2)
    verify_checksums(met_copy / SECOND_FILE, [pd.Timestamp("2019-05-30 07:00")])  # still passes
    config = write_project(tmp_path, met_copy, [("2019-05-30 08:00", VALLEY)])
    result = stilt("check", config)
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = problem_lines(result.stdout)
    assert line.startswith(f"met file {met_copy / SECOND_FILE} has changed since {manifest}")
    assert_nothing_started(result, tmp_path)


def test_setup_problems_each_named(stilt, tmp_path, met_copy):
    (tmp_path / "blocker").write_text("not a folder")
    config = write_project(
        tmp_path,
        tmp_path / "no-met",
        [("2019-05-30 08:00", VALLEY)],
        hysplit={"n_hours": -1, "executable": str(tmp_path / "hycs_std")},
        output="blocker/project",
    )
    result = stilt("check", config)
    assert result.returncode == 1, result.stdout + result.stderr
    blocker = tmp_path / "blocker"
    assert problem_lines(result.stdout) == [
        f"met 'idealized': directory {tmp_path / 'no-met'} does not exist",
        f"hysplit.executable points to {tmp_path / 'hycs_std'}, which is not an executable file",
        f"output {blocker / 'project'}: {blocker} is a file, not a folder",
    ]
    assert blocker.read_text() == "not a folder"


def test_unreadable_receptor_table_is_a_problem_and_bad_config_exit_2(stilt, tmp_path, met_copy):
    config = write_project(tmp_path, met_copy, [("not a time", VALLEY)])
    result = stilt("check", config)
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = problem_lines(result.stdout)
    assert line.startswith(f"{tmp_path / 'receptors.csv'} row 1, field 'time': ")

    config.write_text(config.read_text().replace("numpar", "numparr"))
    result = stilt("check", config)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: hysplit: unknown key 'numparr' in HysplitConfig")


def test_check_run_and_a_store_from_the_registry(stilt, tmp_path, met_copy):
    """The run's pre-flight reads the registry; ``check STORE`` checks what is registered."""
    receptors = [("2019-05-30 08:00", VALLEY), ("2019-05-30 08:00", FAR)]
    model = Model.from_yaml(write_project(tmp_path, met_copy, receptors))
    ids, known = model.register()
    problems = preflight.check_run(model, known, ids)
    assert [p.subject for p in problems] == [sim_id("2019-05-30 08:00", FAR)]
    assert preflight.check_run(model, known, [sim_id("2019-05-30 08:00", VALLEY)]) == []
    with pytest.raises(MeteorologyError, match=r"^not started: 1 problem found before") as info:
        preflight.require(problems)
    assert str(info.value).splitlines()[1] == str(problems[0])

    result = stilt("check", tmp_path / "project")
    assert result.returncode == 1, result.stdout + result.stderr
    assert problem_lines(result.stdout) == [str(problems[0])]

    # Workers may see met the client does not (a volume mounted in their pods only).
    met_copy.rename(tmp_path / "elsewhere")
    assert preflight.check_run(model, known, ids) == []
    assert [p.subject for p in preflight.check(model).problems] == ["mets.idealized"]


def test_remote_output_is_listed_up_to_its_bucket(s3_options):
    assert preflight.output_problem(Location("s3://stilt-test/new/project", s3_options)) is None
    problem = preflight.output_problem(Location("s3://no-such-bucket/project", s3_options))
    assert str(problem) == "output s3://no-such-bucket/project: no-such-bucket does not exist"


def test_a_long_list_of_problems_is_cut_in_a_run_error():
    problems = [preflight.Problem(f"sim{i}", f"sim{i}: outside") for i in range(25)]
    with pytest.raises(MeteorologyError) as info:
        preflight.require(problems)
    lines = str(info.value).splitlines()
    assert lines[0].startswith("not started: 25 problems found before any cluster")
    assert lines[1:21] == [f"sim{i}: outside" for i in range(20)]
    assert lines[21:] == ["… and 5 more"]


def test_a_variant_running_longer_is_checked_for_its_own_window(stilt, tmp_path, met_copy):
    # The plain run (1 h back) is covered from 01:00; a variant 3 h back is not.
    variants = {"long": {"hysplit": {"n_hours": -3}}}
    config = write_project(tmp_path, met_copy, [("2019-05-30 01:00", VALLEY)], variants=variants)
    result = stilt("check", config)
    assert result.returncode == 1, result.stdout + result.stderr
    assert problem_lines(result.stdout) == [
        f"{sim_id('2019-05-30 01:00', VALLEY)}: met 'idealized' does not cover the run "
        "2019-05-29 22:00–2019-05-30 01:00: no data for 2019-05-29 22:00, 2019-05-29 23:00"
    ]
