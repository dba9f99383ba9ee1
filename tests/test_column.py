"""Column receptors the X-STILT way: a plain and a weighted footprint from one HYSPLIT run.

Real hycs_std on the idealized met, a real store and a real LocalCluster: each named
footprint completes on its own, and a lost chunk is recomputed from the stored
particles by a run whose hycs_std fails if it is ever called.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from distributed import Client, LocalCluster
from footprint_helpers import as_pystilt_table, assert_footprint_equal, pystilt_grid

from pystilt_dask.config import DEFAULT_VARSIWANT, ModelConfig
from pystilt_dask.errors import ConfigError
from pystilt_dask.footprint import calc_footprint
from pystilt_dask.model import Model
from pystilt_dask.receptors import ColumnReceptor
from pystilt_dask.store import footprints, layout

RECEPTOR = ColumnReceptor(
    time="2019-05-30 10:00", longitude=-111.848, latitude=40.766, bottom=0, top=2500
)
GRID = {"xmin": -112.3, "xmax": -111.5, "ymin": 40.4, "ymax": 41.0, "xres": 0.01}
WEIGHTED = [
    {"kind": "pressure_weighting"},
    {"kind": "averaging_kernel", "levels": [0, 1000, 2500], "values": [1.0, 0.9, 0.6]},
]


@pytest.fixture(scope="module")
def client():
    with LocalCluster(
        n_workers=1, threads_per_worker=1, resources={"hysplit": 1}, dashboard_address=":0"
    ) as cluster, Client(cluster) as client:  # fmt: skip
        yield client


@pytest.fixture
def config(idealized_met) -> ModelConfig:
    return ModelConfig.from_dict(
        {
            "mets": {"idealized": idealized_met},
            "hysplit": {
                "n_hours": -2,
                "numpar": 100,
                "seed": 7,
                "varsiwant": [*DEFAULT_VARSIWANT, "pres"],
            },
            "footprints": {"plain": GRID, "xco2": {**GRID, "transforms": WEIGHTED}},
        }
    )


def _chunk(model: Model, name: str) -> str:
    return model.location.url(layout.chunk_key(name, 0))


def test_each_footprint_completes_on_its_own(tmp_path, config, client, stand_in):
    model = Model(tmp_path / "project", [RECEPTOR], config)
    model.register_pending()
    assert model.run(client) == {RECEPTOR.sim_id: "complete"}
    table = model.trajectories.load(RECEPTOR.sim_id)
    loaded = {name: model.footprints[name].load().isel(simulation=0) for name in ("plain", "xco2")}
    for name, foot in loaded.items():
        expected = calc_footprint(table, RECEPTOR, config.footprints[name])
        by_time = foot.swap_dims(lag="time").sel(time=expected.time)
        np.testing.assert_array_equal(by_time.values, expected.values)
    plain, weighted = (float(loaded[name].sum()) for name in ("plain", "xco2"))
    # Pressure weights sum to the column's share of the air (~25 % below 2.5 km) and
    # the kernel is at most 1: the weighted column sees less than the plain one.
    assert 0 < weighted < 0.5 * plain

    # Lose the weighted footprint's chunk: only it is pending, and it comes back from
    # the stored particles alone; a hycs_std that fails proves HYSPLIT does not run.
    stored = open(_chunk(model, "xco2"), "rb").read()
    untouched = {
        key: os.stat(model.location.url(key)).st_mtime_ns
        for key in (layout.chunk_key("plain", 0), layout.particles_key(RECEPTOR.sim_id))
    }
    footprints.delete_chunk(model.location, "xco2", 0)
    status = model.status().table
    assert status.loc[RECEPTOR.sim_id, "plain"] == "complete"
    assert status.loc[RECEPTOR.sim_id, "xco2"] != "complete"
    failing = stand_in(': > "$RUNS/called.$$"\nexit 3')
    no_hysplit = config.model_copy(
        update={"hysplit": config.hysplit.model_copy(update={"executable": str(failing)})}
    )
    rerun = Model(model.location.root, config=no_hysplit)
    assert rerun.run(client) == {RECEPTOR.sim_id: "complete"}
    assert not list(failing.with_suffix(".runs").iterdir())
    assert open(_chunk(model, "xco2"), "rb").read() == stored
    for key, mtime in untouched.items():
        assert os.stat(model.location.url(key)).st_mtime_ns == mtime


@pytest.mark.pystilt
def test_weighted_column_matches_pystilt_on_hysplit_particles(tmp_path, config, client):
    """The combined X-STILT weighting on real column particles, against PYSTILT's."""
    stilt = pytest.importorskip("stilt")
    from stilt.particles import add_release_heights

    model = Model(tmp_path / "project", [RECEPTOR], config)
    model.register_pending()
    model.run(client)
    table = model.trajectories.load(RECEPTOR.sim_id)
    fp = config.footprints["xco2"]
    ours = calc_footprint(table, RECEPTOR, fp, _interpolate=False)
    receptor = stilt.ColumnReceptor(
        time=RECEPTOR.time,
        longitude=RECEPTOR.longitude,
        latitude=RECEPTOR.latitude,
        bottom=RECEPTOR.bottom,
        top=RECEPTOR.top,
    )
    theirs_table = add_release_heights(as_pystilt_table(table), receptor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = stilt.calc_footprint(theirs_table, receptor, pystilt_grid(fp), transforms=WEIGHTED)
    assert_footprint_equal(ours, theirs)


def test_transforms_are_part_of_a_footprints_settings(tmp_path, config):
    Model(tmp_path / "project", [RECEPTOR], config).register_pending()
    kernel = {**WEIGHTED[1], "values": [1.0, 0.8, 0.6]}
    for transforms in ([WEIGHTED[0], kernel], [WEIGHTED[0]]):
        footprints = {"plain": GRID, "xco2": {**GRID, "transforms": transforms}}
        changed = ModelConfig.from_dict(
            {**config.model_dump(mode="json"), "footprints": footprints}
        )
        with pytest.raises(ConfigError, match="'xco2'.*made with other settings"):
            Model(tmp_path / "project", [RECEPTOR], changed).register_pending()
    # A footprint without transforms records its settings as before transforms
    # existed, so older stores still match their configs.
    group = json.loads(
        Path(tmp_path / "project" / layout.footprint_group("plain"), "zarr.json").read_text()
    )
    settings = json.loads(group["attributes"]["pystilt_dask:footprint"])
    assert "transforms" not in settings["footprint"]
