"""Backgrounds at particle endpoints: equal to PYSTILT's ``sim.background`` on the same
particles and field, and for a whole project as one lazy dask computation."""

from __future__ import annotations

import datetime as dt
import pickle
import shutil
import warnings
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from footprint_helpers import AK, AK_PRES, as_pystilt_table
from store_helpers import RaiseIfComputes

from pystilt_dask.background import background, particle_background
from pystilt_dask.config import ModelConfig
from pystilt_dask.errors import ConfigError
from pystilt_dask.model import Model
from pystilt_dask.receptors import ColumnReceptor, PointReceptor

stilt = pytest.importorskip("stilt", reason="PYSTILT is the test-only reference")
pytestmark = pytest.mark.pystilt

TIME = dt.datetime(2019, 5, 30, 10)
COLUMN = ColumnReceptor(time=TIME, longitude=-111.85, latitude=40.77, bottom=0, top=3000)
POINT = PointReceptor(time=TIME, longitude=-111.85, latitude=40.77, altitude=5)
PRESSURE_WEIGHTING = {"kind": "pressure_weighting"}
#: Transforms by PYSTILT variant name; each runs on the column receptor.
CASES = {
    "plain": [],
    "pw": [PRESSURE_WEIGHTING],
    "ak": [AK],
    "pw-ak-pres": [PRESSURE_WEIGHTING, AK_PRES],
    "lifetime": [{"kind": "first_order_lifetime", "lifetime_hours": 1.0}],
}


def synthetic_column(n_particles: int = 120, n_minutes: int = 90, seed: int = 5) -> pd.DataFrame:
    """Column particles as HYSPLIT writes them (rows by time step, then particle),
    drifting south-west with their own velocities; a fifth leave early."""
    rng = np.random.default_rng(seed)
    minutes = np.arange(1, n_minutes + 1)
    velocity = rng.normal([-0.0012, -0.0006], 0.0006, size=(n_particles, 2))
    steps = velocity[:, None, :] + rng.normal(0, 0.0008, size=(n_particles, n_minutes, 2))
    track = np.cumsum(steps, axis=1)
    release = (np.arange(1, n_particles + 1) - 0.5) * (COLUMN.top - COLUMN.bottom) / n_particles
    zagl = np.abs(release[:, None] + np.cumsum(rng.normal(0, 25, (n_particles, n_minutes)), 1))
    table = pd.DataFrame(
        {
            "time": -np.tile(minutes, n_particles).astype(np.float64),
            "indx": np.repeat(np.arange(1, n_particles + 1), n_minutes).astype(np.float64),
            "long": COLUMN.longitude + track[..., 0].ravel(),
            "lati": COLUMN.latitude + track[..., 1].ravel(),
            "zagl": zagl.ravel(),
            "foot": rng.random(n_particles * n_minutes) * 0.01,
        }
    )
    table["pres"] = 860.0 * np.exp(-table["zagl"] / 8400.0) + rng.normal(0, 0.3, len(table))
    leaves = rng.integers(20, n_minutes, n_particles)
    leaves[rng.random(n_particles) > 0.2] = n_minutes
    kept = -table["time"] <= leaves[table["indx"].to_numpy(dtype=int) - 1]
    return table[kept].sort_values(["time", "indx"], ascending=[False, True], ignore_index=True)


def salt_lake_field(
    lons: np.ndarray, lats: np.ndarray, seed: int, *, vertical: str
) -> xr.DataArray:
    """A random mole-fraction field on ``lons``/``lats``, by ``time`` and ``pres`` (hPa),
    or by ``zagl`` (m) alone: random, so a value from a wrong cell shows."""
    rng = np.random.default_rng(seed)
    coords = {"lat": lats, "lon": lons}
    if vertical == "pres":
        coords = {
            "time": pd.date_range("2019-05-30 00:00", periods=5, freq="3h"),
            "pres": [1000.0, 950.0, 900.0, 850.0, 800.0, 700.0, 600.0, 500.0],
            **coords,
        }
    else:
        coords = {"zagl": [0.0, 50.0, 150.0, 400.0, 800.0, 1500.0, 2500.0, 4000.0], **coords}
    shape = tuple(len(v) for v in coords.values())
    return xr.DataArray(
        410.0 + rng.normal(0, 3, shape), dims=tuple(coords), coords=coords, attrs={"units": "ppm"}
    )


