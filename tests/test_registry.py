"""Registration as a commit: concurrent registrants, the one row mapping, settings changes."""

from __future__ import annotations

import io
import multiprocessing
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import xarray as xr
import zarr
import zarr.storage
from store_helpers import expected_chunk, make_config, make_receptors, run_synthetic
from zarr.core.buffer import default_buffer_prototype

from pystilt_dask.errors import ConfigError, ReceptorError, StoreError
from pystilt_dask.model import Model
from pystilt_dask.receptors import MultiPointReceptor
from pystilt_dask.store import footprints, layout, registry

TRIALS = 8
REGISTRANTS = 4


def _register(barrier, roots, receptors, config, results) -> None:
    for root in roots:
        barrier.wait()  # every registrant starts each trial at the same instant
        results.put((root, Model(root, receptors, config).register_pending()))


@pytest.mark.slow
def test_concurrent_registrants_register_every_receptor_exactly_once(tmp_path):
    config = make_config(tmp_path)
    receptors = make_receptors(20)
    # Overlapping sets: receptors 3..7 are in two registrants' tables, and so on.
    subsets = [receptors[3 * k : 3 * k + 8] for k in range(REGISTRANTS)]
    roots = [str(tmp_path / f"trial{t}") for t in range(TRIALS)]
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(REGISTRANTS), ctx.Queue()
    processes = [
        ctx.Process(target=_register, args=(barrier, roots, subset, config, results))
        for subset in subsets
    ]
    for process in processes:
        process.start()
    reported = [results.get(timeout=300) for _ in range(TRIALS * REGISTRANTS)]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    expected = {r.sim_id for subset in subsets for r in subset}
    for root in roots:
        new = [sim_id for where, ids in reported if where == root for sim_id in ids]
        assert sorted(new) == sorted(expected)  # each registered by exactly one registrant
        model = Model(root)
        table = model.registry().table
        assert sorted(table.index) == sorted(expected)
        assert table["row"].tolist() == list(range(len(expected)))
        ids = table.index.tolist()
        for name in ("coarse", "fine"):
            assert model.footprints[name].load()["simulation"].values.tolist() == ids
            plain = xr.open_zarr(f"{root}/footprints/{name}.zarr", consolidated=False)
            assert plain["simulation"].values.tolist() == ids
            assert plain["foot"].sizes["simulation"] == len(ids)
    # Footprints written afterwards read back under the right ids.
    model = Model(roots[0])
    for sim_id in model.simulations.ids():
        assert run_synthetic(model.location, sim_id, model.config) == "complete"
    foot = model.footprints["fine"].load()
    for sim_id in model.simulations.ids():
        got = foot.sel(simulation=sim_id).values
        np.testing.assert_array_equal(got, expected_chunk(model, sim_id, "fine"))


def test_a_registrant_that_loses_a_commit_race_takes_the_next_version(tmp_path):
    config = make_config(tmp_path)
    model = Model(tmp_path / "p", make_receptors(3), config)
    model.register_pending()
    # Another registrant commits version 1 between this one's read and its commit.
    stale = registry.read(model.location)
    other = make_receptors(5)[3:]
    assert registry.commit(model.location, [
        registry.record(r, stale.next_row + i, "synthetic", ["coarse"], None, stale.table[
            "registered"].iloc[0]) for i, r in enumerate(other)
    ])  # fmt: skip
    new, committed = registry.register(model.location, make_receptors(6), "synthetic", ["coarse"])
    assert new == [make_receptors(6)[5].sim_id]
    assert committed.version == 2 and committed.row(new[0]) == 5
    assert registry.versions(model.location) == [0, 1, 2]


def test_run_control_settings_may_change_but_result_settings_may_not(tmp_path):
    config = make_config(tmp_path)
    Model(tmp_path / "p", make_receptors(2), config).register_pending()
    hysplit = config.hysplit.model_copy(update={"timeout": 5.0, "executable": "/opt/hycs_std"})
    relaxed = config.model_copy(update={"hysplit": hysplit})
    assert Model(tmp_path / "p", make_receptors(3), relaxed).register_pending()
    assert Model(tmp_path / "p").config.hysplit.timeout == 5.0
    changed = config.model_copy(
        update={"hysplit": config.hysplit.model_copy(update={"numpar": 99})}
    )
    with pytest.raises(ConfigError, match=r"hysplit.numpar: 10 → 99.*new project"):
        Model(tmp_path / "p", make_receptors(4), changed).register_pending()


