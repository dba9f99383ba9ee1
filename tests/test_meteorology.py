"""Met file discovery (R-STILT rules) and header-based coverage checks.

On the idealized met of conftest, which stands in for the HRRR crop: the same
times and HRRR-style names (``20190530_00-05_ideal``), found by prefix.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pystilt_dask.config import MetConfig
from pystilt_dask.errors import MeteorologyError
from pystilt_dask.meteorology.coverage import check_coverage
from pystilt_dask.meteorology.files import find_met_files, run_window

WBB = (40.766, -111.848, 5.0)


@pytest.fixture
def met(idealized_met) -> MetConfig:
    return MetConfig(**idealized_met)


def test_files_holding_the_window_are_chosen_from_their_headers(met):
    def names(time: str, n_hours: int) -> list[str]:
        return [f.name for f in find_met_files(pd.Timestamp(time), n_hours, met)]

    # A release between one file's last step (05:00) and the next one's first takes both.
    assert names("2019-05-30 05:30", -3) == ["20190530_00-05_ideal", "20190530_06-11_ideal"]
    # A release on a file's last step needs no later file (R-STILT's rule took one).
    assert names("2019-05-30 05:00", -3) == ["20190530_00-05_ideal"]
    assert names("2019-05-30 10:00", -6) == ["20190530_00-05_ideal", "20190530_06-11_ideal"]
    assert names("2019-05-30 09:00", -2) == ["20190530_06-11_ideal"]


def test_files_found_by_name_prefix(met):
    files = find_met_files(pd.Timestamp("2019-05-30 11:00"), -6, met)
    assert [f.name for f in files] == ["20190530_00-05_ideal", "20190530_06-11_ideal"]
    check_coverage(files, run_window(pd.Timestamp("2019-05-30 11:00"), -6), [WBB])


def test_met_that_does_not_cover_the_window_names_the_missing_hours(met):
    time = pd.Timestamp("2019-05-30 05:30")
    with pytest.raises(MeteorologyError, match="no data for 2019-05-29 23:00$"):
        find_met_files(time, -6, met)
    later = pd.Timestamp("2019-05-30 10:30")
    with pytest.raises(
        MeteorologyError, match="no data for 2019-05-30 12:00, 2019-05-30 13:00, 2019-05-30 14:00$"
    ):
        find_met_files(later, 3, met)
    # Files given whole are checked from their own steps.
    five = pd.Timestamp("2019-05-30 05:00")
    files = find_met_files(five, -5, met)
    with pytest.raises(MeteorologyError, match="no data for 2019-05-29 23:00$"):
        check_coverage(files, run_window(five, -6), [WBB])


def test_receptor_outside_the_domain(met):
    time = pd.Timestamp("2019-05-30 10:00")
    files = find_met_files(time, -1, met)
    with pytest.raises(MeteorologyError, match=r"receptor \(-100.0, 40.0\) is outside the domain"):
        check_coverage(files, run_window(time, -1), [(40.0, -100.0, 5.0)])


def test_missing_directory_and_no_matching_files(tmp_path, met):
    time = pd.Timestamp("2019-05-30 10:00")
    with pytest.raises(MeteorologyError, match="directory .*nowhere does not exist"):
        find_met_files(time, -1, met.model_copy(update={"directory": str(tmp_path / "nowhere")}))
    (tmp_path / "20190530_00-05_ideal.partial").write_bytes(b"")
    (tmp_path / "20190530_06~").write_bytes(b"")
    with pytest.raises(MeteorologyError, match="no file under .* matches file_format .%Y%m%d_%H."):
        find_met_files(time, -1, met.model_copy(update={"directory": str(tmp_path)}))


def test_damaged_file_is_reported(tmp_path, met):
    damaged = tmp_path / "20190530_06-11_ideal"
    # Cut inside the file's first time step (of six, ~180 kB each).
    damaged.write_bytes((Path(met.directory) / damaged.name).read_bytes()[:100_000])
    time = pd.Timestamp("2019-05-30 10:00")
    # The files are chosen from their headers, so choosing them finds the damage.
    with pytest.raises(MeteorologyError, match=f"met file {damaged} is not readable ARL"):
        find_met_files(time, -1, met.model_copy(update={"directory": str(tmp_path)}))
