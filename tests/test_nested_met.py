"""Nested met: a fine idealized grid inside a coarse one, both given to the real hycs_std.

The fine archive is 0.05° over ±1° around (-100, 40), hourly in 6-hour files; the
coarse one is 0.25° over ±4°, 3-hourly in daily files. Both hold the same uniform
5 m/s westerly, so a particle moves alike on either grid.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from pystilt_dask import preflight
from pystilt_dask.config import ModelConfig
from pystilt_dask.errors import ConfigError, MeteorologyError
from pystilt_dask.hysplit import resolve_hysplit, run_hysplit, write_inputs
from pystilt_dask.hysplit.particles import read_particle_file
from pystilt_dask.meteorology.idealized import write_idealized_met
from pystilt_dask.meteorology.prepare import prepare_met
from pystilt_dask.model import Model
from pystilt_dask.receptors import PointReceptor

START = datetime(2024, 7, 1)
CENTER = (-100.0, 40.0)
NUMPAR = 50
TIME = pd.Timestamp("2024-07-01 10:00")


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> ModelConfig:
    root = tmp_path_factory.mktemp("nest")
    write_idealized_met(root / "fine", START, 24, center=CENTER, half_width_deg=1.0,
                        resolution_deg=0.05)  # fmt: skip
    write_idealized_met(root / "coarse", START, 24, center=CENTER, file_hours=24, step_hours=3,
                        file_format="%Y%m%d")  # fmt: skip
    return ModelConfig.from_dict(
        {
            "mets": {
                "regional": {"nest": ["fine", "coarse"]},
                "fine": {"directory": str(root / "fine"), "file_format": "%Y%m%d_%H"},
                "coarse": {"directory": str(root / "coarse"), "file_format": "%Y%m%d"},
            },
            "hysplit": {"n_hours": -6, "numpar": NUMPAR, "seed": 11, "hnf_plume": False},
        }
    )


def run(config: ModelConfig, met: str, workdir: Path, lon: float = CENTER[0]) -> pd.DataFrame:
    receptor = PointReceptor(time=TIME, longitude=lon, latitude=CENTER[1], altitude=5)
    hysplit = config.hysplit
    files = prepare_met(TIME, hysplit.n_hours, receptor.release_points, config.archives(met))
    workdir.mkdir()
    write_inputs(workdir, receptor, hysplit, files)
    particle_file = run_hysplit(workdir, resolve_hysplit(), hysplit.timeout)
    return read_particle_file(particle_file, hysplit.varsiwant)


def test_a_nest_lists_the_fine_grid_first(config):
    assert [name for name, _ in config.archives("regional")] == ["fine", "coarse"]
    files = prepare_met(TIME, -6, [(CENTER[1], CENTER[0], 5.0)], config.archives("regional"))
    assert [f.name for f in files] == ["20240701_00", "20240701_06", "20240701"]


def test_particles_leaving_the_fine_grid_go_on_on_the_coarse_one(config, tmp_path):
    fine = run(config, "fine", tmp_path / "fine")
    nested = run(config, "regional", tmp_path / "nested")
    # Backward at 5 m/s particles drift ~1.3° east in 6 h: out of the fine grid (±1°).
    assert fine["time"].min() > -360
    assert (nested["time"] == -360).sum() == NUMPAR
    assert len(nested) > len(fine)  # more particle-minutes than on the fine grid alone
    # While every particle is on the fine grid, the nest moves them exactly as it alone.
    per_minute = fine.groupby("time")["indx"].count()
    inside = per_minute.index[per_minute == NUMPAR]
    assert len(inside) > 120
    pd.testing.assert_frame_equal(
        fine[fine["time"].isin(inside)].reset_index(drop=True),
        nested[nested["time"].isin(inside)].reset_index(drop=True),
    )


def test_a_receptor_needs_to_be_inside_one_grid_not_all(config, tmp_path):
    outside_fine = CENTER[0] + 2.0  # inside the coarse grid only
    points = [(CENTER[1], outside_fine, 5.0)]
    with pytest.raises(MeteorologyError, match=r"outside the domain of met 'fine'"):
        prepare_met(TIME, -6, points, config.archives("fine"))
    particles = run(config, "regional", tmp_path / "outer", lon=outside_fine)
    assert (particles["time"] == -360).sum() == NUMPAR
    far = [(CENTER[1], CENTER[0] + 10.0, 5.0)]
    with pytest.raises(MeteorologyError, match=r"of every grid of mets \['fine', 'coarse'\]"):
        prepare_met(TIME, -6, far, config.archives("regional"))


def test_coverage_is_checked_per_archive(config, tmp_path):
    """Each archive of a nest must hold the run's time steps; the check names which lacks them."""
    late = pd.Timestamp("2024-07-01 22:00")  # 22:00 needs the coarse archive's 07-02 00:00
    with pytest.raises(MeteorologyError, match=r"^met 'coarse' does not cover the run .*00:00$"):
        prepare_met(late, -1, [(CENTER[1], CENTER[0], 5.0)], config.archives("regional"))
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.yaml").write_text(config.model_copy(update={"output": "out"}).to_yaml())
    (project / "receptors.csv").write_text(
        "time,longitude,latitude,altitude\n"
        f"{late},{CENTER[0]},{CENTER[1]},5\n{TIME},{CENTER[0] + 2.0},{CENTER[1]},5\n"
    )
    model = Model.from_yaml(project / "config.yaml")
    ids, known = model.register(met="regional")
    problems = preflight.check_run(model, known, ids)
    assert [str(p) for p in problems] == [
        f"{late:%Y%m%d%H%M}_-100_40_5: met 'coarse' does not cover the run "
        "2024-07-01 16:00–2024-07-01 22:00: no data for 2024-07-02 00:00"
    ]


def test_nest_spelling_is_validated_in_one_line(config):
    mets = config.model_dump()["mets"]
    for nest, message in (
        (["fine", "nowhere"], "mets: nest 'regional' lists 'nowhere', which is not in mets"),
        (["fine", "regional"], "mets: nest 'regional' lists 'regional', which is a nest"),
        (["fine", "fine"], "mets: nest 'regional' lists an archive twice"),
        (["fine"], "mets.regional.nest: Tuple should have at least 2 items"),
    ):
        with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(")):
            ModelConfig.from_dict({"mets": {**mets, "regional": {"nest": nest}}})
