"""Met integrity: ARL checksums of the time steps a run reads are compared before HYSPLIT.

HYSPLIT does not compare the checksums ARL index records carry, so bytes damaged
inside a record's packed data (its 50-byte header intact) would give a completed
but different result. These tests damage real ARL files written by the package's
idealized-met writer (which records a checksum for every record) and, when the
shared data folder is present, the real HRRR files.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import arlmet
import dask.config
import pandas as pd
import pytest
from arlmet.header import Header
from arlmet.packing import calculate_checksum

from pystilt_dask.config import HysplitConfig, MetConfig, ModelConfig
from pystilt_dask.errors import MeteorologyError
from pystilt_dask.meteorology.coverage import check_coverage, verify_checksums
from pystilt_dask.meteorology.files import find_met_files, run_window
from pystilt_dask.meteorology.idealized import write_idealized_met
from pystilt_dask.receptors import PointReceptor
from pystilt_dask.trajectory import run_trajectory

START = datetime(2024, 7, 1)
CENTER = (-100.0, 40.0)
RECEPTOR = PointReceptor(
    time="2024-07-01 10:00", longitude=CENTER[0], latitude=CENTER[1], altitude=5
)
N_HOURS = -6  # window 04:00–10:00: reads 04–05 of file 20240701_00 and 06–10 of 20240701_06
RELEASE = [(CENTER[1], CENTER[0], 5.0)]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Idealized met, 2024-07-01 00–11 UTC in two 6-hour files, written once per module."""
    directory = tmp_path_factory.mktemp("pristine")
    write_idealized_met(directory, START, 12, center=CENTER)
    return directory


@pytest.fixture
def met_dir(pristine: Path, tmp_path: Path) -> Path:
    """A private copy of the idealized met, free to damage."""
    return Path(shutil.copytree(pristine, tmp_path / "met"))


def damage(path: Path, time: str, variable: str, level: int) -> None:
    """Change bytes inside one record's packed data, leaving its header intact.

    Every changed byte is increased by one, so the byte sum (and with it the ARL
    checksum, a sum modulo 255) changes; the test asserts that it does.
    """
    with arlmet.File(path) as met:
        record = met[pd.Timestamp(time)][(level, variable)]
        stored = record.checksum
        start = record.position + Header.N_BYTES
        n_packed = record.n_bytes - Header.N_BYTES
    # A stored 0 would mean "no checksum recorded": nothing could detect the damage.
    assert stored != 0, f"{variable} level {level} at {time} has no recorded checksum"
    data = bytearray(path.read_bytes())
    packed = data[start : start + n_packed]
    for offset in range(10, 20):
        packed[offset] = (packed[offset] + 1) % 256
    assert calculate_checksum(bytes(packed)) != stored
    data[start : start + n_packed] = packed
    path.write_bytes(bytes(data))
    # The cache is keyed on (path, size, mtime_ns); make sure the rewrite moves mtime
    # even on a filesystem with coarse timestamps.
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def idealized_files(met_dir: Path) -> list[Path]:
    met = MetConfig(directory=str(met_dir), file_format="%Y%m%d_%H")
    return find_met_files(RECEPTOR.time, N_HOURS, met)


def test_idealized_writer_records_nonzero_checksums(pristine: Path) -> None:
    for path in sorted(pristine.iterdir()):
        with arlmet.File(path) as met:
            assert all(record.checksum != 0 for record in met.records)


def test_undamaged_met_passes(met_dir: Path) -> None:
    files = idealized_files(met_dir)
    assert [f.name for f in files] == ["20240701_00", "20240701_06"]
    check_coverage(files, run_window(RECEPTOR.time, N_HOURS), RELEASE, "idealized")


def test_damaged_record_is_named_with_file_time_variable_and_level(met_dir: Path) -> None:
    damaged = met_dir / "20240701_00"
    damage(damaged, "2024-07-01 05:00", "TEMP", 4)
    files = idealized_files(met_dir)
    expected = f"met file {damaged} is damaged: 2024-07-01 05:00 TEMP level 4 fails its checksum"
    with pytest.raises(MeteorologyError) as caught:
        check_coverage(files, run_window(RECEPTOR.time, N_HOURS), RELEASE, "idealized")
    assert str(caught.value) == expected
    # Every later run on the same file is refused too (from the cache).
    with pytest.raises(MeteorologyError, match="TEMP level 4 fails its checksum"):
        verify_checksums(damaged, [pd.Timestamp("2024-07-01 05:00")])


