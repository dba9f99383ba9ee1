"""Footprint transforms: config spelling, errors, and parity with PYSTILT on one table."""

from __future__ import annotations

import datetime as dt
import json
import warnings

import numpy as np
import pandas as pd
import pytest
from footprint_helpers import (
    AK,
    AK_PRES,
    as_pystilt_table,
    assert_footprint_equal,
    pystilt_grid,
    random_walk_particles,
)
from pydantic import BaseModel

from pystilt_dask.config import FootprintConfig, ModelConfig
from pystilt_dask.errors import ConfigError
from pystilt_dask.footprint import calc_footprint
from pystilt_dask.footprint.transforms import (
    AveragingKernel,
    FirstOrderLifetime,
    PressureWeighting,
    apply_transforms,
)
from pystilt_dask.receptors import ColumnReceptor, PointReceptor

MET = {"m": {"directory": "met", "file_format": "%Y%m%d_%H"}}
BOX = {"xmin": -112.6, "xmax": -111.4, "ymin": 40.3, "ymax": 41.1, "xres": 0.01}
COLUMN = {"time": dt.datetime(2019, 5, 30, 10), "longitude": -111.85, "latitude": 40.77}
RECEPTOR = ColumnReceptor(**COLUMN, bottom=0, top=3000)
VARSIWANT = ["time", "indx", "long", "lati", "zagl", "foot", "pres"]


class Doubling(BaseModel):
    """A custom transform, loaded by import path in the tests below."""

    factor: float = 2.0

    def apply(self, particles: pd.DataFrame, receptor) -> pd.DataFrame:
        return particles.assign(foot=particles["foot"] * self.factor)


def column_particles(n_particles: int = 200, n_minutes: int = 360, seed: int = 3) -> pd.DataFrame:
    """Synthetic column particles: released bottom to top in ``indx`` order (as HYSPLIT
    numbers them), heights drifting from the release, pressure hydrostatic with noise."""
    table = random_walk_particles(n_particles=n_particles, n_minutes=n_minutes, seed=seed)
    rng = np.random.default_rng(seed)
    slab = (RECEPTOR.top - RECEPTOR.bottom) / n_particles
    release = RECEPTOR.bottom + (table["indx"].to_numpy() - 0.5) * slab
    zagl = np.abs(release + rng.normal(0, 30, len(table)) * np.sqrt(table["time"].abs()))
    pres = 860.0 * np.exp(-zagl / 8400.0) + rng.normal(0, 0.3, len(table))
    return table.assign(zagl=zagl, pres=pres)


@pytest.fixture(scope="module")
def particles() -> pd.DataFrame:
    return column_particles()


def _footprint(transforms) -> FootprintConfig:
    return FootprintConfig(**BOX, transforms=transforms)


# -- configuration ----------------------------------------------------------------


def test_pystilt_spelling_loads_and_round_trips(tmp_path):
    data = {
        "mets": MET,
        "hysplit": {"varsiwant": VARSIWANT, "hnf_plume": False},
        "footprints": {
            "xco2": {
                **BOX,
                "transforms": [
                    {"kind": "pressure_weighting"},
                    AK,
                    {"kind": "first_order_lifetime", "lifetime_hours": 12},
                ],
            }
        },
    }
    config = ModelConfig.from_dict(data)
    kinds = [type(t) for t in config.footprints["xco2"].transforms]
    assert kinds == [PressureWeighting, AveragingKernel, FirstOrderLifetime]
    path = tmp_path / "config.yaml"
    config.to_yaml(path)
    assert ModelConfig.from_yaml(path).footprints == config.footprints


@pytest.mark.parametrize(
    ("transform", "message"),
    [
        ({"kind": "pressure_weight"}, "unknown transform kind 'pressure_weight'.*did you mean"),
        ({"kind": "averaging_kernel", "levels": [0, 1]}, "needs levels and values, or a table"),
        ({**AK, "values": [1.0]}, "has 3 levels but 1 values"),
        ({**AK, "table": "k.csv"}, "levels and values, or a table, not both"),
        ({"kind": "first_order_lifetime", "lifetime_hours": 0}, "lifetime_hours"),
        ({"kind": "first_order_lifetime", "lifetime": 3}, "lifetime"),
        ({"kind": "no_such_pkg.Thing"}, "'no_such_pkg.Thing' cannot be imported"),
        ({"kind": "pandas.DataFrame"}, "must be a pydantic model with apply"),
    ],
)
def test_bad_transforms_name_the_field(transform, message):
    data = {"mets": MET, "footprints": {"col": {**BOX, "transforms": [transform]}}}
    with pytest.raises(ConfigError, match=r"footprints\.col\.transforms\.0") as info:
        ModelConfig.from_dict(data)
    assert info.match(message)


def test_transforms_need_their_particle_variables():
    data = {"mets": MET, "footprints": {"col": {**BOX, "transforms": [AK_PRES]}}}
    with pytest.raises(ConfigError, match=r"footprint 'col'.*varsiwant to include \['pres'\]"):
        ModelConfig.from_dict(data)


def test_kernel_table_path_is_anchored_at_the_config(tmp_path):
    transform = {"kind": "averaging_kernel", "table": "kernels.csv"}
    data = {"mets": MET, "footprints": {"col": {**BOX, "transforms": [transform]}}}
    config = ModelConfig.from_dict(data, base=tmp_path)
    assert config.footprints["col"].transforms[0].table == str(tmp_path.resolve() / "kernels.csv")