def test_the_registry_layout(tmp_path):
    model = Model(tmp_path / "p", make_receptors(2), make_config(tmp_path))
    model.register_pending()
    assert model.location.exists(layout.registry_key(0))
    assert layout.registry_key(12) == ".stilt/registry/000000012.parquet"


def test_receptors_that_share_an_id_without_being_the_same_are_refused(tmp_path):
    model = Model(tmp_path / "p", make_receptors(1), make_config(tmp_path))
    model.register_pending()
    # Multipoint ids round points to 1e-5 degrees: these two are apart, their ids are not.
    one, other = (
        MultiPointReceptor(time="2023-07-15 18:00", longitudes=[-111.8, lon], latitudes=[40.7] * 2,
                           altitudes=[5, 5])
        for lon in (-111.9, -111.9000001)
    )  # fmt: skip
    assert one.sim_id == other.sim_id and one != other
    with pytest.raises(ReceptorError, match=rf"^two receptors have one simulation id {one.sim_id}"):
        registry.register(model.location, [one, other], "synthetic", ["coarse"])
    assert registry.register(model.location, [one], "synthetic", ["coarse"])[0] == [one.sim_id]
    with pytest.raises(
        ReceptorError, match=rf"^simulation {one.sim_id} is registered as .*-111\.9\]"
    ):
        registry.register(model.location, [other], "synthetic", ["coarse"])
    # The same points in another order are the same receptor.
    again = MultiPointReceptor(time="2023-07-15 18:00", longitudes=[-111.9, -111.8],
                               latitudes=[40.7] * 2, altitudes=[5, 5])  # fmt: skip
    assert registry.register(model.location, [again], "synthetic", ["coarse"])[0] == []
    assert registry.versions(model.location) == [0, 1]


def _history(location, receptors, start: int = 0) -> list[str]:
    """Commit one receptor per version from row ``start``, as one-receptor registrations do."""
    now = datetime.now(UTC)
    for row, receptor in enumerate(receptors, start=start):
        record = registry.record(receptor, row, "m", ["coarse"], None, now)
        assert registry.commit(location, [record])
    return [r.sim_id for r in receptors]


def test_a_read_takes_the_newest_checkpoint_and_the_commits_after_it(tmp_path):
    location = Model(tmp_path / "p", [], make_config(tmp_path)).location
    ids = _history(location, make_receptors(200))
    assert registry.checkpoints(location) == [63, 127, 191]
    assert registry.versions(location) == list(range(200))  # checkpoints are not versions
    whole = registry.read(location)
    assert whole.sim_ids == ids and whole.version == 199
    assert whole.rows.tolist() == list(range(200))
    # A checkpoint that cannot be read is skipped: an older one and the commits serve.
    good = location.read_bytes(layout.checkpoint_key(191))
    location.write_bytes(layout.checkpoint_key(191), b"not parquet")
    assert registry.read(location).entries.equals(whole.entries)
    location.write_bytes(layout.checkpoint_key(191), good)
    # Without the commits the newest checkpoint holds, a read is the same: it reads
    # one checkpoint and the 8 commits after it.
    for version in range(192):
        location.delete(layout.registry_key(version))
    read = registry.read(location)
    assert read.entries.equals(whole.entries) and read.version == 199
    # Registering goes on from there.
    more = make_receptors(201)[200:]
    new, committed = registry.register(location, more, "m", ["coarse"])
    assert new == [more[0].sim_id] and committed.row(new[0]) == 200 and committed.version == 200


