"""R-STILT export from the store: equal to a fresh export, R-STILT's names, the CLI.

One project is run once (real ``hycs_std`` on idealized met, a real LocalCluster)
with point receptors and five footprints: hourly and time-integrated longlat
grids, the hourly grid again as ``EPSG:4326``, a UTM grid (``EPSG:32612``), and a
grid the particles never reach (empty). A receptor
registered after the run stays pending.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import fsspec
import netCDF4
import numpy as np
import pytest
import xarray as xr
from distributed import Client, LocalCluster
from footprint_helpers import read_rstilt_particles, shared_dir
from typer.testing import CliRunner

from pystilt_dask.cli import app
from pystilt_dask.config import ModelConfig
from pystilt_dask.errors import StoreError
from pystilt_dask.footprint import calc_footprint, to_rstilt_netcdf
from pystilt_dask.model import Model
from pystilt_dask.receptors import ColumnReceptor, PointReceptor
from pystilt_dask.simulation import run_simulation
from pystilt_dask.trajectory import Trajectories

BOX = {"xmin": -112.3, "xmax": -111.5, "ymin": 40.4, "ymax": 41.0}
GRIDS = {
    "hourly": {**BOX, "xres": 0.01, "yres": 0.02},
    "total": {**BOX, "xres": 0.02, "time_integrate": True},
    "epsg": {**BOX, "xres": 0.01, "yres": 0.02, "projection": "EPSG:4326"},
    "utm": {**BOX, "xres": 2000.0, "projection": "EPSG:32612"},
    "far": {"xmin": -100.0, "xmax": -99.0, "ymin": 40.0, "ymax": 41.0, "xres": 0.1},
}
RECEPTORS = [
    PointReceptor(time=f"2019-05-30 {hour:02d}:00", longitude=lon, latitude=40.766, altitude=5)
    for hour, lon in ((10, -111.848), (9, -111.9))
]
PENDING = PointReceptor(time="2019-05-30 11:00", longitude=-111.8, latitude=40.7, altitude=5)
runner = CliRunner()


@pytest.fixture(scope="module")
def config(idealized_met) -> ModelConfig:
    return ModelConfig.from_dict(
        {
            "mets": {"idealized": idealized_met},
            "hysplit": {"n_hours": -3, "numpar": 50, "seed": 11},
            "footprints": GRIDS,
        }
    )


@pytest.fixture(scope="module")
def model(tmp_path_factory, config) -> Model:
    """The project, run once; ``PENDING`` registered afterwards and never run."""
    root = tmp_path_factory.mktemp("export") / "project"
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, resources={"hysplit": 1}, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", UserWarning)  # the UTM grid's smoothing warning
        model = Model(root, RECEPTORS, config)
        assert set(model.run(client=client, quiet=True).values()) == {"complete"}
    Model(root, [*RECEPTORS, PENDING], config).register_pending()
    return Model(root)


def fresh_export(model: Model, name: str, receptor: PointReceptor, path: Path) -> None:
    """The file ``to_rstilt_netcdf`` writes for ``calc_footprint`` of the stored particles."""
    particles = model.trajectories.load(receptor.sim_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        foot = calc_footprint(particles, receptor, model.config.footprints[name])
    to_rstilt_netcdf(foot, path)


def assert_same_file(path: Path, reference: Path) -> None:
    """Equal dims, variables (names, dims, dtypes, attributes, bytes) and global attributes."""
    with netCDF4.Dataset(path) as ours, netCDF4.Dataset(reference) as ref:
        assert {k: len(v) for k, v in ours.dimensions.items()} == {
            k: len(v) for k, v in ref.dimensions.items()
        }
        assert list(ours.variables) == list(ref.variables)
        for name, var in ref.variables.items():
            mine = ours[name]
            mine.set_auto_maskandscale(False)
            var.set_auto_maskandscale(False)
            assert (mine.dimensions, mine.dtype) == (var.dimensions, var.dtype)
            assert mine.__dict__ == var.__dict__
            assert mine[...].tobytes() == var[...].tobytes(), name
        globals_ours, globals_ref = ours.__dict__, ref.__dict__
        assert globals_ours.keys() == globals_ref.keys()
        assert {k: v for k, v in globals_ours.items() if k != "time_created"} == {
            k: v for k, v in globals_ref.items() if k != "time_created"
        }


@pytest.mark.parametrize("name", ["hourly", "total", "epsg", "utm"])
@pytest.mark.parametrize("receptor", RECEPTORS, ids=lambda r: r.sim_id)
def test_stored_export_equals_fresh_export(model, name, receptor, tmp_path):
    stored, fresh = tmp_path / "stored.nc", tmp_path / "fresh.nc"
    model.footprints[name].to_rstilt_netcdf(receptor.sim_id, stored)
    fresh_export(model, name, receptor, fresh)
    assert_same_file(stored, fresh)
    with netCDF4.Dataset(stored) as nc:
        assert nc["foot"][:].sum() > 0


def test_export_opens_in_xarray_with_rstilt_names(model, tmp_path):
    sim_id = RECEPTORS[0].sim_id
    for name in GRIDS:
        if name != "far":
            model.footprints[name].to_rstilt_netcdf(sim_id, tmp_path / f"{name}.nc")
    hourly = xr.open_dataset(tmp_path / "hourly.nc")
    assert hourly["foot"].dims == ("time", "lat", "lon")
    assert hourly["foot"].attrs["units"] == "ppm (umol-1 m2 s)"
    assert hourly["foot"].dtype == np.float32
    assert (hourly["lon"].attrs["units"], hourly["lat"].attrs["units"]) == (
        "degrees_east",
        "degrees_north",
    )
    assert hourly.attrs["crs"] == "+proj=longlat"
    # Backward hourly layers, each the start of its hour before the receptor time.
    assert (hourly["time"].values < np.datetime64(RECEPTORS[0].time)).all()
    stored = model.footprints["hourly"].load().sel(simulation=sim_id)
    reached = stored.swap_dims(lag="time").sel(time=hourly["time"].values)
    np.testing.assert_array_equal(hourly["foot"].values, reached.values)
    total = xr.open_dataset(tmp_path / "total.nc")
    assert total["time"].values.tolist() == [np.datetime64(RECEPTORS[0].time, "ns").item()]
    epsg = xr.open_dataset(tmp_path / "epsg.nc")
    assert epsg["foot"].dims == ("time", "lat", "lon")  # EPSG:4326 is a longlat grid
    assert epsg.attrs["crs"] == "+proj=longlat +datum=WGS84 +no_defs"
    xr.testing.assert_identical(epsg.drop_attrs(), hourly.drop_attrs())
    utm = xr.open_dataset(tmp_path / "utm.nc")
    assert utm["foot"].dims == ("time", "y", "x")
    assert utm["x"].attrs["units"] == utm["y"].attrs["units"] == "m"
    assert utm.attrs["crs"] == "+proj=utm +zone=12 +datum=WGS84 +units=m +no_defs"
    assert utm["foot"].attrs["grid_mapping"] == "projection"
    assert utm["projection"].attrs["grid_mapping_name"] == "transverse_mercator"


def test_export_refuses_what_has_no_file(model, tmp_path):
    path = tmp_path / "x.nc"
    with pytest.raises(StoreError, match=rf"not computed yet for '{PENDING.sim_id}'"):
        model.footprints["hourly"].to_rstilt_netcdf(PENDING.sim_id, path)
    with pytest.raises(StoreError, match="R-STILT writes no file for an empty footprint"):
        model.footprints["far"].to_rstilt_netcdf(RECEPTORS[0].sim_id, path)
    with pytest.raises(StoreError, match="no simulation 'nope'"):
        model.footprints["hourly"].to_rstilt_netcdf("nope", path)
    assert not path.exists()


def test_a_loaded_simulation_is_written_directly(model, tmp_path):
    loaded = model.footprints["total"].load()
    direct = tmp_path / "direct.nc"
    to_rstilt_netcdf(loaded.sel(simulation=RECEPTORS[0].sim_id), direct)
    fresh_export(model, "total", RECEPTORS[0], tmp_path / "fresh.nc")
    assert_same_file(direct, tmp_path / "fresh.nc")
    with pytest.raises(ValueError, match="select one simulation first"):
        to_rstilt_netcdf(loaded, tmp_path / "all.nc")
    with pytest.raises(ValueError, match=f"'{PENDING.sim_id}' has no computed footprint"):
        to_rstilt_netcdf(loaded.sel(simulation=PENDING.sim_id), tmp_path / "pending.nc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["direct.nc", "fresh.nc"]


def test_export_to_an_fsspec_url(model, tmp_path):
    sim_id = RECEPTORS[1].sim_id
    model.footprints["hourly"].to_rstilt_netcdf(sim_id, f"memory://export/{sim_id}_foot.nc")
    copy = tmp_path / "copy.nc"
    with fsspec.open(f"memory://export/{sim_id}_foot.nc", "rb") as f:
        copy.write_bytes(f.read())
    fresh_export(model, "hourly", RECEPTORS[1], tmp_path / "fresh.nc")
    assert_same_file(copy, tmp_path / "fresh.nc")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_cli_exports_every_complete_simulation_and_names_the_rest(model, tmp_path):
    out = tmp_path / "out"
    result = invoke("export", model.location.root, "--footprint", "hourly", out)
    assert result.exit_code == 1, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{r.sim_id}_foot.nc" for r in RECEPTORS)
    assert "wrote 2 files" in result.stdout
    assert f"not computed yet: {PENDING.sim_id}" in result.stderr
    fresh_export(model, "hourly", RECEPTORS[0], tmp_path / "fresh.nc")
    assert_same_file(out / f"{RECEPTORS[0].sim_id}_foot.nc", tmp_path / "fresh.nc")

    empty = invoke("export", model.location.root, "--footprint", "far", tmp_path / "far")
    assert "skipped 2 empty footprints" in empty.stdout
    assert list((tmp_path / "far").iterdir()) == []


def test_cli_named_ids_are_all_or_nothing(model, tmp_path):
    one = invoke(
        "export", model.location.root, "--footprint", "utm", "--ids", RECEPTORS[1].sim_id,
        tmp_path / "one",
    )  # fmt: skip
    assert one.exit_code == 0, one.output
    assert [p.name for p in (tmp_path / "one").iterdir()] == [f"{RECEPTORS[1].sim_id}_foot.nc"]
    refused = invoke(
        "export", model.location.root, "--footprint", "hourly",
        "--ids", RECEPTORS[0].sim_id, "--ids", PENDING.sim_id, tmp_path / "none",
    )  # fmt: skip
    assert refused.exit_code == 2
    assert f"not computed yet for '{PENDING.sim_id}'" in refused.stderr
    assert not (tmp_path / "none").exists()
    unknown = invoke("export", model.location.root, "--footprint", "nope", tmp_path / "x")
    assert unknown.exit_code == 2
    assert "no footprint named 'nope'" in unknown.stderr


#: R-STILT's own runs in ../shared/rstilt_by_id, with the grids R-STILT used.
RSTILT_BOX = {"xmin": -112.2, "xmax": -111.6, "ymin": 40.6, "ymax": 41.0}
RSTILT = {
    "201507050000_-111.85_40.77_5": (
        PointReceptor(time="2015-07-05 00:00", longitude=-111.85, latitude=40.77, altitude=5),
        {**RSTILT_BOX, "xres": 0.02, "yres": 0.025},
    ),
    "201507051800_-111.9_40.7_X": (
        ColumnReceptor(
            time="2015-07-05 18:00:30", longitude=-111.9, latitude=40.7, bottom=0, top=1000
        ),
        {**RSTILT_BOX, "xres": 0.02, "time_integrate": True},
    ),
}


@pytest.mark.parametrize("sim_id", RSTILT)
def test_exported_store_matches_rstilt_own_file(sim_id, tmp_path):
    """R-STILT's particles, stored and exported, give R-STILT's file (names, layout, values)."""
    golden = shared_dir("rstilt_by_id") / sim_id / f"{sim_id}_foot.nc"
    receptor, grid = RSTILT[sim_id]
    particles = read_rstilt_particles(sim_id)

    def replay(receptor, config, met):  # R-STILT's particles in place of HYSPLIT
        return Trajectories(particles, None, "R-STILT run\n", ())

    config = ModelConfig.from_dict(
        {
            "mets": {"unused": {"directory": str(tmp_path), "file_format": "%Y%m%d"}},
            "hysplit": {"n_hours": -2},
            "footprints": {"rstilt": grid},
        }
    )
    model = Model(tmp_path / "project", [receptor], config)
    # R-STILT's id for the point; the column's carries its seconds and extent (…_X0-1000).
    assert model.register_pending() == [receptor.sim_id]
    assert run_simulation(model.location, receptor.sim_id, config, simulate=replay) == "complete"
    result = invoke("export", tmp_path / "project", "--footprint", "rstilt", tmp_path / "out")
    assert result.exit_code == 0, result.output
    ours = tmp_path / "out" / f"{receptor.sim_id}_foot.nc"
    with netCDF4.Dataset(ours) as nc, netCDF4.Dataset(golden) as ref:
        assert nc.data_model == ref.data_model
        assert list(nc.dimensions) == list(ref.dimensions)
        assert list(nc.variables) == list(ref.variables)
        for name, var in ref.variables.items():
            assert (nc[name].dimensions, nc[name].dtype) == (var.dimensions, var.dtype)
            assert nc[name].__dict__ == var.__dict__
            np.testing.assert_allclose(nc[name][:], var[:], rtol=1e-7, atol=0)
        assert nc.__dict__.keys() == ref.__dict__.keys()
        for key in ("crs", "crs_format", "documentation", "title"):
            assert nc.getncattr(key) == ref.getncattr(key)
