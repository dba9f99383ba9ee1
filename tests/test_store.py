"""The project store: layout, completion by key, status, growth and lazy loading."""

from __future__ import annotations

import json
import os

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from numcodecs import Zstd
from store_helpers import (
    RaiseIfComputes,
    chunk_path,
    expected_chunk,
    make_config,
    make_receptors,
    run_synthetic,
)

from pystilt_dask.errors import ConfigError, HysplitError
from pystilt_dask.footprint import Grid
from pystilt_dask.model import Model
from pystilt_dask.store import StoreError, chunks, claims, footprints, layout, publish, records
from pystilt_dask.store.compact import compact
from pystilt_dask.store.paths import Location


@pytest.fixture
def model(tmp_path):
    config = make_config(tmp_path)
    model = Model(tmp_path / "project", make_receptors(6), config)
    model.register_pending()
    return model


def run_all(model, **kwargs):
    return {
        s: run_synthetic(model.location, s, model.config, **kwargs) for s in model.simulations.ids()
    }


def test_layout_after_registration(model):
    root = model.location.root
    assert os.path.isfile(f"{root}/config.yaml")
    assert os.path.isfile(f"{root}/.stilt/registry/000000000.parquet")
    group = zarr.open_group(f"{root}/footprints/coarse.zarr", mode="r")
    foot = group["foot"]
    assert foot.shape == (6, 4, 10, 10)
    assert foot.chunks == (1, 4, 10, 10)
    assert foot.metadata.dimension_names == ("simulation", "lag", "lat", "lon")
    assert np.isnan(foot.fill_value)
    assert foot.metadata.chunk_key_encoding.separator == "."
    assert foot.shards is None
    assert group.attrs["Conventions"] == "CF-1.8"
    assert list(group["lag"][:]) == [-4, -3, -2, -1]
    assert list(group["simulation"][:]) == model.simulations.ids()


def test_registration_is_idempotent_and_appends(model, tmp_path):
    assert model.register_pending() == []
    again = Model(model.location.root, make_receptors(9), model.config)
    new = again.register_pending(scene_id="second")
    assert new == [r.sim_id for r in make_receptors(9)[6:]]
    table = again.registry().table
    assert table["row"].tolist() == list(range(9))
    assert table.index.tolist() == [r.sim_id for r in make_receptors(9)]
    assert table["scene_id"].isna().tolist() == [True] * 6 + [False] * 3
    assert table["scene_id"].iloc[-1] == "second"
    assert list(table["footprints"].iloc[0]) == ["coarse", "fine"]


def test_all_pending_then_complete(model):
    counts = model.status().counts()
    assert counts["pending"] == 6
    assert counts["footprints"]["fine"]["pending"] == 6
    assert run_all(model) == dict.fromkeys(model.simulations.ids(), "complete")
    counts = model.status().counts()
    assert counts == {
        "pending": 0, "running": 0, "complete": 6, "complete-empty": 0, "failed": 0,
        "interrupted": 0,
        "footprints": {
            name: {
                "pending": 0, "running": 0, "complete": 6, "complete-empty": 0, "failed": 0,
                "interrupted": 0,
            }
            for name in ("coarse", "fine")
        },
    }  # fmt: skip
    assert model.simulations.incomplete() == []


def test_lazy_load_equals_footprints_and_computes_nothing(model):
    run_all(model)
    with dask.config.set(scheduler=RaiseIfComputes()):
        foot = model.footprints["coarse"].load()
        ids = model.simulations.ids()
        selected = foot.sel(simulation=ids[2]).isel(lag=slice(1, 3))
    assert foot.dims == ("simulation", "lag", "lat", "lon")
    assert foot.chunks[0] == (1,) * 6
    assert selected.dims == ("lag", "lat", "lon")
    for row, sim_id in enumerate(ids):
        got = foot.isel(simulation=row).values
        np.testing.assert_array_equal(got, expected_chunk(model, sim_id, "coarse"))
        assert got.dtype == np.float32 and got.sum() > 0
    assert foot["receptor_longitude"].values[1] == make_receptors(6)[1].longitude
    assert str(foot["time"].values[0, -1])[:16] == "2023-07-15T17:00"


def test_missing_reads_nan_and_empty_reads_zero(model):
    ids = model.simulations.ids()
    run_synthetic(model.location, ids[0], model.config, outside="all")
    run_synthetic(model.location, ids[1], model.config)
    foot = model.footprints["fine"].load()
    assert float(foot.isel(simulation=0).sum()) == 0.0
    assert not np.isnan(foot.isel(simulation=0)).any()
    assert np.isnan(foot.isel(simulation=2)).all()
    assert float(foot.isel(simulation=1).sum()) > 0


