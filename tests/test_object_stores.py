"""One store suite over a local directory, ``memory://`` and S3 (a moto server on loopback).

The same registry commits, claims, completion, status, lazy loading and
verification run on each; the end-to-end test runs real HYSPLIT on the demo's
idealized met through ``Model.run`` on a threads ``LocalCluster`` (``memory://``
is per process).
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from demo_helpers import small_demo
from distributed import Client, LocalCluster
from store_helpers import expected_chunk, make_config, make_receptors, run_synthetic

from pystilt_dask.config import ModelConfig
from pystilt_dask.model import Model
from pystilt_dask.store import claims, layout
from pystilt_dask.store.compact import compact
from pystilt_dask.store.paths import Location

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")
pytest.importorskip("s3fs")


@pytest.fixture(params=["local", "memory", "s3"])
def store(request, tmp_path) -> tuple[str, dict | None]:
    """A fresh project root of each kind, with its storage options."""
    name = uuid.uuid4().hex[:8]
    if request.param == "local":
        return str(tmp_path / name), None
    if request.param == "memory":
        return f"memory://stores/{name}", None
    return f"s3://stilt-test/{name}", request.getfixturevalue("s3_options")


def test_create_if_absent_has_one_winner(store):
    location = Location(*store)
    assert location.create("a/key", b"first")
    assert not location.create("a/key", b"second")
    assert location.read_bytes("a/key") == b"first"
    assert location.list_names("a") == ["key"]
    location.delete("a/key")
    assert not location.exists("a/key") and location.list_names("a") == []


@pytest.mark.parametrize("compacted", [False, True], ids=["unpacked", "compacted"])
def test_store_suite(store, tmp_path, compacted):
    root, options = store
    config = make_config(tmp_path).model_copy(update={"storage_options": options or {}})
    model = Model(root, make_receptors(4), config)
    model.register_pending()
    assert Model(root, make_receptors(5), config).register_pending() == [
        make_receptors(5)[4].sim_id
    ]
    ids = model.simulations.ids()
    assert run_synthetic(model.location, ids[0], config) == "complete"
    assert run_synthetic(model.location, ids[1], config, outside="all") == "complete-empty"
    if compacted:
        report = compact(model.location, config, model.registry())
        assert report.simulations == 2 and not model.location.exists(layout.particles_key(ids[0]))
    with claims.hold(model.location, ids[2]) as claim:
        assert claim is not None
        table = model.status().table
    assert table["state"].tolist() == [
        "complete", "complete-empty", "running", "pending", "pending"
    ]  # fmt: skip
    assert model.status().table["state"].tolist()[2] == "pending"
    foot = model.footprints["coarse"].load()
    assert foot["simulation"].values.tolist() == ids
    np.testing.assert_array_equal(
        foot.isel(simulation=0).values, expected_chunk(model, ids[0], "coarse")
    )
    assert np.isnan(foot.isel(simulation=3).values).all()
    assert model.verify().ok
    if compacted:
        model.location.write_bytes(layout.block_key(layout.PARTICLES, 0), b"not parquet")
    else:
        model.location.write_bytes(layout.particles_key(ids[0]), b"not parquet")
    report = model.verify(repair=True)
    if compacted:  # the block file held both: both are pending
        assert list(report.damaged) == [layout.block_key(layout.PARTICLES, 0), *ids[:2]]
        assert model.status().table["state"].tolist()[:2] == ["pending"] * 2
        assert run_synthetic(model.location, ids[1], config, outside="all") == "complete-empty"
    else:
        assert list(report.damaged) == [ids[0]]
        assert model.status().table["state"].iloc[0] == "pending"
    assert run_synthetic(model.location, ids[0], config) == "complete"
    assert model.verify().ok
    if compacted:
        compact(model.location, config, model.registry())
        foot = model.footprints["coarse"].load()
        np.testing.assert_array_equal(
            foot.isel(simulation=0).values, expected_chunk(model, ids[0], "coarse")
        )
        assert model.status().table["state"].tolist()[:2] == ["complete", "complete-empty"]
        assert model.verify().ok


def test_end_to_end_run(store, tmp_path):
    root, options = store
    config_path = small_demo(tmp_path / "demo", 3)
    config = ModelConfig.from_yaml(config_path).model_copy(
        update={"output": root, "storage_options": options or {}}
    )
    model = Model(root, config_path.with_name("receptors.csv"), config)
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as cluster, Client(cluster) as client:  # fmt: skip
        outcomes = model.run(client=client)
    assert sorted(outcomes.values()) == ["complete"] * 3
    counts = model.status().counts()
    assert counts["complete"] == 3 and counts["pending"] == 0 and counts["running"] == 0
    foot = model.footprints["default"].load()
    assert foot["simulation"].values.tolist() == model.simulations.ids()
    assert float(foot.sum()) > 0
    assert model.verify().ok