def pystilt_receptor(receptor):
    fields = {"time": receptor.time, "longitude": receptor.longitude, "latitude": receptor.latitude}
    if isinstance(receptor, ColumnReceptor):
        return stilt.ColumnReceptor(**fields, bottom=receptor.bottom, top=receptor.top)
    return stilt.PointReceptor(**fields, altitude=receptor.altitude)


class PystiltProject:
    """A PYSTILT project holding our particles where PYSTILT reads them.

    The particles are converted as PYSTILT's transport finishes a run's before
    writing them (its column names, then ``add_release_heights``), so its
    ``sim.background`` reads the same particles we do.
    """

    def __init__(self, folder: Path, met: dict, receptors, variants: dict[str, list]) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.project = stilt.Project.init(
                folder,
                receptors=[pystilt_receptor(r) for r in receptors],
                mets={"m": met},
                variants={name: {"transforms": t} for name, t in variants.items()},
                n_hours=-2,
                grid={
                    "xmin": -113,
                    "xmax": -111,
                    "ymin": 40,
                    "ymax": 41.5,
                    "xres": 0.1,
                    "yres": 0.1,
                },
            )

    def simulation(self, receptor, variant: str):
        return self.project.simulation(pystilt_receptor(receptor).id, variant)

    def write(self, receptor, particles: pd.DataFrame, variants) -> None:
        table = stilt.particles.add_release_heights(
            as_pystilt_table(particles), pystilt_receptor(receptor)
        )
        for variant in variants:
            sim = self.simulation(receptor, variant)
            sim.output.write_particles(sim.variant, sim.receptor, table, met_files=[])

    def background(self, receptor, variant: str, field: xr.DataArray):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.simulation(receptor, variant).background(field)


@pytest.fixture(scope="module")
def particles() -> pd.DataFrame:
    return synthetic_column()


@pytest.fixture(scope="module")
def pystilt(tmp_path_factory, idealized_met, particles) -> PystiltProject:
    folder = tmp_path_factory.mktemp("pystilt")
    project = PystiltProject(folder, idealized_met, [COLUMN, POINT], CASES)
    project.write(COLUMN, particles, CASES)
    return project


# The field's east and north edges cut through the endpoints: some are outside it.
FIELDS = {
    "pres": salt_lake_field(
        np.arange(-112.3, -111.93, 0.02), np.arange(40.5, 40.75, 0.015), 1, vertical="pres"
    ),
    "zagl": salt_lake_field(  # longitudes descending
        np.arange(-111.93, -112.3, -0.025), np.arange(40.5, 40.75, 0.02), 2, vertical="zagl"
    ),
}


def _transforms(case: str):
    return (
        ModelConfig.from_dict(
            {
                "mets": {"m": {"directory": "met", "file_format": "%Y%m%d_%H"}},
                "hysplit": {
                    "varsiwant": ["time", "indx", "long", "lati", "zagl", "foot", "pres"],
                    "hnf_plume": False,
                },
                "footprints": {
                    "f": {
                        "xmin": -113,
                        "xmax": -111,
                        "ymin": 40,
                        "ymax": 41.5,
                        "xres": 0.1,
                        "transforms": CASES[case],
                    },
                },
            }  # fmt: skip
        )
        .footprints["f"]
        .transforms
    )


def assert_same(ours, theirs) -> None:
    np.testing.assert_array_equal(ours.per_particle.index, theirs.per_particle.index)
    np.testing.assert_array_equal(ours.per_particle, theirs.per_particle)
    np.testing.assert_allclose(ours.weights, theirs.weights, rtol=1e-12)
    np.testing.assert_allclose(ours.value, theirs.value, rtol=1e-6, atol=0)


@pytest.mark.parametrize("vertical", FIELDS)
@pytest.mark.parametrize("case", CASES)
def test_column_equals_pystilt_sim_background(particles, pystilt, case, vertical):
    field = FIELDS[vertical]
    ours = particle_background(particles, field, COLUMN, _transforms(case))
    theirs = pystilt.background(COLUMN, case, field)
    assert_same(ours, theirs)
    outside = np.isnan(ours.per_particle)
    assert 0 < outside.sum() < len(outside) / 2, "the test needs endpoints on both sides"
    assert np.isfinite(ours.value)