def test_empty_is_terminal_and_known_without_reading_data(model):
    ids = model.simulations.ids()
    state = run_synthetic(model.location, ids[0], model.config, outside="all")
    assert state == "complete-empty"
    half = run_synthetic(model.location, ids[1], model.config, outside="fine")
    assert half == "complete"
    for name in ("coarse", "fine"):  # corrupt the data: status must not read it
        with open(chunk_path(model.location, name, 0), "wb") as f:
            f.write(b"not a chunk")
    table = model.status().table
    assert table.loc[ids[0], "state"] == "complete-empty"
    assert table.loc[ids[1], "state"] == "complete"
    assert table.loc[ids[1], "fine"] == "complete-empty"
    assert table.loc[ids[1], "coarse"] == "complete"
    assert run_synthetic(model.location, ids[0], model.config) == "complete-empty"
    assert ids[0] not in model.simulations.incomplete()


def test_deleting_a_chunk_makes_exactly_that_simulation_pending(model):
    run_all(model)
    ids = model.simulations.ids()
    os.unlink(chunk_path(model.location, "fine", 3))
    table = model.status().table
    assert table.index[table["state"] == "pending"].tolist() == [ids[3]]
    assert table.loc[ids[3], "coarse"] == "complete"
    assert table.loc[ids[3], "fine"] == "pending"
    before = {r: os.stat(chunk_path(model.location, "coarse", r)).st_mtime_ns for r in range(6)}
    assert run_all(model)[ids[3]] == "complete"
    after = {r: os.stat(chunk_path(model.location, "coarse", r)).st_mtime_ns for r in range(6)}
    assert before == after  # complete simulations were skipped, not rewritten
    assert model.status().counts()["complete"] == 6


def test_skip_existing_false_redoes_everything(model):
    run_all(model)
    before = [os.stat(chunk_path(model.location, "coarse", r)).st_mtime_ns for r in range(6)]
    run_all(model, skip_existing=False)
    after = [os.stat(chunk_path(model.location, "coarse", r)).st_mtime_ns for r in range(6)]
    assert all(a > b for a, b in zip(after, before, strict=True))
    assert model.status().counts()["complete"] == 6


def test_growth_keeps_existing_chunks_and_completion(model):
    run_all(model)
    path = chunk_path(model.location, "coarse", 5)
    data, mtime = open(path, "rb").read(), os.stat(path).st_mtime_ns
    model2 = Model(model.location.root, make_receptors(10), model.config)
    assert len(model2.register_pending()) == 4
    assert open(path, "rb").read() == data and os.stat(path).st_mtime_ns == mtime
    counts = model2.status().counts()
    assert (counts["complete"], counts["pending"]) == (6, 4)
    foot = model2.footprints["coarse"].load()
    assert foot.sizes["simulation"] == 10
    assert np.isnan(foot.isel(simulation=9)).all()
    assert str(foot["time"].values[9, 0])[:16] == "2023-07-15T23:00"  # 03:00 - 4 h


def test_failure_record_then_success(model):
    sim_id = model.simulations.ids()[4]
    exc = HysplitError("timeout", "HYSPLIT ran longer than 5 s", "tail of log")
    records.write_failure(model.location, records.failure(exc, sim_id, "trajectory"))
    assert model.simulations.failed() == [sim_id]
    record = json.loads(open(model.location.url(layout.failure_key(sim_id))).read())
    assert record["reason"] == "timeout" and record["log_tail"] == "tail of log"
    assert {"message", "time", "step"} <= set(record)
    assert run_synthetic(model.location, sim_id, model.config) == "complete"
    assert model.simulations.failed() == []
    assert records.read_failure(model.location, sim_id) is None


def test_partial_files_never_count(model):
    run_all(model)
    os.unlink(chunk_path(model.location, "coarse", 2))
    with open(chunk_path(model.location, "coarse", 2)[:-2] + ".0123abcd.partial", "wb") as f:
        f.write(b"half")
    ids = model.simulations.ids()
    os.rename(
        model.location.url(layout.particles_key(ids[1])),
        model.location.url(layout.particles_key(ids[1])) + ".ab.partial",
    )
    assert sorted(model.simulations.incomplete()) == sorted([ids[1], ids[2]])


def test_trajectories(model):
    ids = model.simulations.ids()
    run_synthetic(model.location, ids[0], model.config)
    assert list(model.trajectories.paths()) == [ids[0]]
    table = model.trajectories.load(ids[0])
    assert list(table.columns[:4]) == ["time", "indx", "long", "lati"]
    with pytest.raises(StoreError, match="no stored particles"):
        model.trajectories.load(ids[1])


