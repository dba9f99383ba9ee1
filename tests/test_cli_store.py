"""``stilt-dask register | status | verify | convolve`` through the Typer app."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from store_helpers import expected_chunk, make_config, make_receptors, run_synthetic
from typer.testing import CliRunner

from pystilt_dask.cli import app
from pystilt_dask.model import Model
from pystilt_dask.store import layout

runner = CliRunner()
STATE_KEYS = ["pending", "running", "complete", "complete-empty", "failed", "interrupted"]


@pytest.fixture
def config_file(tmp_path):
    receptors = make_receptors(5)
    pd.DataFrame(
        {
            "time": [r.time.isoformat() for r in receptors],
            "longitude": [r.longitude for r in receptors],
            "latitude": [r.latitude for r in receptors],
            "altitude": [r.altitude for r in receptors],
        }
    ).to_csv(tmp_path / "receptors.csv", index=False)
    path = tmp_path / "config.yaml"
    make_config(tmp_path).model_copy(update={"output": "project"}).to_yaml(path)
    return path


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_register_status_json(config_file, tmp_path):
    result = invoke("register", config_file)
    assert result.exit_code == 0, result.output
    assert "registered 5 new simulations (5 in total)" in result.output
    assert "registered 0 new" in invoke("register", config_file).output
    model = Model(tmp_path / "project")
    run_synthetic(model.location, model.simulations.ids()[0], model.config)
    run_synthetic(model.location, model.simulations.ids()[1], model.config, outside="fine")
    result = invoke("status", tmp_path / "project", "--json")
    assert result.exit_code == 0, result.output
    counts = json.loads(result.output)
    # A store given alone has no receptor table: nothing waits to be registered.
    assert list(counts) == [*STATE_KEYS, "footprints", "unregistered", "claims"]
    assert [counts[k] for k in STATE_KEYS] == [3, 0, 2, 0, 0, 0] and counts["unregistered"] == 0
    assert list(counts["footprints"]) == ["coarse", "fine"]
    assert counts["footprints"]["fine"] == dict(zip(STATE_KEYS, [3, 0, 1, 1, 0, 0], strict=True))
    table = invoke("status", config_file).output
    assert "complete-empty" in table and "footprint fine" in table


def test_register_more_receptors_from_option(config_file, tmp_path):
    invoke("register", config_file)
    more = tmp_path / "more.csv"
    pd.read_csv(tmp_path / "receptors.csv").iloc[:2].assign(altitude=50).to_csv(more, index=False)
    result = invoke("register", tmp_path / "project", "--receptors", more, "--scene-id", "extra")
    assert "registered 2 new simulations (7 in total)" in result.output


def test_bad_input_is_one_line(tmp_path, config_file):
    result = invoke("status", tmp_path / "nowhere")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    (tmp_path / "receptors.csv").write_text("time,longitude,latitude,altitude\nnot a time,1,2,3\n")
    result = invoke("register", config_file)
    assert result.exit_code == 2
    assert "row 1" in result.stderr and result.stderr.count("\n") == 1


def snapshot(root) -> dict[str, bytes]:
    """Every result file of a project (particles, chunks), by path."""
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if "/particles/" in path or "/foot/c." in path:
                found[os.path.relpath(path, root)] = open(path, "rb").read()
    return found


def test_verify_names_damage_and_repair_plus_run_restores_identical_results(config_file, tmp_path):
    invoke("register", config_file)
    more = tmp_path / "more.csv"
    pd.read_csv(tmp_path / "receptors.csv").assign(altitude=50).to_csv(more, index=False)
    invoke("register", tmp_path / "project", "--receptors", more)  # a second registry commit
    model = Model(tmp_path / "project")
    ids = model.simulations.ids()
    for sim_id in ids:
        run_synthetic(model.location, sim_id, model.config)
    assert invoke("verify", config_file).exit_code == 0
    good = snapshot(model.location.root)

    # Lose registry entries (the commit and its copy), corrupt a chunk, truncate a particle file.
    first, second = model.location.url(layout.registry_key(0)), layout.registry_key(1)
    os.unlink(first)  # rows 0-4 lost
    os.unlink(model.location.url(layout.registry_copy_key(0)))  # the registrant wrote it
    chunk = model.location.url(layout.chunk_key("fine", 6))
    data = bytearray(open(chunk, "rb").read())
    data[len(data) // 2 :] = os.urandom(len(data) - len(data) // 2)
    open(chunk, "wb").write(bytes(data))
    particles = model.location.url(layout.particles_key(ids[8]))
    open(particles, "r+b").truncate(100)
    assert model.location.exists(second)
    # Status lists keys and reads none (finding damage is verify's job); the
    # simulations whose entries are lost are not reported at all, not mislabelled.
    assert Model(tmp_path / "project").status().table.index.tolist() == ids[5:]

    result = invoke("verify", config_file)
    assert result.exit_code == 1
    for sim_id in (*ids[:5], ids[6], ids[8]):
        assert sim_id in result.output
    assert "registry entry is lost" in result.output
    assert "checked 10 simulations: 7 damaged" in result.output

    assert invoke("verify", config_file, "--repair").exit_code == 0
    assert model.simulations.ids() == ids  # restored at their rows
    assert invoke("verify", config_file).exit_code == 0
    assert sorted(model.simulations.incomplete()) == [ids[6], ids[8]]
    for sim_id in model.simulations.incomplete():
        assert run_synthetic(model.location, sim_id, model.config) == "complete"
    assert snapshot(model.location.root) == good


def test_rows_reused_after_a_lost_commit_never_mislabel(config_file, tmp_path):
    invoke("register", config_file)
    model = Model(tmp_path / "project")
    old = model.simulations.ids()
    for sim_id in old:
        run_synthetic(model.location, sim_id, model.config)
    os.unlink(model.location.url(layout.registry_key(0)))  # the only commit: rows 0-4 lost
    newcomers = make_receptors(8)[5:]
    assert Model(tmp_path / "project", newcomers).register_pending()
    # The newcomers took rows 0-2, whose chunks hold the old simulations' footprints.
    assert model.registry().rows.tolist() == [0, 1, 2]
    assert set(model.status().table["state"]) == {"pending"}
    report = model.verify(repair=True)
    assert sorted(report.damaged) == sorted([*old, *(r.sim_id for r in newcomers)])
    assert sorted(model.simulations.ids()) == sorted([*old, *(r.sim_id for r in newcomers)])
    for sim_id in model.simulations.incomplete():
        assert run_synthetic(model.location, sim_id, model.config) == "complete"
    assert model.verify().ok
    foot = model.footprints["fine"].load()
    for sim_id in model.simulations.ids():
        expected = expected_chunk(model, sim_id, "fine")
        np.testing.assert_array_equal(foot.sel(simulation=sim_id).values, expected)


def test_convolve_writes_one_enhancement_per_simulation(config_file, tmp_path):
    assert invoke("register", config_file).exit_code == 0
    model = Model(tmp_path / "project")
    done = model.simulations.ids()[:2]
    for sim_id in done:
        run_synthetic(model.location, sim_id, model.config)
    foot = model.footprints["coarse"].load()
    # A flux varying in space only: the enhancement is Σ footprint × flux over cells and hours.
    flux = xr.DataArray(
        np.random.default_rng(0).random((foot.sizes["lat"], foot.sizes["lon"])),
        coords={"lat": foot["lat"], "lon": foot["lon"]}, dims=("lat", "lon"), name="co2_flux",
    )  # fmt: skip
    flux.to_netcdf(tmp_path / "flux.nc")
    out = tmp_path / "enhancement.csv"
    args = ("convolve", config_file, tmp_path / "flux.nc", "--footprint", "coarse", "--out", out)
    result = invoke(*args)
    assert result.exit_code == 1, result.output  # 3 of 5 simulations are not computed
    assert "3 of 5 simulations have no computed footprint 'coarse'" in result.output
    table = pd.read_csv(out, index_col="simulation")
    assert list(table.index) == model.simulations.ids()
    for sim_id in done:
        stored = foot.sel(simulation=sim_id).values.astype(np.float64)
        expected = (stored * flux.values).sum()
        np.testing.assert_allclose(table.loc[sim_id, "enhancement"], expected, rtol=1e-6)
    assert table["enhancement"].isna().sum() == 3

    result = invoke("convolve", config_file, tmp_path / "flux.nc", "--footprint", "nope")
    assert result.exit_code == 2 and "no footprint named 'nope'" in result.output
    flux.rename({"lat": "y"}).to_netcdf(tmp_path / "bad.nc")
    result = invoke("convolve", config_file, tmp_path / "bad.nc", "--footprint", "coarse")
    assert result.exit_code == 2 and "flux dimensions must be" in result.output