@pytest.mark.parametrize("case", ["plain", "lifetime"])
def test_point_on_a_global_field_east_of_greenwich(particles, pystilt, case):
    # CarbonTracker-like centres 1.5..358.5 E: our longitudes (-112) wrap to 248 E.
    lons, lats = np.arange(1.5, 360, 3.0), np.arange(-89.0, 90, 2.0)
    field = salt_lake_field(lons, lats, 3, vertical="pres")
    field = field.assign_coords(pres=field.pres.values[::-1]).isel(lat=slice(None, None, -1))
    pystilt.write(POINT, particles, [case])
    ours = particle_background(particles, field, POINT, _transforms(case))
    assert_same(ours, pystilt.background(POINT, case, field))
    assert not np.isnan(ours.per_particle).any()


EDGES = {
    # name: (field longitudes, latitudes, endpoint longitudes, latitudes)
    "edges_and_ties": (
        [0.0, 0.5, 1.0],
        [-1.0, 0.0, 1.0],
        [1.25, 1.26, -0.25, -0.26, 0.25, 0.75, 0.0, 0.0],
        [0, 0, 0, 0, 0, 0, 0.5, -1.51],
    ),  # noqa: E501
    "descending": ([1.0, 0.5, 0.0], [1.0, 0.0, -1.0], [0.25, 0.75, 0.0, 0.0], [0, 0, 0.5, -0.5]),
    "irregular": (
        [0.0, 1.0, 3.0, 7.0],
        [0.0],
        [-0.6, -0.4, 1.9, 2.1, 8.9, 9.1],
        [0, 0, 0, 0, 0, 0],
    ),
    "one_cell": ([0.0], [0.0], [0.3, 5.0], [0.0, -7.0]),
    "wrap_0_360": ([0.0, 90.0, 180.0, 270.0], [0.0], [-10, -46, -44, 350, 316, 400, 730], [0] * 7),
    "wrap_pm180": (
        [-180.0, -90.0, 0.0, 90.0],
        [0.0],
        [-224, -226, 180, 136, 190, 225, 226],
        [0] * 7,
    ),  # noqa: E501
    "reaching_180": ([0.0, 90.0, 180.0], [0.0], [190, -170, 180, -180, 179.9, -195], [0] * 6),
}


@pytest.mark.parametrize("name", EDGES)
def test_cells_edges_and_wrapping_as_pystilt(tmp_path, name):
    lons, lats, x, y = EDGES[name]
    values = np.arange(len(lats) * len(lons), dtype=float).reshape(len(lats), len(lons))
    field = xr.DataArray(values, dims=("lat", "lon"), coords={"lat": lats, "lon": lons})
    particles = _two_rows(x, y)
    ours = particle_background(particles, field, POINT)
    theirs = stilt.particles.background(_pystilt_rows(particles), field)
    np.testing.assert_array_equal(ours.per_particle, theirs.per_particle)
    assert ours.value == pytest.approx(theirs.value, rel=1e-12, nan_ok=True)


@pytest.mark.parametrize(
    ("dim", "levels", "heights"),
    [
        ("zagl", [0.0, 100.0, 300.0, 1000.0], [50, 200, 650, -60, 49, 51, 1351, np.nan]),
        ("zagl", [1000.0, 300.0, 100.0, 0.0], [50, 200, 650, -60, 49, 51, 1351, np.nan]),
        ("pres", [1000.0, 900.0, 700.0, 500.0], [950, 800, 600, 1060, 1051, 799, 399, 400]),
        ("pres", [500.0, 700.0, 900.0, 1000.0], [950, 800, 600, 1060, 1051, 799, 399, 400]),
    ],
)
def test_levels_nearest_first_on_ties_and_clamped(dim, levels, heights):
    field = xr.DataArray(np.array(levels), dims=dim, coords={dim: levels})
    field = field.expand_dims(lat=[0.0], lon=[0.0])
    particles = _two_rows([0.0] * len(heights), [0.0] * len(heights)).assign(
        **{dim: np.repeat(heights, 2)}
    )
    ours = particle_background(particles, field, POINT)
    theirs = stilt.particles.background(_pystilt_rows(particles), field)
    np.testing.assert_array_equal(ours.per_particle, theirs.per_particle)