def test_custom_transform_by_import_path(particles, tmp_path):
    config = _footprint([{"kind": "test_transforms.Doubling", "factor": 3.0}])
    assert config.model_dump(mode="json")["transforms"] == [
        {"kind": "test_transforms.Doubling", "factor": 3.0}
    ]
    project = ModelConfig.from_dict({"mets": MET, "footprints": {"x3": config.model_dump()}})
    project.to_yaml(tmp_path / "config.yaml")
    assert ModelConfig.from_yaml(tmp_path / "config.yaml").footprints == project.footprints
    tripled = apply_transforms(particles, config.transforms, RECEPTOR)
    np.testing.assert_array_equal(tripled["foot"], particles["foot"] * 3.0)


def test_transforms_leave_their_input_alone(particles):
    before = particles.copy()
    config = _footprint([{"kind": "pressure_weighting"}, AK])
    out = apply_transforms(particles, config.transforms, RECEPTOR)
    pd.testing.assert_frame_equal(particles, before)
    assert {"pwf", "xpres", "ak_weight"} <= set(out.columns)


def test_pressure_weights_thin_upward_and_scale_foot_by_count(particles):
    config = _footprint([{"kind": "pressure_weighting"}])
    out = apply_transforms(particles, config.transforms, RECEPTOR)
    per_particle = out.groupby("indx")[["pwf", "xpres"]].first()
    # One slab per particle in a column; air thins upward, so do the shares.
    assert np.all(np.diff(per_particle["xpres"]) < 0)
    assert np.all(np.diff(per_particle["pwf"].to_numpy()[1:]) < 0)
    # Below a 3 km top a column holds ~30 % of the atmosphere's mass.
    assert 0.25 < per_particle["pwf"].sum() < 0.35
    n = particles["indx"].nunique()
    np.testing.assert_allclose(out["foot"], particles["foot"] * out["pwf"] * n, rtol=1e-15)


def test_pressure_weighting_needs_a_column(particles):
    point = PointReceptor(**COLUMN, altitude=5)
    config = _footprint([{"kind": "pressure_weighting"}])
    with pytest.raises(ConfigError, match="range of heights"):
        calc_footprint(particles, point, config)


def test_kernel_table_per_receptor(tmp_path, particles):
    other = ColumnReceptor(**{**COLUMN, "longitude": -111.9}, bottom=0, top=2000)
    table = pd.DataFrame(
        {
            "receptor": [RECEPTOR.sim_id] * 3 + [other.sim_id] * 2,
            "level": AK["levels"] + [0, 1],
            "value": AK["values"] + [0.0, 0.0],
        }
    )
    path = tmp_path / "kernels.parquet"
    table.to_parquet(path)
    from_table = _footprint([{"kind": "averaging_kernel", "table": str(path)}])
    inline = _footprint([AK])
    np.testing.assert_array_equal(
        calc_footprint(particles, RECEPTOR, from_table).values,
        calc_footprint(particles, RECEPTOR, inline).values,
    )
    missing = ColumnReceptor(**{**COLUMN, "latitude": 40.8}, bottom=0, top=3000)
    with pytest.raises(ConfigError, match=f"no kernel for receptor {missing.sim_id}"):
        calc_footprint(particles, missing, from_table)


# -- parity with PYSTILT ------------------------------------------------------------

PARITY = {
    "averaging_kernel": [AK],
    "averaging_kernel_pres": [AK_PRES],
    "pressure_weighting": [{"kind": "pressure_weighting"}],
    "pressure_weighting_psfc": [{"kind": "pressure_weighting", "surface_pressure": 870.0}],
    "first_order_lifetime": [{"kind": "first_order_lifetime", "lifetime_hours": 3.0}],
    "weighted_column": [{"kind": "pressure_weighting"}, AK],
    "weighted_column_decaying": [
        {"kind": "pressure_weighting"},
        AK_PRES,
        {"kind": "first_order_lifetime", "lifetime_hours": 5.0},
    ],
}


@pytest.mark.pystilt
@pytest.mark.parametrize("case", PARITY)
@pytest.mark.parametrize("time_integrate", [False, True])
def test_matches_pystilt(particles, case, time_integrate):
    stilt = pytest.importorskip("stilt")
    from stilt.particles import add_release_heights

    config = FootprintConfig(**BOX, transforms=PARITY[case], time_integrate=time_integrate)
    ours = calc_footprint(particles, RECEPTOR, config, _interpolate=False)
    receptor = stilt.ColumnReceptor(**COLUMN, bottom=RECEPTOR.bottom, top=RECEPTOR.top)
    table = add_release_heights(as_pystilt_table(particles), receptor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = stilt.calc_footprint(
            table,
            receptor,
            pystilt_grid(config),
            time_integrate=time_integrate,
            transforms=PARITY[case],
        )
    assert_footprint_equal(ours, theirs)
    # And the weighted particle foot itself, row for row.
    weighted = apply_transforms(particles, config.transforms, RECEPTOR)
    reference = stilt.transforms.apply_transforms(
        table, [stilt.transforms.load_transform(t) for t in PARITY[case]], receptor
    )
    np.testing.assert_allclose(weighted["foot"], reference["foot"], rtol=1e-12)


def test_footprint_records_its_transforms(particles):
    foot = calc_footprint(particles, RECEPTOR, _footprint([{"kind": "pressure_weighting"}, AK]))
    assert json.loads(foot.attrs["footprint_transforms"]) == [
        {"kind": "pressure_weighting"},
        {**AK, "levels": [0.0, 1000.0, 2500.0], "coordinate": "release_height"},
    ]
    assert "footprint_transforms" not in calc_footprint(particles, RECEPTOR, _footprint(())).attrs
