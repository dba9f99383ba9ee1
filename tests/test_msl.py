"""Receptors above sea level (altitude_ref="msl") and slant receptors, on the real hycs_std.

PYSTILT releases a receptor above sea level with HYSPLIT's KMSL=1; so do we, and the
particles are PYSTILT's for the same receptor and seed. On the idealized met the
terrain is at sea level; on the real HRRR met (../shared, skipped without it) it is
about 1.3 km high at the receptor, where KMSL decides where particles start.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pystilt_dask import observations as obs
from pystilt_dask.config import DEFAULT_VARSIWANT, ModelConfig
from pystilt_dask.hysplit.inputs import setup_text
from pystilt_dask.model import Model
from pystilt_dask.receptors import (
    ColumnReceptor,
    MultiPointReceptor,
    PointReceptor,
    receptor_frame,
)
from pystilt_dask.store import layout, registry
from pystilt_dask.store.paths import Location
from pystilt_dask.trajectory import run_trajectory

TIME = "2019-05-30 10:00"
SITE = {"longitude": -111.848, "latitude": 40.766}
#: PYSTILT's names for the columns R-STILT calls time, indx, long, lati.
PYSTILT_NAMES = {"age": "time", "particle": "indx", "lon": "long", "lat": "lati"}
GRID = {"xmin": -112.3, "xmax": -111.5, "ymin": 40.4, "ymax": 41.0, "xres": 0.02}


def _canonical(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values(["indx", "time"], ascending=[True, False]).reset_index(drop=True)


@pytest.mark.pystilt
@pytest.mark.parametrize(("met", "altitude"), [("idealized", 150.0), ("hrrr", 1600.0)])
def test_msl_point_particles_equal_pystilt(request, met, altitude):
    stilt = pytest.importorskip("stilt")
    met_fields = request.getfixturevalue(f"{met}_met")  # hrrr: skips without ../shared
    config = request.getfixturevalue(f"{met}_config")  # on met_fields: 50 particles, -2 h, seed 7
    ours = PointReceptor(time=TIME, **SITE, altitude=altitude, altitude_ref="msl")
    assert "KMSL=1," in setup_text(config.hysplit, ours)
    theirs = stilt.PointReceptor(time=TIME, **SITE, altitude=altitude, altitude_ref="msl")
    assert ours.sim_id == theirs.id
    reference = stilt.run_trajectories(
        theirs, met_fields, n_hours=-2, numpar=50, seed=7, krand=2,
        varsiwant=list(DEFAULT_VARSIWANT),
    ).rename(columns=PYSTILT_NAMES)  # fmt: skip
    particles = _canonical(run_trajectory(ours, config))
    reference = _canonical(reference)
    shared = [c for c in particles.columns if c in reference.columns]
    assert len(shared) >= 12
    for column in shared:
        a, b = particles[column].to_numpy(float), reference[column].to_numpy(float)
        if column == "foot":  # numpy's SIMD exp and libm's differ by 1 ulp (test_trajectory)
            np.testing.assert_allclose(a, b, rtol=1e-15, atol=0)
        else:
            np.testing.assert_array_equal(a, b, err_msg=column)
    if met == "hrrr":  # the same number above ground starts ~1.3 km higher
        above_ground = run_trajectory(ours.model_copy(update={"altitude_ref": "agl"}), config)
        start = particles[particles["time"] == -1]["zagl"].mean()
        assert above_ground[above_ground["time"] == -1]["zagl"].mean() > start + 1000


def test_msl_ids_differ_from_agl_and_mark_as_pystilt():
    point = {"time": TIME, **SITE, "altitude": 5}
    assert PointReceptor(**point).sim_id == "201905301000_-111.848_40.766_5"
    assert PointReceptor(**point, altitude_ref="msl").sim_id == "201905301000_-111.848_40.766_5msl"
    column = {"time": TIME, **SITE, "bottom": 0, "top": 3000}
    assert ColumnReceptor(**column, altitude_ref="msl").sim_id.endswith("_X0-3000msl")
    points = {"longitudes": [-111.8, -111.9], "latitudes": [40.7, 40.8], "altitudes": [10, 900]}
    agl, msl = (MultiPointReceptor(time=TIME, **points, altitude_ref=ref) for ref in ("agl", "msl"))
    assert msl.sim_id == agl.sim_id + "msl" and msl != agl
    assert PointReceptor(**point, altitude_ref="msl").legacy_sim_id is None
    # below sea level only where land is (the Dead Sea shore, -430 m); never below ground
    assert PointReceptor(**{**point, "altitude": -420}, altitude_ref="msl").altitude == -420
    with pytest.raises(ValueError, match="at least -500 m"):
        PointReceptor(**{**point, "altitude": -501}, altitude_ref="msl")
    with pytest.raises(ValueError, match="altitude_ref 'msl'"):
        PointReceptor(**{**point, "altitude": -1})
    # a sounding is a label, not part of the receptor
    labelled = PointReceptor(**point, sounding_id=2019053010004512)
    assert labelled.sounding_id == "2019053010004512" and labelled == PointReceptor(**point)


def test_a_table_with_altitude_ref_registers_and_old_commits_read_as_agl(tmp_path):
    table = pd.DataFrame(
        {
            "time": [TIME] * 3,
            "lon": [-111.848] * 3,
            "lat": [40.766] * 3,
            "zagl": [5, 5, 1600],
            "altitude_ref": ["agl", "MSL", "msl"],
            "sounding_id": ["s1", "s2", None],
        }
    )
    location = Location(str(tmp_path / "store"))
    new, state = registry.register(location, receptor_frame(table), "hrrr", ["slv"])
    assert new == [
        "201905301000_-111.848_40.766_5",
        "201905301000_-111.848_40.766_5msl",
        "201905301000_-111.848_40.766_1600msl",
    ]
    entries = registry.read(location).table
    assert entries["altitude_ref"].tolist() == ["agl", "msl", "msl"]
    assert entries["sounding_id"].tolist()[:2] == ["s1", "s2"]
    assert pd.isna(entries["sounding_id"].iloc[2])
    rebuilt = [registry.receptor(entry) for _, entry in entries.iterrows()]
    assert [r.sim_id for r in rebuilt] == new
    assert [r.sounding_id for r in rebuilt] == ["s1", "s2", None]
    assert registry.read(location).pending(receptor_frame(table)).sim_ids == []
    # A commit written before these columns: its entries are above ground, without a sounding.
    old = pq.read_table(io.BytesIO(location.read_bytes(layout.registry_key(0))))
    old = old.drop_columns(["altitude_ref", "sounding_id"])
    sink = io.BytesIO()
    pq.write_table(old, sink)
    (tmp_path / "old").mkdir()
    older = Location(str(tmp_path / "old"))
    older.create(layout.registry_key(0), sink.getvalue())
    read = registry.read(older)
    assert read.table["altitude_ref"].isna().all() and read.table["sounding_id"].isna().all()
    assert registry.receptor(read.entry(new[0])) == rebuilt[0]
    assert registry.receptor(read.entry(new[1])).altitude_ref == "agl"  # as it was run then


def _soundings() -> pd.DataFrame:
    """Two soundings seen along a slanted line of sight, heights above sea level."""
    return pd.DataFrame(
        {
            "sounding_id": ["2019053010000101", "2019053010000202"],
            "time": pd.to_datetime(["2019-05-30 10:00:00.4", "2019-05-30 10:00:03.0"]),
            "longitude": [-111.85, -111.80],
            "latitude": [40.77, 40.70],
            "surface_altitude": [0.0, 0.0],
            "altitude_levels": [np.array([20.0, 600.0, 1500.0, 2600.0, 5000.0])] * 2,
            "zenith": [30.0, 45.0],
            "azimuth": [120.0, 300.0],
        }
    )


def test_a_slant_receptor_runs_end_to_end_and_keeps_its_sounding(tmp_path, idealized_met, client):
    table, kernels = obs.receptors_from_soundings(_soundings(), "slant", top=3000)
    assert kernels is None and set(table["altitude_ref"]) == {"msl"}
    sim_ids = table.drop_duplicates("sim_id")["sim_id"].tolist()
    assert len(sim_ids) == 2 and all(s.endswith("msl") and "_multi_" in s for s in sim_ids)
    config = ModelConfig.from_dict(
        {
            "mets": {"idealized": idealized_met},
            "hysplit": {"n_hours": -1, "numpar": 40, "seed": 7},
            "footprints": {"slv": GRID},
        }
    )
    model = Model(tmp_path / "project", table, config)
    assert model.run(client) == dict.fromkeys(sim_ids, "complete")
    foot = model.footprints["slv"].load()
    assert float(foot.sum()) > 0 and list(foot["simulation"].values) == sim_ids
    assert foot["sounding_id"].values.tolist() == ["2019053010000101", "2019053010000202"]
    assert set(foot["altitude_ref"].values) == {"msl"}
    entries = model.registry().table
    assert entries.loc[sim_ids, "sounding_id"].tolist() == ["2019053010000101", "2019053010000202"]
    receptor = registry.receptor(entries.loc[sim_ids[0]])
    assert receptor.altitude_ref == "msl" and receptor.kind == "multipoint"
    # lose the registry (commit and its copy): repair restores it from the particle files
    for version in registry.versions(model.location):
        model.location.delete(layout.registry_key(version))
        model.location.delete(layout.registry_copy_key(version))
    model.verify(repair=True)
    restored = Model(tmp_path / "project", table, config).registry().table
    assert (
        restored.loc[sim_ids, "sounding_id"].tolist()
        == entries.loc[sim_ids, "sounding_id"].tolist()
    )
    assert restored.loc[sim_ids, "altitude_ref"].tolist() == ["msl", "msl"]
