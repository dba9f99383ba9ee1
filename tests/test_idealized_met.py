"""Idealized met: clean ARL files that real HYSPLIT-STILT reads and advects with (u, v)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import arlmet
import numpy as np
import pandas as pd
import pytest

from pystilt_dask.config import HysplitConfig, MetConfig, ModelConfig
from pystilt_dask.meteorology.idealized import SIGMA_LEVELS, write_idealized_met
from pystilt_dask.receptors import PointReceptor
from pystilt_dask.trajectory import run_trajectory

START = datetime(2024, 7, 1)
HOURS = 24
U, V = 5.0, -3.0
CENTER = (-100.0, 40.0)
NUMPAR = 200
EARTH_RADIUS = 6371.2e3  # m, HYSPLIT's REARTH


@pytest.fixture(scope="module")
def met_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_idealized_met(
        tmp_path_factory.mktemp("met"), START, HOURS, u=U, v=V, center=CENTER
    )


def run_backward(workdir: Path, met_files: list[Path], receptor_time: datetime) -> pd.DataFrame:
    """Run the real hycs_std 6 h backward from CENTER at 5 m AGL, reproducibly."""
    config = ModelConfig(
        mets={"idealized": MetConfig(directory=str(met_files[0].parent), file_format="%Y%m%d_%H")},
        hysplit=HysplitConfig(n_hours=-6, numpar=NUMPAR, seed=42, hnf_plume=False),
    )
    receptor = PointReceptor(
        time=receptor_time, longitude=CENTER[0], latitude=CENTER[1], altitude=5
    )
    return run_trajectory(receptor, config, workdir=workdir)


def _file_start(path: Path) -> datetime:
    return datetime.strptime(path.name, "%Y%m%d_%H")


def test_files_are_clean_with_expected_times_grid_and_fields(met_files: list[Path]) -> None:
    assert [p.name for p in met_files] == [
        "20240701_00",
        "20240701_06",
        "20240701_12",
        "20240701_18",
    ]
    surface = {"PRSS", "SHGT", "T02M", "U10M", "V10M", "PBLH", "SHTF", "USTR", "RH2M"}
    upper = {"UWND", "VWND", "WWND", "TEMP", "SPHU", "PRES"}
    for path in met_files:
        assert path.stat().st_size < 1_000_000  # CI- and README-sized
        met = arlmet.File(path)
        assert met.check() == []
        first = _file_start(path)
        assert met.times == [pd.Timestamp(first + timedelta(hours=h)) for h in range(6)]
        np.testing.assert_allclose(met.vertical_axis.levels, SIGMA_LEVELS)
        coords = met.grid.calculate_coords()
        np.testing.assert_allclose(coords["lon"][1], np.arange(-104.0, -95.99, 0.25))
        np.testing.assert_allclose(coords["lat"][1], np.arange(36.0, 44.01, 0.25))
        records = met[0]
        assert {r.variable for r in records if r.level == 0} == surface
        for level in range(1, len(SIGMA_LEVELS)):
            assert {r.variable for r in records if r.level == level} == upper
        np.testing.assert_array_equal(records[(0, "U10M")].data, U)
        np.testing.assert_array_equal(records[(3, "VWND")].data, V)


def test_rerun_is_byte_identical(met_files: list[Path], tmp_path: Path) -> None:
    again = write_idealized_met(tmp_path, START, HOURS, u=U, v=V, center=CENTER)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in met_files]


def test_shear_follows_the_documented_profile(tmp_path: Path) -> None:
    (path,) = write_idealized_met(tmp_path, START, 6, u=4.0, shear_per_km=0.5)
    met = arlmet.File(path)
    records = met[0]
    levels = range(1, len(SIGMA_LEVELS))
    temperature = [records[(0, "T02M")].data[0, 0]] + [
        records[(k, "TEMP")].data[0, 0] for k in levels
    ]
    pressure = [np.nan] + [records[(k, "PRES")].data[0, 0] for k in levels]
    # arlmet's own hypsometric heights, independent of the writer's
    height = met.vertical_axis.to_height_agl(
        surface_pressure=1000.0, temperature=np.array(temperature), pressure=np.array(pressure)
    )
    winds = np.array([records[(k, "UWND")].data[0, 0] for k in levels])
    np.testing.assert_allclose(winds, 4.0 * (1 + 0.5 * height[1:] / 1000), rtol=0.01)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hours": 8}, "multiple of 6"),
        ({"start": datetime(2024, 7, 1, 3)}, "file boundary"),
        ({"file_hours": 5}, "divide 24"),
    ],
)
def test_rejects_misaligned_coverage(tmp_path: Path, kwargs: dict, match: str) -> None:
    args = {"start": START, "hours": 12} | kwargs
    with pytest.raises(ValueError, match=match):
        write_idealized_met(tmp_path, **args)


def test_hysplit_recognises_fields_and_follows_the_wind(
    met_files: list[Path], tmp_path: Path
) -> None:
    # Night: 12 UTC is 05:20 local solar time at -100 E; day: 23 UTC is 16:20.
    night = run_backward(tmp_path / "night", met_files, datetime(2024, 7, 1, 12))
    day = run_backward(tmp_path / "day", met_files, datetime(2024, 7, 1, 23))

    message = (tmp_path / "night" / "MESSAGE").read_text()
    for flag in (
        "Ten meter wind -  T",
        "Two meter temp -  T",
        "Heat flux -  T",
        "Friction velocity -  T",
        "Terrain height -  T",
        "Surface pressure -  T",
        "Mixed layer depth -  T",
    ):
        assert flag in message
    assert re.search(rf"Input data levels:\s+{len(SIGMA_LEVELS) - 1}\s", message)

    for particles in (night, day):
        last = particles[particles["time"] == -360]
        assert len(last) == NUMPAR  # nobody left the grid
        seconds = 6 * 3600
        lat0 = np.radians(CENTER[1])
        dx = np.radians(last["long"] - CENTER[0]) * EARTH_RADIUS * np.cos(lat0)
        dy = np.radians(last["lati"] - CENTER[1]) * EARTH_RADIUS
        # Backward in time, particles go upwind: displacement = -(u, v) * 6 h.
        # (HYSPLIT slows particles below 10 m, so the mean is a few % short.)
        assert dx.mean() == pytest.approx(-U * seconds, rel=0.1)
        assert dy.mean() == pytest.approx(-V * seconds, rel=0.1)

    # HYSPLIT's own (Richardson) mixed layer follows the prescribed diurnal cycle.
    assert day["mlht"].mean() > 3 * night["mlht"].mean()