def test_damage_outside_the_run_window_is_not_read(met_dir: Path) -> None:
    # 02:00 lies before the window (04:00–10:00): HYSPLIT never reads it, so it is
    # not checked, and a run that does read it is refused.
    damage(met_dir / "20240701_00", "2024-07-01 02:00", "UWND", 1)
    files = idealized_files(met_dir)
    check_coverage(files, run_window(RECEPTOR.time, N_HOURS), RELEASE, "idealized")
    earlier = pd.Timestamp("2024-07-01 05:00")
    with pytest.raises(MeteorologyError, match="2024-07-01 02:00 UWND level 1 fails"):
        check_coverage(files[:1], run_window(earlier, -4), RELEASE, "idealized")


def test_damage_after_a_passing_check_is_found(met_dir: Path) -> None:
    files = idealized_files(met_dir)
    window = run_window(RECEPTOR.time, N_HOURS)
    check_coverage(files, window, RELEASE, "idealized")  # caches the intact file
    damage(met_dir / "20240701_06", "2024-07-01 08:00", "PRES", 16)
    with pytest.raises(MeteorologyError, match="2024-07-01 08:00 PRES level 16 fails"):
        check_coverage(files, window, RELEASE, "idealized")


def test_threads_checking_at_once_all_refuse_damaged_met(met_dir: Path) -> None:
    # Dask worker threads start simulations together; each must see the damage.
    damage(met_dir / "20240701_00", "2024-07-01 04:00", "SPHU", 3)
    files = idealized_files(met_dir)
    window = run_window(RECEPTOR.time, N_HOURS)

    def attempt(_: int) -> str:
        try:
            check_coverage(files, window, RELEASE, "idealized")
        except MeteorologyError as exc:
            return str(exc)
        return "passed"

    with ThreadPoolExecutor(8) as pool:
        outcomes = set(pool.map(attempt, range(32)))
    assert len(outcomes) == 1
    assert outcomes.pop().endswith("2024-07-01 04:00 SPHU level 3 fails its checksum")


def test_run_trajectory_on_damaged_met_fails_before_hysplit(met_dir: Path, tmp_path: Path) -> None:
    damage(met_dir / "20240701_06", "2024-07-01 09:00", "VWND", 2)
    config = ModelConfig(
        mets={"idealized": MetConfig(directory=str(met_dir), file_format="%Y%m%d_%H")},
        hysplit=HysplitConfig(n_hours=N_HOURS, numpar=50, seed=42, hnf_plume=False),
    )
    compute = tmp_path / "compute"
    compute.mkdir()
    workdir = tmp_path / "run"
    with dask.config.set({"stilt.compute-root": str(compute), "stilt.keep-failed-workdirs": True}):
        with pytest.raises(MeteorologyError, match="2024-07-01 09:00 VWND level 2 fails"):
            run_trajectory(RECEPTOR, config)
        with pytest.raises(MeteorologyError, match="VWND level 2"):
            run_trajectory(RECEPTOR, config, workdir=workdir)
    # HYSPLIT never started: no work directory (with its CONTROL, SETUP.CFG, log)
    # was made, neither under the compute root nor at the explicit path.
    assert list(compute.iterdir()) == []
    assert not workdir.exists()


def test_damaged_real_hrrr_record_is_refused(shared: Path, tmp_path: Path) -> None:
    met_dir = Path(shutil.copytree(shared / "met", tmp_path / "met"))
    for path in met_dir.iterdir():
        path.chmod(0o644)  # the shared copies are read-only
    damaged = met_dir / "20190530_00-05_hrrr"
    damage(damaged, "2019-05-30 03:00", "TEMP", 4)
    met = MetConfig(directory=str(met_dir), file_format="%Y%m%d_%H", file_tres="6h")
    time = pd.Timestamp("2019-05-30 05:00")
    files = find_met_files(time, -3, met)
    wbb = [(40.766, -111.848, 5.0)]
    with pytest.raises(MeteorologyError) as caught:
        check_coverage(files, run_window(time, -3), wbb, "hrrr")
    assert str(caught.value) == (
        f"met file {damaged} is damaged: 2019-05-30 03:00 TEMP level 4 fails its checksum"
    )
    # 03:00 is outside a run over 04:00–05:00.
    check_coverage(files, run_window(time, -1), wbb, "hrrr")
