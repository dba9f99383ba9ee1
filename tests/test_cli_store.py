"""``stilt-dask register | status | rebuild`` through the Typer app."""

from __future__ import annotations

import json
import os
import time

import pandas as pd
import pytest
from store_helpers import fake_simulation, make_config, make_receptors
from typer.testing import CliRunner

from pystilt_dask.cli import app
from pystilt_dask.model import Model
from pystilt_dask.store import layout

runner = CliRunner()
STATE_KEYS = ["pending", "running", "complete", "complete-empty", "failed"]


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
    fake_simulation(model.location, model.simulations.ids()[0], model.config)
    fake_simulation(model.location, model.simulations.ids()[1], model.config, empty=("fine",))
    result = invoke("status", tmp_path / "project", "--json")
    assert result.exit_code == 0, result.output
    counts = json.loads(result.output)
    assert list(counts) == [*STATE_KEYS, "footprints"]
    assert [counts[k] for k in STATE_KEYS] == [3, 0, 2, 0, 0]
    assert list(counts["footprints"]) == ["coarse", "fine"]
    assert counts["footprints"]["fine"] == dict(zip(STATE_KEYS, [3, 0, 1, 1, 0], strict=True))
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


def test_rebuild_cleans_temporaries_and_restores_the_manifest(config_file, tmp_path):
    invoke("register", config_file)
    model = Model(tmp_path / "project")
    ids = model.simulations.ids()
    for sim_id in ids:
        fake_simulation(model.location, sim_id, model.config)
    stale = model.location.url(layout.chunk_key("coarse", 9))[:-2] + ".deadbeef.partial"
    fresh = model.location.url(layout.particles_key("x")) + ".cafe.partial"
    for path in (stale, fresh):
        open(path, "wb").close()
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    os.unlink(model.location.url(layout.MANIFEST))  # lose the registry
    model.location.write_bytes(layout.failure_key(ids[0]), b"{}")  # superseded record
    result = invoke("rebuild", tmp_path / "project")
    assert result.exit_code == 0, result.output
    assert "removed 1 stale temporary files" in result.output
    assert "re-registered 5 simulations" in result.output
    assert "removed 1 failure records" in result.output
    assert not os.path.exists(stale) and os.path.exists(fresh)
    assert model.simulations.ids() == ids
    assert model.status().counts()["complete"] == 5
