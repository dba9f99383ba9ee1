"""Every receptor its own simulation, every row read as meant: real hycs_std on idealized met.

Each project is run on the shared LocalCluster and compared with another project
run from canonical input: same ids, same particles, same footprints.
"""

from __future__ import annotations

import datetime as dt
import io
import warnings

import numpy as np
import pandas as pd
import pytest

from pystilt_dask.config import ModelConfig
from pystilt_dask.errors import ReceptorError
from pystilt_dask.model import Model
from pystilt_dask.receptors import ColumnReceptor, PointReceptor, ReceptorsMerged
from pystilt_dask.store import layout, registry

TEN = dt.datetime(2019, 5, 30, 10)
GRID = {"xmin": -112.3, "xmax": -111.5, "ymin": 40.4, "ymax": 41.0, "xres": 0.02}
LOW = ColumnReceptor(time=TEN, longitude=-111.9, latitude=40.7, bottom=0, top=3000)
HIGH = ColumnReceptor(time=TEN, longitude=-111.9, latitude=40.7, bottom=3000, top=6000)
POINT = PointReceptor(time=TEN, longitude=-111.848, latitude=40.766, altitude=5)


@pytest.fixture
def config(idealized_met) -> ModelConfig:
    return ModelConfig.from_dict(
        {
            "mets": {"idealized": idealized_met},
            "hysplit": {"n_hours": -1, "numpar": 30, "seed": 7},
            "footprints": {"foot": GRID},
        }
    )


def _results(model: Model) -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
    """Particles and footprint of every simulation of a project, by id."""
    foot = model.footprints["foot"].load()
    return {
        sim_id: (model.trajectories.load(sim_id), foot.sel(simulation=sim_id).values)
        for sim_id in model.simulations.ids()
    }


def _assert_same(got: tuple[pd.DataFrame, np.ndarray], expected: tuple[pd.DataFrame, np.ndarray]):
    pd.testing.assert_frame_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


def test_two_columns_at_one_place_and_time_are_two_simulations(tmp_path, config, client):
    # In an hour no particle released above the mixed layer comes down: HIGH's footprint
    # is empty, which only its own simulation says.
    states = {LOW.sim_id: "complete", HIGH.sim_id: "complete-empty"}
    both = Model(tmp_path / "both", [LOW, HIGH], config)
    assert both.run(client) == states
    assert both.simulations.ids() == [
        "201905301000_-111.9_40.7_X0-3000",
        "201905301000_-111.9_40.7_X3000-6000",
    ]
    together = _results(both)
    low, high = (together[c.sim_id][0] for c in (LOW, HIGH))
    assert low["zagl"].max() < 3000 < high["zagl"].min()
    assert together[LOW.sim_id][1].sum() > 0 == together[HIGH.sim_id][1].sum()
    for column in (LOW, HIGH):
        alone = Model(tmp_path / column.sim_id, [column], config)
        assert alone.run(client) == {column.sim_id: states[column.sim_id]}
        _assert_same(together[column.sim_id], _results(alone)[column.sim_id])


def test_rows_written_otherwise_are_the_canonical_simulations(tmp_path, config, client):
    canonical = tmp_path / "canonical.csv"
    canonical.write_text(
        "time,longitude,latitude,altitude,bottom,top\n"
        "2019-05-30 10:00,-111.848,40.766,5,,\n"
        "2019-05-30 11:00,-111.9,40.7,,0,1000\n"
    )
    written = tmp_path / "written.csv"
    written.write_text(
        "Time,LONGITUDE,Lat,ZAGL,Bottom,TOP\n"
        "201905301000,248.152,40.766,5,,\n"  # compact digits, longitude 0…360
        "2019-05-30T04:00-06:00,-111.848,40.766,5,,\n"  # a zone
        "2019053010,-111.848,40.766,5,,\n"  # R-STILT's digits to the hour
        "2019-05-30 10:00,-111.848,40.766,5.0,,\n"
        "2019-05-30 10:00,-111.84800000000001,40.766,5,,\n"
        "2019-05-30 10:00,-111.848,40.766,5.0,,\n"  # an exact duplicate
        "2019053011,-111.9,40.7,,0,1000\n"
    )
    expected = Model(tmp_path / "expected", canonical, config)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing merged: no warning
        expected.run(client)
    model = Model(tmp_path / "project", written, config)
    with pytest.warns(ReceptorsMerged) as caught:
        assert model.run(client) == dict.fromkeys(expected.simulations.ids(), "complete")
    # The table is read at registration only: one line, and it counts the rows.
    assert [str(w.message) for w in caught] == [
        f"5 rows of {written} repeat another row's receptor and were merged"
    ]
    assert model.simulations.ids() == [POINT.sim_id, "201905301100_-111.9_40.7_X0-1000"]
    ours, theirs = _results(model), _results(expected)
    for sim_id in ours:
        _assert_same(ours[sim_id], theirs[sim_id])