@pytest.mark.parametrize("descending", [False, True])
def test_times_nearest_later_on_ties_and_clamped(descending):
    times = pd.date_range("2019-05-30 00:00", periods=4, freq="3h")[:: -1 if descending else 1]
    field = xr.DataArray(np.arange(4.0), dims="time", coords={"time": times})
    field = field.expand_dims(lat=[0.0], lon=[0.0])
    ages = np.array([-60, -660, -840, -90, -150, -1200, 600, 1800], dtype=float)
    particles = _two_rows([0.0] * len(ages), [0.0] * len(ages), ages)
    ours = particle_background(particles, field, POINT)
    theirs = stilt.particles.background(_pystilt_rows(particles), field)
    np.testing.assert_array_equal(ours.per_particle, theirs.per_particle)
    assert set(ours.per_particle) == {0.0, 3.0}


def _two_rows(lons, lats, ages=None) -> pd.DataFrame:
    """One particle per endpoint: a release row at the origin, then the endpoint."""
    n = len(lons)
    ends = pd.DataFrame(
        {
            "time": -60.0 if ages is None else np.asarray(ages, dtype=float),
            "indx": np.arange(1.0, n + 1),
            "long": np.asarray(lons, dtype=float),
            "lati": np.asarray(lats, dtype=float),
            "zagl": 10.0,
            "foot": 0.0,
        }
    )
    release = ends.assign(time=np.sign(ends["time"]), long=0.0, lati=0.0, foot=1.0)
    return pd.concat([release, ends], ignore_index=True)


def _pystilt_rows(particles: pd.DataFrame) -> pd.DataFrame:
    table = as_pystilt_table(particles)
    return table.assign(time=pd.Timestamp(TIME) + pd.to_timedelta(table["age"], unit="min"))


def test_particles_without_the_vertical_column_are_refused(particles):
    field = FIELDS["pres"].rename(pres="level")
    with pytest.raises(ValueError, match="vertical dimension 'level' is not a particle column"):
        particle_background(particles, field, COLUMN)


@pytest.mark.parametrize(
    ("field", "error", "message"),
    [
        (FIELDS["zagl"].to_dataset(name="co2"), TypeError, "not Dataset"),
        (FIELDS["zagl"].rename(lat="row"), ValueError, "needs dimensions lat/lon"),
        (
            FIELDS["pres"].rename(time="zagl"),
            ValueError,
            r"at most one vertical.*\['zagl', 'pres'\]",
        ),  # noqa: E501
        (FIELDS["zagl"].drop_vars("zagl"), ValueError, "'zagl' has no coordinates"),
    ],
)
def test_bad_fields_are_named(particles, field, error, message):
    with pytest.raises(error, match=message):
        particle_background(particles, field, COLUMN)


# -- a whole project ------------------------------------------------------------------

VARSIWANT = ["time", "indx", "long", "lati", "zagl", "foot", "pres", "mlht", "dens", "samt",
             "sigw", "tlgr"]  # fmt: skip
RECEPTORS = [
    ColumnReceptor(time="2019-05-30 10:00", longitude=-111.85, latitude=40.77, bottom=0, top=3000),
    ColumnReceptor(time="2019-05-30 08:30", longitude=-111.95, latitude=40.6, bottom=0, top=2000),
]
XCO2 = [PRESSURE_WEIGHTING, AK]


@pytest.fixture(scope="module")
def project(tmp_path_factory, idealized_met):
    """Two column receptors registered on the idealized met, with backgrounds asked for
    before anything runs; then run. Returns the model and those lazy backgrounds."""
    folder = tmp_path_factory.mktemp("background")
    config = ModelConfig.from_dict(
        {
            "mets": {"idealized": idealized_met},
            "hysplit": {"n_hours": -2, "numpar": 50, "seed": 7, "varsiwant": VARSIWANT},
            "footprints": {
                "xco2": {
                    "xmin": -112.5,
                    "xmax": -111.3,
                    "ymin": 40.2,
                    "ymax": 41.2,
                    "xres": 0.02,
                    "transforms": XCO2,
                },
            },
        }  # fmt: skip
    )
    model = Model(folder / "project", RECEPTORS, config)
    model.register_pending()
    # A lazy field in zarr, as CAMS or CarbonTracker would come: its east edge at
    # -112.0225 cuts through the first receptor's endpoints.
    field = salt_lake_field(
        -112.3 + 0.005 * np.arange(56), 40.45 + 0.005 * np.arange(70), 4, vertical="pres"
    )
    field.to_dataset(name="co2").to_zarr(folder / "field.zarr", consolidated=False)
    lazy = xr.open_zarr(folder / "field.zarr", consolidated=False)["co2"]
    with dask.config.set(scheduler=RaiseIfComputes()):
        asked = {name: background(model, lazy, name, batch_size=1) for name in (None, "xco2")}
    assert set(dask.compute(*model.to_delayed(), scheduler="threads")) == {"complete"}
    return model, lazy, asked