def test_config_changes_are_checked(model, tmp_path):
    changed = make_config(tmp_path, xres=0.2)
    with pytest.raises(ConfigError, match="other settings"):
        Model(model.location.root, make_receptors(7), changed).register_pending()
    other = make_config(tmp_path, n_hours=-6)
    with pytest.raises(ConfigError, match="hysplit"):
        Model(model.location.root, make_receptors(7), other).register_pending()
    with pytest.raises(ConfigError, match="footprint name"):
        bad = make_config(tmp_path).model_copy(
            update={"footprints": {"a/b": other.footprints["coarse"]}}
        )
        Model(model.location.root, config=bad)


def test_reopen_from_store_and_new_footprint_name(model, tmp_path):
    reopened = Model(model.location.root)
    assert reopened.config == model.config
    assert reopened.status().counts()["pending"] == 6
    with pytest.raises(StoreError, match="config.yaml"):
        Model(tmp_path / "nowhere")
    one = make_config(tmp_path, names=("coarse",))
    run_all(Model(model.location.root, config=one))
    both = Model(model.location.root, make_receptors(6), model.config)
    counts = both.status().counts()
    assert counts["pending"] == 6
    assert counts["footprints"]["coarse"]["complete"] == 6


def test_memory_store_round_trip(tmp_path):
    config = make_config(tmp_path)
    model = Model("memory://store-test/project", make_receptors(3), config)
    ids = model.register_pending()
    run_synthetic(model.location, ids[0], config)
    assert model.status().table["state"].tolist() == ["complete", "pending", "pending"]
    foot = model.footprints["coarse"].load()
    assert foot.sizes["simulation"] == 3
    assert float(foot.isel(simulation=0).sum()) > 0
    assert Location("memory://store-test/project").exists(layout.particles_key(ids[0]))


def test_unknown_simulation_is_a_clear_error(model):
    with pytest.raises(StoreError, match="not registered"):
        run_synthetic(model.location, "nope", model.config)


def test_running_comes_from_live_claims_in_any_process(model):
    ids = model.simulations.ids()
    with claims.hold(model.location, ids[1]) as claim:
        assert claim is not None
        table = Model(model.location.root).status().table  # another view, no client
        assert table.loc[ids[1], "state"] == "running"
        assert table.loc[ids[1], "fine"] == "running"
        assert (table["state"] == "running").sum() == 1
        # A task finding the claim held leaves the simulation to its holder.
        assert run_synthetic(model.location, ids[1], model.config) == "running"
        assert not os.path.exists(model.location.url(layout.particles_key(ids[1])))
    assert model.status().table.loc[ids[1], "state"] == "pending"


def test_an_expired_claim_is_taken_over_by_one_contender(model):
    sim_id = model.simulations.ids()[0]
    dead = claims.acquire(model.location, sim_id, lifetime=-1.0)  # expired at once
    assert dead is not None and not dead.live
    # Started (a claim was taken) and never finished: interrupted, and run again.
    assert model.status().table.loc[sim_id, "state"] == "interrupted"
    taken = claims.acquire(model.location, sim_id)
    assert taken is not None and taken.generation == dead.generation + 1
    assert claims.acquire(model.location, sim_id) is None  # live: nobody else gets it
    assert not model.location.exists(dead.key)
    retry = claims.acquire(model.location, sim_id, run=taken.holder.run)  # same run: a retry
    assert retry is not None and retry.generation == taken.generation + 1
    claims.release(model.location, retry)
    assert claims.current(model.location) == {}


def test_forward_runs_keep_the_last_output_layer(tmp_path):
    config = make_config(tmp_path, names=("coarse",), n_hours=3)
    model = Model(tmp_path / "forward", make_receptors(1), config)
    (sim_id,) = model.register_pending()
    receptor = make_receptors(1)[0]
    grid = Grid.from_config(config.footprints["coarse"])
    values = np.random.default_rng(0).random((4, grid.ny, grid.nx), dtype=np.float32)
    times = pd.Timestamp(receptor.time) + pd.to_timedelta(np.arange(4), unit="h")  # layers 0..3
    coords = {"time": times, "lat": grid.y_centres, "lon": grid.x_centres}
    foot = xr.DataArray(values, dims=("time", "lat", "lon"), coords=coords)
    chunk = footprints.to_chunk(foot, config.footprints["coarse"], config.hysplit, receptor.time)
    publish.publish_footprint(model.location, "coarse", sim_id, 0, chunk, empty=False)
    loaded = model.footprints["coarse"].load().isel(simulation=0)
    assert loaded["lag"].values.tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(loaded.values, foot.values)


