"""The stand-in transport: run and classified as hycs_std is, parsed, and in a whole run."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pystilt_dask.config import HysplitConfig, ModelConfig
from pystilt_dask.errors import HysplitError
from pystilt_dask.hysplit.executable import resolve_hysplit
from pystilt_dask.hysplit.inputs import write_inputs
from pystilt_dask.hysplit.particles import read_particle_file
from pystilt_dask.hysplit.run import run_hysplit
from pystilt_dask.hysplit.standin import NAME, write_standin
from pystilt_dask.model import Model
from pystilt_dask.receptors import ColumnReceptor, MultiPointReceptor, PointReceptor

POINT = PointReceptor(time="2019-05-30 10:00", longitude=-111.848, latitude=40.766, altitude=5)
COLUMN = ColumnReceptor(
    time="2019-05-30 10:00", longitude=-111.848, latitude=40.766, bottom=0, top=2000
)
MULTIPOINT = MultiPointReceptor(
    time="2019-05-30 10:00", longitudes=[-111.9, -111.8], latitudes=[40.7, 40.8],
    altitudes=[5, 50],
)  # fmt: skip
ALL_CODES = (
    "time indx long lati zagl sigw tlgr zsfc icdx temp samt foot shtf tcld dmas dens rhfr "
    "sphu lcld zloc dswf wout mlht rain crai pres whtf temz zcfx"
).split()
# A grid around the receptors of the end-to-end test (±0.5°: two hours of drift).
GRID = {"xmin": -112.4, "xmax": -111.3, "ymin": 40.2, "ymax": 41.3, "xres": 0.02}


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> Path:
    return write_standin(tmp_path_factory.mktemp("standin"))


def run(workdir: Path, standin: Path, receptor, hysplit: HysplitConfig) -> Path:
    """Write real inputs into ``workdir``, run the stand-in there as HYSPLIT is run."""
    workdir.mkdir(parents=True)
    write_inputs(workdir, receptor, hysplit, ["met/absent"])  # the stand-in reads no met
    return run_hysplit(workdir, resolve_hysplit(standin), timeout=120)


def test_written_executable_resolves_and_is_not_named_hycs_std(standin):
    install = resolve_hysplit(standin)
    assert install.executable == standin.resolve() and standin.name == NAME
    assert install.data_dir == standin.parent  # its placeholders: no pystilt wheel needed
    assert os.access(standin, os.X_OK)
    assert standin.read_text().startswith("#!") and " -IS\n" in standin.read_text()


@pytest.mark.parametrize("receptor", [POINT, COLUMN, MULTIPOINT], ids=["point", "column", "multi"])
def test_backward_run_completes_and_parses(tmp_path, standin, receptor):
    hysplit = HysplitConfig(n_hours=-2, numpar=40, seed=7)
    path = run(tmp_path / "run", standin, receptor, hysplit)  # classified complete
    particles = read_particle_file(path, hysplit.varsiwant)
    assert len(particles) == 40 * 120
    assert (particles["time"].unique() == -np.arange(1, 121)).all()
    first = particles[particles["time"] == -1]
    assert first["indx"].tolist() == list(range(1, 41))
    # They leave from the receptor and stay near it; some touch the surface layer.
    lons, lats = zip(*[(p[1], p[0]) for p in receptor.release_points], strict=True)
    assert first["long"].between(min(lons) - 0.02, max(lons) + 0.02).all()
    assert first["lati"].between(min(lats) - 0.02, max(lats) + 0.02).all()
    assert particles["long"].between(-112.4, -111.3).all()
    assert particles["lati"].between(40.2, 41.3).all()
    assert (particles["foot"] > 0).mean() > 0.05
    assert (particles["zagl"] >= 0).all()
    log = (path.parent / "hysplit.log").read_text() + (path.parent / "MESSAGE").read_text()
    assert "Complete Hysplit" in log and "stand-in transport" in log


def test_every_code_forward_with_output_interval(tmp_path, standin):
    hysplit = HysplitConfig(n_hours=1, numpar=5, seed=1, varsiwant=ALL_CODES, outdt=15)
    particles = read_particle_file(run(tmp_path / "run", standin, POINT, hysplit), ALL_CODES)
    assert particles["time"].unique().tolist() == [15, 30, 45, 60]
    assert list(particles.columns) == ALL_CODES and particles.notna().all().all()


def test_byte_identical_for_one_seed_and_different_for_another(tmp_path, standin):
    hysplit = HysplitConfig(n_hours=-2, numpar=30, seed=7)
    runs = [run(tmp_path / name, standin, POINT, hysplit).read_bytes() for name in "ab"]
    other = run(tmp_path / "c", standin, POINT, hysplit.model_copy(update={"seed": 8}))
    assert runs[0] == runs[1]
    assert other.read_bytes() != runs[0]


def test_missing_setup_is_a_failed_run(tmp_path, standin):
    (tmp_path / "CONTROL").write_text("19 05 30 10 00\n1\n40.766 -111.848 5\n-1\n0\n25000.0\n0\n")
    with pytest.raises(HysplitError) as failure:
        run_hysplit(tmp_path, resolve_hysplit(standin), timeout=120)
    assert failure.value.reason == "nonzero_exit"
    assert "SETUP.CFG" in failure.value.log_tail


def test_model_run_with_the_standin(tmp_path, standin, idealized_met, client):
    """The whole pipeline (met checks, run, parse, footprints, store) with the stand-in."""
    receptors = [
        PointReceptor(time=f"2019-05-30 {hour:02d}:00", longitude=lon, latitude=40.766, altitude=5)
        for hour, lon in ((10, -111.848), (9, -111.848), (11, -111.9), (8, -111.8))
    ]
    config = ModelConfig.from_dict(
        {
            "mets": {"idealized": idealized_met},
            "hysplit": {"n_hours": -2, "numpar": 50, "seed": 7, "executable": str(standin)},
            "footprints": {"near": GRID},
        }
    )
    models = [Model(tmp_path / name, receptors, config) for name in ("a", "b")]
    for model in models:
        states = model.run(client=client, quiet=True)
        assert set(states.values()) == {"complete"} and len(states) == len(receptors)
    foot = models[0].footprints["near"].load()
    assert (foot.sum(dim=[d for d in foot.dims if d != "simulation"]) > 0).all()
    first, second = (model.trajectories for model in models)
    for sim_id in models[0].simulations.ids():
        assert first.load(sim_id).equals(second.load(sim_id))
    assert "stand-in transport" in models[0].simulations.log(sim_id)
