"""run_trajectory end to end with the real hycs_std on the idealized met (conftest).

Parity with PYSTILT also runs on the real HRRR met when ../shared is there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from pystilt_dask.config import DEFAULT_VARSIWANT, ModelConfig
from pystilt_dask.errors import HysplitError, MeteorologyError
from pystilt_dask.receptors import ColumnReceptor, MultiPointReceptor, PointReceptor
from pystilt_dask.trajectory import run_trajectory

TIME = "2019-05-30 10:00"
POINT = PointReceptor(time=TIME, longitude=-111.848, latitude=40.766, altitude=5)
COLUMN = ColumnReceptor(time=TIME, longitude=-111.848, latitude=40.766, bottom=0, top=1000)
MULTI = MultiPointReceptor(
    time=TIME, longitudes=[-111.848, -111.9, -111.95], latitudes=[40.766, 40.7, 40.65],
    altitudes=[5, 50, 100],
)  # fmt: skip
# PYSTILT's names for the columns R-STILT calls time, indx, long, lati.
PYSTILT_NAMES = {"age": "time", "particle": "indx", "lon": "long", "lat": "lati"}


def _canonical(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values(["indx", "time"], ascending=[True, False]).reset_index(drop=True)


def test_seed_gives_byte_identical_particles(idealized_config):
    first = run_trajectory(POINT, idealized_config)
    again = run_trajectory(POINT, idealized_config)
    pd.testing.assert_frame_equal(first, again, check_exact=True)
    other = _with_hysplit(idealized_config, seed=8)
    assert not np.array_equal(first["long"], run_trajectory(POINT, other)["long"])


def test_columns_and_near_field_correction(idealized_config):
    particles = run_trajectory(POINT, idealized_config)
    assert list(particles.columns) == [*DEFAULT_VARSIWANT, "foot_no_hnf_dilution"]
    assert particles["time"].max() == -1 and particles["time"].min() == -120
    assert particles["indx"].nunique() == 50
    # The plume near the receptor is shallower than the mixed layer: foot grows there.
    assert (particles["foot"] >= particles["foot_no_hnf_dilution"]).all()
    assert particles["foot"].sum() > particles["foot_no_hnf_dilution"].sum()


def test_column_release_heights(idealized_config):
    particles = run_trajectory(COLUMN, idealized_config)
    assert particles["indx"].max() == 50  # a line source: numpar particles, not per end
    first = particles.drop_duplicates("indx").sort_values("indx")
    np.testing.assert_allclose(first["xhgt"], (first["indx"] - 0.5) * 1000 / 50)


def test_multipoint_particles_come_in_blocks_per_point(idealized_config):
    particles = run_trajectory(MULTI, idealized_config)
    first = particles[particles["time"] == -1].sort_values("indx")
    lon, lat = np.array(MULTI.longitudes), np.array(MULTI.latitudes)
    distance = (first["long"].to_numpy()[:, None] - lon) ** 2 + (
        first["lati"].to_numpy()[:, None] - lat
    ) ** 2
    nearest = np.argmin(distance, axis=1)
    n = len(first) // 3
    np.testing.assert_array_equal(nearest, np.repeat([0, 1, 2], n))


@pytest.mark.pystilt
@pytest.mark.parametrize("met", ["idealized", "hrrr"])
@pytest.mark.parametrize("receptor", [POINT, COLUMN, MULTI], ids=["point", "column", "multipoint"])
def test_particles_equal_pystilt(request, met, receptor):
    stilt = pytest.importorskip("stilt")
    met_fields = request.getfixturevalue(f"{met}_met")  # hrrr: skips without ../shared
    config = request.getfixturevalue(f"{met}_config")  # on met_fields: 50 particles, -2 h, seed 7
    kind = {
        "point": "PointReceptor",
        "column": "ColumnReceptor",
        "multipoint": "MultiPointReceptor",
    }
    fields = receptor.model_dump(exclude={"kind"})
    theirs = stilt.run_trajectories(
        getattr(stilt, kind[receptor.kind])(**fields), met_fields,
        n_hours=-2, numpar=50, seed=7, krand=2, varsiwant=list(DEFAULT_VARSIWANT),
    ).rename(columns=PYSTILT_NAMES)  # fmt: skip
    ours = run_trajectory(receptor, config)
    theirs, ours = _canonical(theirs), _canonical(ours)
    shared_columns = [c for c in ours.columns if c in theirs.columns]
    assert len(shared_columns) >= 12
    for column in shared_columns:
        a, b = ours[column].to_numpy(float), theirs[column].to_numpy(float)
        if column == "foot":
            # hnf_plume calls exp(): numpy's SIMD exp and libm's (numba, R) differ by 1 ulp
            np.testing.assert_allclose(a, b, rtol=1e-15, atol=0)
        else:
            np.testing.assert_array_equal(a, b)
    if "xhgt" in ours:
        np.testing.assert_allclose(ours["xhgt"], theirs["release_height"], rtol=1e-12)


def test_met_not_covering_the_window_fails_before_hysplit(idealized_met):
    config = ModelConfig.from_dict({"mets": {"ideal": idealized_met}, "hysplit": {"n_hours": -6}})
    early = PointReceptor(time="2019-05-30 05:30", longitude=-111.848, latitude=40.766, altitude=5)
    with pytest.raises(MeteorologyError, match="no data for 2019-05-29 23:00"):
        run_trajectory(early, config)


def test_missing_met_directory(tmp_path):
    met = {"directory": str(tmp_path / "none"), "file_format": "%Y%m%d_%H", "file_tres": "6h"}
    with pytest.raises(MeteorologyError, match="does not exist"):
        run_trajectory(POINT, ModelConfig.from_dict({"mets": {"hrrr": met}}))


def _with_hysplit(config: ModelConfig, **settings) -> ModelConfig:
    return config.model_copy(update={"hysplit": config.hysplit.model_copy(update=settings)})


def _ours(workdir: str) -> list[psutil.Process]:
    """Live processes working in ``workdir`` (HYSPLIT or a stand-in and its children)."""
    return [
        p for p in psutil.process_iter(["cwd", "status"])
        if p.info["cwd"] == workdir and p.info["status"] != psutil.STATUS_ZOMBIE
    ]  # fmt: skip


def test_timeout_kills_hysplit_and_keeps_the_log(idealized_config, stand_in):
    # A HYSPLIT that never finishes: the 1 s timeout always expires, however fast the machine.
    never = stand_in("hold")
    config = _with_hysplit(idealized_config, timeout=1, executable=str(never))
    with pytest.raises(HysplitError) as info:
        run_trajectory(POINT, config)
    assert info.value.reason == "timeout" and "longer than 1 s" in str(info.value)
    kept = Path(info.value.workdir)
    assert (kept / "CONTROL").is_file() and not (kept / "PARTICLE_STILT.DAT").exists()
    assert len(list((never.with_suffix(".runs")).glob("held.*"))) == 1  # it was started
    # Killed as a group: wait for the kernel to finish them (the timeout guards a hang).
    _, alive = psutil.wait_procs(_ours(info.value.workdir), timeout=30)
    assert not alive


def test_killed_hysplit_is_classified_with_messages_tail(idealized_config, stand_in):
    # A HYSPLIT killed mid-run loses its buffered console output: MESSAGE's tail stands in.
    killed = stand_in("printf ' NOTICE main: mixing depth %s\\n' 1 2 3 > MESSAGE\nkill -KILL $$")
    config = _with_hysplit(idealized_config, executable=str(killed))
    with pytest.raises(HysplitError) as info:
        run_trajectory(POINT, config)
    assert info.value.reason == "nonzero_exit"
    assert info.value.log_tail.splitlines() == [
        f" NOTICE main: mixing depth {i}" for i in (1, 2, 3)
    ]
    # Killed as a group: wait for the kernel to finish them (the timeout guards a hang).
    _, alive = psutil.wait_procs(_ours(info.value.workdir), timeout=30)
    assert not alive


def test_hysplit_failure_is_classified_with_its_log(idealized_config):
    # The idealized grid's western edge is at -112.9: HYSPLIT refuses release points
    # within two 0.05° cells of it, so the coverage check refuses them first.
    edge = PointReceptor(time=TIME, longitude=-112.75, latitude=40.766, altitude=5)
    run_trajectory(edge, idealized_config)  # still fine at three cells in
    with pytest.raises(MeteorologyError, match="within 2 cells of its edge"):
        run_trajectory(
            PointReceptor(time=TIME, longitude=-112.82, latitude=40.13, altitude=5),
            idealized_config,
        )


def test_hysplit_failure_near_the_hrrr_lambert_grid_edge(hrrr_config):
    # Inside the real HRRR crop (Lambert conformal) but where HYSPLIT refuses to start.
    edge = PointReceptor(time=TIME, longitude=-112.95, latitude=40.766, altitude=5)
    run_trajectory(edge, hrrr_config)  # still fine at three cells in
    with pytest.raises(MeteorologyError, match="within 2 cells of its edge"):
        run_trajectory(
            PointReceptor(time=TIME, longitude=-112.88, latitude=40.13, altitude=5), hrrr_config
        )
