"""A run counts only when HYSPLIT says it completed: exit status 0 is not enough.

Stand-ins for hycs_std (conftest ``stand_in``) run the real one on the idealized
met and then cut its particle file short, as a run that stopped early leaves it
(uataq/stilt#139); the real hycs_std shows what a normal end, particles leaving
the grid and met running out look like.
"""

from __future__ import annotations

import pytest

from pystilt_dask.config import HysplitConfig, ModelConfig
from pystilt_dask.errors import HysplitError
from pystilt_dask.hysplit import resolve_hysplit, run_hysplit, write_inputs
from pystilt_dask.hysplit.run import classify, last_minute
from pystilt_dask.model import Model
from pystilt_dask.receptors import PointReceptor
from pystilt_dask.store import records
from pystilt_dask.trajectory import run_trajectory

POINT = PointReceptor(time="2019-05-30 10:00", longitude=-111.848, latitude=40.766, altitude=5)
GRID = {"xmin": -112.5, "xmax": -111.2, "ymin": 40.3, "ymax": 41.2, "xres": 0.01}
# 20 particles a minute: the header and the first 20 minutes of a run.
CUT = "head -n 401 PARTICLE_STILT.DAT > cut && mv cut PARTICLE_STILT.DAT"


def _config(met: dict, **hysplit) -> ModelConfig:
    return ModelConfig.from_dict(
        {
            "mets": {"idealized": met},
            "hysplit": {"n_hours": -1, "numpar": 20, "seed": 7, **hysplit},
            "footprints": {"default": GRID},
        }
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # HYSPLIT's console output is kept: it printed its normal end, but the
        # particles it left behind stop at -20 of -60 min.
        (f'"$REAL" || exit\n{CUT}', "particles reach -20 of -60 min, and HYSPLIT did not say"),
        # A run that stopped without its normal end and exited 0 (a Fortran STOP).
        (f'"$REAL" > /dev/null || exit\n{CUT}', "without printing 'Complete Hysplit'"),
    ],
    ids=["cut-short", "no-completion-line"],
)
def test_a_run_cut_short_that_exits_0_fails_and_nothing_is_complete(
    tmp_path, idealized_met, client, stand_in, body, message
):
    config = _config(idealized_met, executable=str(stand_in(body)))
    model = Model(tmp_path / "proj", receptors=[POINT], config=config)
    assert model.run(client=client) == {POINT.sim_id: "failed"}
    status = model.status()
    assert status.ids("failed") == [POINT.sim_id]
    assert status.counts()["complete"] == 0
    assert status.counts()["footprints"]["default"]["complete"] == 0
    failure = records.read_failure(model.location, POINT.sim_id)
    assert failure["reason"] == "incomplete_run"
    assert message in failure["message"] and "of -60 min" in failure["message"]


def test_the_same_run_uncut_is_complete(tmp_path, idealized_met, client, stand_in):
    config = _config(idealized_met, executable=str(stand_in('exec "$REAL"')))
    model = Model(tmp_path / "proj", receptors=[POINT], config=config)
    assert model.run(client=client) == {POINT.sim_id: "complete"}


def test_particles_that_all_leave_the_grid_complete_the_run(idealized_config, tmp_path):
    # 0.2° inside the western edge, the wind carries the particles out (backward in
    # time) after about 2.5 of the 6 hours; HYSPLIT says they left.
    edge = PointReceptor(time="2019-05-30 11:00", longitude=-112.7, latitude=40.766, altitude=5)
    config = idealized_config.model_copy(
        update={"hysplit": HysplitConfig(numpar=20, n_hours=-6, seed=7)}
    )
    particles = run_trajectory(edge, config, workdir=tmp_path)
    assert -360 < particles["time"].min() < -60
    assert "off spatial domain of all grids" in (tmp_path / "WARNING").read_text()
    assert classify(tmp_path, 0) is None


def test_met_running_out_is_met_coverage(idealized_met, tmp_path):
    # The coverage check refuses this run first; HYSPLIT itself stops the particles
    # where the met ends (-330 of -360 min) and still prints its normal end.
    early = PointReceptor(time="2019-05-30 05:30", longitude=-111.848, latitude=40.766, altitude=5)
    directory = idealized_met["directory"]
    write_inputs(
        tmp_path, early, HysplitConfig(numpar=20, n_hours=-6, seed=7),
        [f"{directory}/20190530_00-05_ideal", f"{directory}/20190530_06-11_ideal"],
    )  # fmt: skip
    with pytest.raises(HysplitError) as info:
        run_hysplit(tmp_path, resolve_hysplit(), 60)
    assert info.value.reason == "met_coverage"
    assert "no more meteorology" in info.value.message
    assert "Complete Hysplit" in (tmp_path / "hysplit.log").read_text()
    assert last_minute(tmp_path) == -330