def test_checkpoints_are_the_same_bytes_whoever_writes_them(tmp_path):
    location = Model(tmp_path / "p", [], make_config(tmp_path)).location
    _history(location, make_receptors(70))
    key = layout.checkpoint_key(63)
    written = location.read_bytes(key)
    # A reader finding 64 commits after the newest checkpoint writes the missing one.
    location.delete(key)
    registry.read(location)
    assert location.read_bytes(key) == written
    # Two writers at once: one creates it, both would have written the same bytes.
    location.delete(key)
    states = [registry.read(location, only=range(64)) for _ in range(2)]
    barrier = threading.Barrier(2)

    def write(state):
        barrier.wait()
        return registry.write_checkpoint(location, state)

    with ThreadPoolExecutor(2) as pool:
        created = list(pool.map(write, states))
    assert sorted(created) == [False, True]
    assert location.read_bytes(key) == written
    assert [n for n in os.listdir(location.url(layout.REGISTRY)) if "partial" in n] == []


def test_each_commit_has_a_copy_that_restores_it(tmp_path):
    location = Model(tmp_path / "p", [], make_config(tmp_path)).location
    receptors = make_receptors(66)
    for receptor in receptors[:3]:  # registrants write copies, as repair's commits do
        registry.register(location, [receptor], "m", ["coarse"])
    _history(location, receptors[3:], start=3)
    for version in registry.versions(location):
        commit = location.read_bytes(layout.registry_key(version))
        assert location.read_bytes(layout.registry_copy_key(version)) == commit
        assert registry.recover_commit(location, version) == commit
    # Without its copy, a commit's entries come from a checkpoint holding its version.
    expected = registry.read_commit(location, 5)
    location.delete(layout.registry_copy_key(5))
    recovered = pq.read_table(io.BytesIO(registry.recover_commit(location, 5))).to_pandas()
    pd.testing.assert_frame_equal(recovered, expected)
    location.delete(layout.registry_copy_key(65))  # after the last checkpoint
    with pytest.raises(StoreError, match="000000065.parquet has no readable copy"):
        registry.recover_commit(location, 65)


def _flips(data: bytes, column: int):
    """``data`` with one byte flipped, for every byte of a column chunk of its first row group."""
    chunk = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0).column(column)
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    for position in range(start, start + chunk.total_compressed_size):
        damaged = bytearray(data)
        damaged[position] ^= 0xFF
        yield bytes(damaged)


def test_a_damaged_commit_or_checkpoint_is_never_read_as_entries(tmp_path):
    # Pages carry their CRC-32 and readers check it: without that, 16 of the 268
    # flips of this commit's sim_id pages still decoded, to other ids.
    location = Model(tmp_path / "p", [], make_config(tmp_path)).location
    registry.register(location, make_receptors(20), "m", ["coarse"])
    whole = registry.read(location)
    state = registry.Registry(whole.entries, 63)  # a checkpoint of the same entries
    registry.write_checkpoint(location, state)
    for key, read in (
        (layout.registry_key(0), lambda: registry.read(location, only=[0]).entries),
        (layout.checkpoint_key(63), lambda: registry.read_checkpoint(location, 63)),
    ):
        good = location.read_bytes(key)
        for damaged in _flips(good, column=0):
            location.write_bytes(key, damaged)
            try:
                entries = read()
            except StoreError:
                continue
            # A flip in a page header outside the data (statistics) changes no entry.
            assert entries.equals(whole.entries)
        location.write_bytes(key, good)


def test_plain_readers_see_the_registry_and_only_new_blocks_are_written(tmp_path, monkeypatch):
    monkeypatch.setattr(footprints, "COORD_CHUNK", 4)  # blocks of 4 rows: 10 rows are 3
    config = make_config(tmp_path, names=("coarse",))
    receptors = make_receptors(11)
    model = Model(tmp_path / "p", receptors[:10], config)
    model.register_pending()
    group = tmp_path / "p" / layout.footprint_group("coarse")

    def plain() -> xr.Dataset:
        return xr.open_zarr(group, consolidated=False)

    def inodes() -> list[int]:
        return [os.stat(group / "simulation" / "c" / str(k)).st_ino for k in range(3)]

    assert plain()["simulation"].values.tolist() == [r.sim_id for r in receptors[:10]]
    first = pd.DatetimeIndex([r.time for r in receptors[:10]])
    np.testing.assert_array_equal(plain()["time"].values[:, -1], first - pd.Timedelta("1h"))
    before = inodes()
    Model(tmp_path / "p", receptors, config).register_pending()
    after = inodes()
    # Blocks 0 and 1 were described already; block 2 gained row 10.
    assert after[:2] == before[:2] and after[2] != before[2]
    assert plain()["simulation"].values.tolist() == [r.sim_id for r in receptors]
    assert plain()["foot"].sizes["simulation"] == 11
    # A registration that adds nothing writes nothing.
    Model(tmp_path / "p", receptors, config).register_pending()
    assert inodes() == after