def test_a_legacy_column_entry_is_that_simulation(tmp_path, config, client, stand_in):
    """A store registered before extents were in ids: its `…_X` column is reused as is."""
    legacy = Model(tmp_path / "p", [], config)
    legacy.register_pending()  # stores config.yaml, registers nothing
    old_id = "201905301000_-111.9_40.7_X"
    now = dt.datetime.now(dt.UTC)
    # What registering LOW wrote before: the same record under the id without extent.
    assert registry.commit(
        legacy.location, [registry.record(LOW, 0, "idealized", ["foot"], None, now, old_id)]
    )
    assert legacy.run(client) == {old_id: "complete"}
    stored = legacy.location.read_bytes(layout.particles_key(old_id))
    foot = legacy.footprints["foot"].load().sel(simulation=old_id).values

    # Registered again from a table, through a HYSPLIT that fails if it is ever called.
    never = stand_in("exit 3")
    relaxed = config.model_copy(
        update={"hysplit": config.hysplit.model_copy(update={"executable": str(never)})}
    )
    model = Model(tmp_path / "p", [LOW], relaxed)
    assert model.register_pending() == []
    assert len(model.registry().pending([LOW])) == 0
    assert model.run(client) == {}
    assert model.simulations.ids() == [old_id]
    assert model.location.read_bytes(layout.particles_key(old_id)) == stored
    np.testing.assert_array_equal(model.footprints["foot"].load().values[0], foot)
    # Run again from scratch, the entry keeps its id: particles land where it expects them.
    rerun = Model(tmp_path / "p", [LOW], config).run(client, skip_existing=False)
    assert rerun == {old_id: "complete"}
    _assert_same(_results(model)[old_id], (pd.read_parquet(io.BytesIO(stored)), foot))

    # Another extent at the same place and time is a simulation of its own.
    assert Model(tmp_path / "p", [HIGH], relaxed).register_pending() == [HIGH.sim_id]
    assert model.simulations.ids() == [old_id, HIGH.sim_id]


def test_a_receptor_changed_under_its_id_is_refused(tmp_path, config, stilt):
    project = tmp_path / "p"
    model = Model(project, [], config)
    model.register_pending()
    # Registered before seconds were stamped in ids: 10:00:45 under the id of 10:00.
    early = PointReceptor(time="2019-05-30 10:00:45", **POINT.model_dump(exclude={"time", "kind"}))
    now = dt.datetime.now(dt.UTC)
    record = registry.record(early, 0, "idealized", ["foot"], None, now, POINT.sim_id)
    assert registry.commit(model.location, [record])
    message = (
        f"simulation {POINT.sim_id} is registered as time=2019-05-30 10:00:45, "
        "longitude=-111.848, latitude=40.766, altitude=5, not time=2019-05-30 10:00:00, "
        "longitude=-111.848, latitude=40.766, altitude=5; a receptor cannot change under its id"
    )
    with pytest.raises(ReceptorError) as refused:
        Model(project, [POINT], config).register_pending()
    assert str(refused.value) == message
    table = tmp_path / "receptors.csv"
    table.write_text("time,lon,lat,z\n2019-05-30 10:00,-111.848,40.766,5\n")
    result = stilt("register", project, "--receptors", table)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {message}"]
    assert registry.versions(model.location) == [0]
    # The receptor as it was registered is that simulation, under the id it has there.
    assert early.sim_id == "20190530100045_-111.848_40.766_5"
    assert Model(project, [early], config).register_pending() == []


def test_stilt_dask_says_how_many_rows_merged_in_one_note(tmp_path, config, stilt):
    table = tmp_path / "receptors.csv"
    table.write_text(
        "time,lon,lat,z\n"
        "2019-05-30 10:00,-111.848,40.766,5\n201905301000,-111.84800000000001,40.766,5.0\n"
        "2019-05-30T12:00+02:00,248.152,40.766,5\n2019-05-30 11:00,-111.848,40.766,5\n"
    )
    Model(tmp_path / "p", [], config).register_pending()
    note = f"note: 2 rows of {table} repeat another row's receptor and were merged"
    registered = stilt("register", tmp_path / "p", "--receptors", table)
    assert registered.returncode == 0, registered.stderr
    assert registered.stderr.splitlines() == [note]
    assert "registered 2 new simulations" in registered.stdout