def test_project_background_is_lazy_and_one_value_per_simulation(project):
    model, field, asked = project
    for name, result in asked.items():
        assert isinstance(result.data, da.Array)
        assert result.dims == ("simulation",)
        assert list(result.simulation.values) == [r.sim_id for r in RECEPTORS]
        assert result.data.numblocks == (len(RECEPTORS),)
        assert result.attrs["footprint"] == (name or "")
    with dask.config.set(scheduler="threads"):
        values = asked["xco2"].values
    assert values.shape == (len(RECEPTORS),) and np.isfinite(values).all()


@pytest.mark.parametrize(("footprint", "variant"), [(None, "plain"), ("xco2", "xco2")])
def test_project_equals_pystilt_on_the_same_particles(
    project, idealized_met, tmp_path, footprint, variant
):
    model, field, asked = project
    pystilt = PystiltProject(tmp_path, idealized_met, RECEPTORS, {"plain": [], "xco2": XCO2})
    transforms = model.config.footprints["xco2"].transforms if footprint else ()
    computed = asked[footprint].compute(scheduler="threads")
    in_memory = field.load()
    outside = 0
    for receptor in RECEPTORS:
        table = model.trajectories.load(receptor.sim_id)
        pystilt.write(receptor, table, [variant])
        theirs = pystilt.background(receptor, variant, in_memory)
        ours = particle_background(table, field, receptor, transforms)
        assert_same(ours, theirs)
        got = computed.sel(simulation=receptor.sim_id).item()
        assert got == pytest.approx(theirs.value, rel=1e-6)
        assert got == pytest.approx(ours.value, rel=1e-12)
        outside += int(np.isnan(ours.per_particle).sum())
    assert 0 < outside < len(RECEPTORS) * 50 / 2, "the test needs endpoints on both sides"


def test_unrun_simulations_read_nan_and_bad_asks_fail_before_computing(project, tmp_path):
    model, field, _ = project
    extra = ColumnReceptor(
        time="2019-05-30 07:00", longitude=-111.9, latitude=40.7, bottom=0, top=2000
    )
    copy = shutil.copytree(model.location.root, tmp_path / "project")
    later = Model(copy, [*RECEPTORS, extra], model.config)
    later.register_pending()
    with dask.config.set(scheduler=RaiseIfComputes()):
        result = background(later, field, "xco2")
        with pytest.raises(ConfigError, match="no footprint named 'xc02'"):
            background(later, field, "xc02")
        with pytest.raises(ConfigError, match="'temz' is not a stored particle variable"):
            background(later, FIELDS["zagl"].rename(zagl="temz"), None)
    values = result.compute(scheduler="threads")
    assert np.isnan(values.sel(simulation=extra.sim_id))
    assert np.isfinite(values.sel(simulation=RECEPTORS[0].sim_id))


def test_project_background_on_a_distributed_cluster(project, client):
    # The graph (field, store, transforms) pickles whole, as it must to reach
    # worker processes, and runs on a distributed scheduler's workers.
    _, _, asked = project
    expected = asked["xco2"].compute(scheduler="threads")
    restored = pickle.loads(pickle.dumps(asked["xco2"]))
    np.testing.assert_array_equal(restored.compute(scheduler="sync"), expected)
    np.testing.assert_array_equal(client.compute(asked["xco2"]).result(), expected)


def test_a_compacted_project_gives_the_same_backgrounds(project, tmp_path):
    model, field, asked = project
    copy = Model(shutil.copytree(model.location.root, tmp_path / "project"), config=model.config)
    copy.compact()
    assert not list((tmp_path / "project" / "particles").glob("[!b]*.parquet"))  # all packed
    for name, before in asked.items():
        after = background(copy, field, name).compute(scheduler="threads")
        np.testing.assert_array_equal(after.values, before.compute(scheduler="threads").values)