def test_coordinate_chunks_are_the_bytes_zarr_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(footprints, "COORD_CHUNK", 4)  # 10 rows: 2 whole blocks, 1 partial
    config = make_config(tmp_path, names=("coarse",))
    receptors = make_receptors(10)
    Model(tmp_path / "p", receptors, config).register_pending()
    group = zarr.open_group(tmp_path / "p" / layout.footprint_group("coarse"), mode="r")
    for name in ("simulation", "time"):
        stored = group[name]
        again = zarr.create_array(
            zarr.storage.MemoryStore(),
            shape=stored.shape,
            chunks=stored.chunks,
            dtype=stored.dtype,
            compressors=stored.compressors,
            fill_value=stored.fill_value,
        )
        again[...] = stored[...]  # written by zarr itself
        for k in range(3):
            key = stored.metadata.encode_chunk_key((k, 0)[: stored.ndim])
            written = (tmp_path / "p" / layout.footprint_group("coarse") / name / key).read_bytes()
            assert (
                written
                == zarr.core.sync.sync(again.store.get(key, default_buffer_prototype())).to_bytes()
            )


def test_coordinates_chunked_otherwise_are_written_through_zarr(tmp_path, monkeypatch):
    monkeypatch.setattr(footprints, "COORD_CHUNK", 4)
    config = make_config(tmp_path, names=("coarse",))
    receptors = make_receptors(11)
    Model(tmp_path / "p", receptors[:5], config).register_pending()
    # Blocks of 8 rows from now on: the stored arrays' chunks of 4 are not blocks.
    monkeypatch.setattr(footprints, "COORD_CHUNK", 8)
    Model(tmp_path / "p", receptors, config).register_pending()
    plain = xr.open_zarr(tmp_path / "p" / layout.footprint_group("coarse"), consolidated=False)
    assert plain["simulation"].values.tolist() == [r.sim_id for r in receptors]
    times = pd.DatetimeIndex([r.time for r in receptors])
    np.testing.assert_array_equal(plain["time"].values[:, -1], times - pd.Timedelta("1h"))


def test_a_registered_table_is_known_whole_from_its_digest(tmp_path):
    config = make_config(tmp_path)
    receptors = make_receptors(6)
    table = pd.DataFrame(
        [r.model_dump(include={"time", "longitude", "latitude", "altitude"}) for r in receptors]
    )
    csv = tmp_path / "receptors.csv"
    table[:5].to_csv(csv, index=False)
    model = Model(tmp_path / "p", csv, config)
    assert model.unregistered() == 5
    model.register_pending()
    digest = registry.table_digest(csv.read_bytes(), str(csv))
    assert model.registry().tables == {digest} and model.unregistered() == 0
    # Another table (one row more) is not known whole: its receptors are compared.
    table.to_csv(csv, index=False)
    assert model.unregistered() == 1
    model.register_pending()
    both = {digest, registry.table_digest(csv.read_bytes(), str(csv))}
    assert model.registry().tables == both and model.unregistered() == 0
    # A table that registers nothing new records nothing (there is no commit).
    table[:3].to_csv(csv, index=False)
    assert model.register_pending() == [] and model.registry().tables == both
    # A checkpoint carries the tables of its commits.
    location = model.location
    registry.write_checkpoint(location, registry.Registry(model.registry().entries, 63, both))
    assert registry.read(location).version == 63 and registry.read(location).tables == both
    location.delete(layout.checkpoint_key(63))
    # Commit 0 lost (no copy, no checkpoint): its rows are a gap below commit 1's, so the
    # table commit 1 recorded is not taken as registered whole.
    table.to_csv(csv, index=False)
    for key in (layout.registry_key(0), layout.registry_copy_key(0)):
        location.delete(key)
    assert model.registry().tables == both - {digest} and model.unregistered() == 5