def test_loading_a_damaged_chunk_names_its_simulation(model):
    run_all(model)
    ids = model.simulations.ids()
    with open(chunk_path(model.location, "coarse", 3), "r+b") as f:
        f.seek(8)
        f.write(os.urandom(64))
    foot = model.footprints["coarse"].load()
    assert float(foot.isel(simulation=2).sum()) > 0  # the others still read
    with pytest.raises(StoreError, match=f"simulation '{ids[3]}' \\(row 3\\) is damaged"):
        foot.isel(simulation=3).compute()
    report = model.verify()
    assert list(report.damaged) == [ids[3]] and not report.ok


def _as_format_1(model, name):
    """Rewrite footprint ``name``'s array as versions before format 2 made it: no crc32c codec."""
    path = os.path.join(model.location.url(layout.foot_array(name)), "zarr.json")
    meta = json.load(open(path))
    meta["codecs"] = [codec for codec in meta["codecs"] if codec["name"] != "crc32c"]
    meta["codecs"][0] = {"name": "bytes", "configuration": {"endian": "little"}}
    json.dump(meta, open(path, "w"))


def test_a_format_1_array_is_not_packed_and_nothing_is_written(model):
    _as_format_1(model, "fine")
    run_all(model)
    before = sorted(os.listdir(model.location.url(layout.PARTICLES)))
    with pytest.raises(StoreError, match="footprint 'fine' .* format 1"):
        compact(model.location, model.config, model.registry())
    assert sorted(os.listdir(model.location.url(layout.PARTICLES))) == before
    assert not model.location.exists(layout.COMPACT_LOCK)
    coarse = json.loads(model.location.read_bytes(f"{layout.foot_array('coarse')}/zarr.json"))
    assert coarse["codecs"][0]["name"] != "sharding_indexed"


def test_a_format_1_array_keeps_its_digests_and_is_checked_against_them(model, tmp_path):
    _as_format_1(model, "coarse")  # "fine" stays format 2: a store may hold both
    run_all(model)
    ids = model.simulations.ids()
    recorded = json.loads(model.location.read_bytes(layout.checksums_key(ids[2])))
    assert sorted(recorded) == ["footprint:coarse", "particles"]  # nothing for format 2 "fine"
    foot = model.footprints["coarse"].load()
    np.testing.assert_array_equal(
        foot.isel(simulation=2).values, expected_chunk(model, ids[2], "coarse")
    )
    assert model.verify().ok

    # Decodable, but not what was written: its digest says so.
    path = chunk_path(model.location, "coarse", 2)
    values = np.frombuffer(Zstd().decode(open(path, "rb").read()), "<f4") + 1
    open(path, "wb").write(Zstd(level=3).encode(values.tobytes()))
    read = chunks.chunk_reader(footprints.foot_array(model.location, "coarse", read_only=True))
    with pytest.raises(ValueError, match="footprint 'coarse'.*digest"):
        read(model.location, "coarse", 2, ids[2])
    report = model.verify(repair=True)
    assert list(report.damaged) == [ids[2]] and "digest" in report.damaged[ids[2]][0]
    assert run_all(model)[ids[2]] == "complete"
    assert model.verify().ok

    # A footprint added now is format 2 beside it.
    added = make_config(tmp_path, names=("coarse", "fine", "big"))
    Model(model.location.root, make_receptors(6), added).register_pending()
    array = footprints.foot_array(model.location, "big", read_only=True)
    assert chunks.checked(array) and not chunks.checked(
        footprints.foot_array(model.location, "coarse", read_only=True)
    )


def test_verify_removes_keys_nobody_holds_and_empty_markers_that_hold_values(model):
    run_all(model)
    ids = model.simulations.ids()
    location = model.location
    stray_chunk = layout.chunk_key("coarse", 40)
    location.write_bytes(stray_chunk, location.read_bytes(layout.chunk_key("coarse", 1)))
    location.write_bytes(layout.empty_key("fine", "nobody"), b"")
    location.write_bytes(layout.error_particles_key("nobody"), b"not particles")
    location.write_bytes(layout.empty_key("coarse", ids[3]), b"")  # but its chunk holds values

    report = model.verify()
    assert not report.ok and len(report.stray) == 3
    assert list(report.damaged) == [ids[3]]
    assert "marked empty but holds values" in report.damaged[ids[3]][0]
    report = model.verify(repair=True)
    assert "3 stray keys removed" in report.summary()
    for key in (
        stray_chunk,
        layout.empty_key("fine", "nobody"),
        layout.error_particles_key("nobody"),
    ):
        assert not location.exists(key)
    assert model.status().table.loc[ids[3], "coarse"] == "pending"
    assert run_all(model)[ids[3]] == "complete"
    assert model.verify().ok
