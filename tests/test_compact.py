"""``stilt-dask compact`` (issue 22): few files per simulation, and a store that reads the same.

A campaign of 1,100 completed simulations (two blocks of rows: one full, one
partial) and 30 pending ones is written by the real ``run_simulation`` (synthetic
particles, :mod:`store_helpers`), then driven through the installed ``stilt-dask``
and :class:`~pystilt_dask.Model`: ``compact``, ``status``, ``verify [--repair]``,
``logs``, ``load()``, plain ``xarray.open_zarr``, and a run beside a compaction,
ordered by events (a compaction paused at its first shard write), never by timing.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import os
import shutil
import signal
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xarray as xr
from store_helpers import (
    GRIDS,
    expected_chunk,
    make_config,
    make_receptors,
    run_synthetic,
    synthetic_trajectories,
)

from pystilt_dask import ensemble
from pystilt_dask.errors import StoreError
from pystilt_dask.model import Model
from pystilt_dask.simulation import run_simulation
from pystilt_dask.store import layout, packing
from pystilt_dask.store.claims import Holder
from pystilt_dask.store.compact import compact
from pystilt_dask.store.paths import Location

N = 1100
PENDING = 30
NAME = "coarse"


def empty(k: int) -> bool:
    """Which of the campaign's simulations have an empty footprint."""
    return k % 100 == 7


@pytest.fixture(scope="module")
def campaign(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("campaign")
    config = make_config(root, names=(NAME,))
    model = Model(root / "project", make_receptors(N + PENDING), config)
    model.register_pending()
    for k, sim_id in enumerate(model.simulations.ids()[:N]):
        run_synthetic(model.location, sim_id, config, outside="all" if empty(k) else None)
    return root / "project"


@pytest.fixture
def project(campaign: Path, tmp_path: Path) -> Path:
    shutil.copytree(campaign, tmp_path / "project")
    return tmp_path / "project"


def ok(result) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def result_files(project: Path) -> list[str]:
    """Files holding simulations' results: particles, logs, failures, markers, chunks, shards."""
    foot = project / layout.foot_array(NAME)
    return [
        str(p.relative_to(project))
        for p in project.rglob("*")
        if p.is_file()
        and not p.name.endswith(".partial")
        and (
            p.relative_to(project).parts[0] in ("particles", "logs", "failures")
            or p.parent.name.endswith(".empty")
            or (p.is_relative_to(foot) and p.name != "zarr.json")
        )
    ]


def loaded(project: Path) -> xr.DataArray:
    return Model(project).footprints[NAME].load().compute()


def counts(stilt, project: Path) -> dict:
    found = json.loads(ok(stilt("status", project, "--json")))
    found.pop("claims")
    return found


def test_a_campaign_packs_into_few_files_and_reads_the_same(project, stilt):
    model = Model(project)
    ids = model.simulations.ids()
    before, states = loaded(project), counts(stilt, project)
    assert states["complete"] + states["complete-empty"] == N and states["pending"] == PENDING
    assert len(result_files(project)) >= 2 * N

    out = ok(stilt("compact", project))
    assert f"packed {N} simulations into 2 blocks" in out

    files = result_files(project)
    assert len(files) / N <= 0.01, files
    assert sorted(files) == sorted([
        "particles/block-0.parquet", "particles/block-1.parquet",
        "logs/block-0.parquet", "logs/block-1.parquet",
        f"{layout.shard_key(NAME, 0)}", f"{layout.shard_key(NAME, 1)}",
        layout.empty_block_key(NAME, 0),  # block 1 has no empty footprint
    ])  # fmt: skip
    xr.testing.assert_identical(loaded(project), before)
    assert counts(stilt, project) == states
    # Plain zarr readers decode the shards: every packed row, NaN where nothing ran.
    plain = xr.open_zarr(project / layout.footprint_group(NAME), consolidated=False)
    np.testing.assert_array_equal(plain["foot"].values, before.values)
    assert plain["simulation"].values.tolist() == ids
    assert "0 damaged" in ok(stilt("verify", project))
    assert f"synthetic run of {ids[5]}" in ok(stilt("logs", project, ids[5]))
    particles = model.trajectories.load(ids[1050])
    paths = model.trajectories.paths()
    assert sorted(paths) == sorted(model.status().ids("complete", "complete-empty"))
    assert paths[ids[1050]].endswith("particles/block-1.parquet")
    assert len(particles) == 50 and list(particles.columns)[:3] == ["time", "indx", "long"]
    # Nothing left to pack: a second compaction writes nothing.
    assert "packed 0 simulations into 0 blocks" in ok(stilt("compact", project))


def flip_byte(path: Path, position: int) -> None:
    with path.open("r+b") as f:
        f.seek(position)
        byte = f.read(1)
        f.seek(position)
        f.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.slow  # the default suite keeps packing, reading and a concurrent run
def test_verify_finds_a_damaged_shard_and_particle_block_and_a_rerun_restores_them(project, stilt):
    before = loaded(project)
    ok(stilt("compact", project))
    shard = project / layout.shard_key(NAME, 1)
    index = packing.parse_index(shard.read_bytes()[-packing.INDEX_BYTES :], "shard")
    offset, size = (int(v) for v in index[3])
    flip_byte(shard, offset + size // 2)  # inside row 1027's chunk; the index stays intact
    model = Model(project)
    ids = model.simulations.ids()
    result = stilt("verify", project)
    assert result.returncode == 1
    assert f"{ids[1027]}: footprint {NAME!r} chunk" in result.stdout and "CRC-32C" in result.stdout
    assert "checked 1130 simulations: 1 damaged" in result.stdout

    block = project / layout.block_key(layout.PARTICLES, 1)
    column = pq.ParquetFile(block).metadata.row_group(10).column(2)  # row 1034's
    flip_byte(block, column.data_page_offset + column.total_compressed_size // 2)
    with pytest.raises(StoreError, match=ids[1034]):
        model.trajectories.load(ids[1034])
    with pytest.raises(StoreError, match=ids[1027]):
        loaded(project)
    plain = xr.open_zarr(project / layout.footprint_group(NAME), consolidated=False)
    with pytest.raises(ValueError, match="(?i)checksum|crc"):
        plain["foot"][1027].load()
    result = stilt("verify", project)
    assert result.returncode == 1
    assert "particles/block-1.parquet: cannot be read" in result.stdout
    # Its chunks have no intact particle file to vouch for them any more.
    assert f"no intact particle file of {ids[1030]!r} at row 1030 vouches for it" in result.stdout

    ok(stilt("verify", project, "--repair"))
    assert not block.exists() and not shard.exists()
    states = Model(project).status().table["state"]
    # Block 1's particles and shard are gone: its rows are pending, block 0's untouched.
    assert (states.iloc[: layout.BLOCK_ROWS] != "pending").all()
    assert (states.iloc[layout.BLOCK_ROWS :] == "pending").all()
    for sim_id in states.index[states == "pending"]:
        k = ids.index(sim_id)
        run_synthetic(model.location, sim_id, model.config, outside="all" if empty(k) else None)
    after = loaded(project)
    xr.testing.assert_identical(
        after.isel(simulation=slice(0, N)), before.isel(simulation=slice(0, N))
    )
    assert "0 damaged" in ok(stilt("verify", project))
    ok(stilt("compact", project))
    xr.testing.assert_identical(loaded(project), after)
    assert "0 damaged" in ok(stilt("verify", project))


#: The events of :class:`PausedAtFirstShard` locations, by name: a location goes to the
#: packing tasks pickled, and the tasks of an in-process cluster find the same events here.
GATES: dict[str, tuple[threading.Event, threading.Event]] = {}


@dataclasses.dataclass(frozen=True)
class PausedAtFirstShard(Location):
    """A project location whose first shard write waits until the test lets it go on."""

    gate: str = ""

    def write_bytes(self, key: str, data: bytes) -> None:
        reached, go = GATES[self.gate]
        if "/foot/c/" in key and not reached.is_set():
            reached.set()
            assert go.wait(120), "the test never let the compaction go on"
        super().write_bytes(key, data)


def test_a_run_beside_a_compaction_loses_nothing_and_the_next_compaction_merges_it(
    project, stilt, client
):
    model = Model(project)
    ids = model.simulations.ids()
    reached, go = GATES["beside"] = (threading.Event(), threading.Event())
    paused = PausedAtFirstShard(str(project), gate="beside")
    done = []
    worker = threading.Thread(
        target=lambda: done.append(compact(paused, model.config, model.registry(), client=client))
    )
    worker.start()
    try:
        assert reached.wait(120)  # listed, a block's particles packed, no shard yet
        assert Location(str(project)).exists(layout.COMPACT_LOCK)
        result = stilt("compact", project)
        assert result.returncode == 2 and "compact.lock is held" in result.stderr
        for sim_id in ids[N:]:  # the pending rows, in block 1, which the compaction will pack
            assert run_synthetic(model.location, sim_id, model.config) == "complete"
    finally:
        go.set()
        worker.join()
    assert done[0].simulations == N
    for row in range(N, N + PENDING):  # completed after the listing: left unpacked
        assert (project / layout.chunk_key(NAME, row)).exists()
        assert (project / layout.particles_key(ids[row])).exists()
    states = counts(stilt, project)
    assert states["complete"] + states["complete-empty"] == N + PENDING
    foot = loaded(project)
    for row in (N, N + PENDING - 1):
        np.testing.assert_array_equal(foot.values[row], expected_chunk(model, ids[row], NAME))
    assert "0 damaged" in ok(stilt("verify", project))

    # The next compaction merges them into block 1's shard and particle file.
    assert f"packed {PENDING} simulations into 1 blocks" in ok(stilt("compact", project))
    assert len(result_files(project)) == 7
    xr.testing.assert_identical(loaded(project), foot)
    plain = xr.open_zarr(project / layout.footprint_group(NAME), consolidated=False)
    np.testing.assert_array_equal(plain["foot"].values, foot.values)
    assert counts(stilt, project) == states
    assert "0 damaged" in ok(stilt("verify", project))


#: What :class:`DeletesRecorded` locations deleted, in order, by gate.
DELETED: dict[str, list[str]] = {}


@dataclasses.dataclass(frozen=True)
class DeletesRecorded(PausedAtFirstShard):
    """A paused location that also records its deletions (the lock's among them)."""

    def delete(self, key: str) -> None:
        super().delete(key)
        DELETED[self.gate].append(key)


def test_an_interrupted_compaction_holds_its_lock_until_its_running_task_ends(
    project, stilt, client
):
    model = Model(project)
    before = counts(stilt, project)
    reached, go = GATES["interrupted"] = (threading.Event(), threading.Event())
    deleted = DELETED["interrupted"] = []
    paused = DeletesRecorded(str(project), gate="interrupted")
    interrupted = threading.Event()

    def on_sigint(signum, frame):
        interrupted.set()
        raise KeyboardInterrupt

    def interrupt() -> None:
        assert reached.wait(120)  # a task runs, paused before its shard
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, in the coordinator's (main) thread
        assert interrupted.wait(120)
        go.set()  # the task goes on only once the coordinator is interrupted

    previous = signal.signal(signal.SIGINT, on_sigint)
    helper = threading.Thread(target=interrupt)
    helper.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            compact(paused, model.config, model.registry(), client=client)
    finally:
        signal.signal(signal.SIGINT, previous)
        go.set()
        helper.join()
    # The paused task deleted the unpacked keys it packed before the lock went.
    assert deleted[-1] == layout.COMPACT_LOCK and len(deleted) > 1
    assert not Location(str(project)).exists(layout.COMPACT_LOCK)
    assert counts(stilt, project) == before
    assert "0 damaged" in ok(stilt("verify", project))
    assert "packed" in ok(stilt("compact", project))  # the next one finishes the work
    assert counts(stilt, project) == before


@pytest.mark.slow  # the default suite keeps packing, reading and a concurrent run
def test_a_rerun_of_a_packed_simulation_wins_until_the_next_compaction(project, stilt):
    model = Model(project)
    ids = model.simulations.ids()
    ok(stilt("compact", project))
    before = loaded(project)
    sim_id, row = ids[7], 7  # packed empty: its rerun is empty again, and unpacked
    assert run_synthetic(model.location, sim_id, model.config, skip_existing=False,
                         outside="all") == "complete-empty"  # fmt: skip
    assert (project / layout.chunk_key(NAME, row)).exists()
    assert (project / layout.empty_key(NAME, sim_id)).exists()
    # Rerun with values: the unpacked chunk wins, and the packed empty marker goes with it.
    assert run_synthetic(model.location, sim_id, model.config, skip_existing=False) == "complete"
    assert model.status().table.loc[sim_id, "state"] == "complete"
    foot = loaded(project)
    np.testing.assert_array_equal(foot.values[row], expected_chunk(model, sim_id, NAME))
    assert "0 damaged" in ok(stilt("verify", project))
    ok(stilt("compact", project))
    assert not (project / layout.chunk_key(NAME, row)).exists()
    xr.testing.assert_identical(loaded(project), foot)
    assert model.status().table.loc[sim_id, "state"] == "complete"
    assert sim_id not in packing.empty_ids(model.location, NAME, 0)
    xr.testing.assert_identical(
        loaded(project).drop_isel(simulation=row), before.drop_isel(simulation=row)
    )


def test_the_lock_names_its_holder_and_a_dead_holder_is_taken_over(project, stilt):
    location = Location(str(project))
    alive = json.dumps(dataclasses.asdict(Holder.this_process("compact")))
    location.create(layout.COMPACT_LOCK, alive.encode())
    result = stilt("compact", project)
    assert result.returncode == 2
    assert f"host {os.uname().nodename} pid {os.getpid()}" in result.stderr
    assert "--break-lock" in result.stderr
    assert location.read_bytes(layout.COMPACT_LOCK) == alive.encode()
    ok(stilt("compact", project, "--break-lock"))
    assert not location.exists(layout.COMPACT_LOCK)

    # A compaction killed mid-way: its lock's holder is gone, so the next one takes over.
    dead = dataclasses.replace(Holder.this_process("compact"), pid=2**22 + 17)
    location.create(layout.COMPACT_LOCK, json.dumps(dataclasses.asdict(dead)).encode())
    assert "packed 0 simulations" in ok(stilt("compact", project))


@pytest.mark.slow  # the default suite keeps packing, reading and a concurrent run
class Stopped(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class StopsAtFirstDeletion(Location):
    """A project location that stops a compaction at its first deletion of an unpacked key."""

    def delete(self, key: str) -> None:
        if key != layout.COMPACT_LOCK:
            raise Stopped(key)
        super().delete(key)


def test_a_compaction_stopped_between_writes_and_deletions_leaves_a_store_that_reads_the_same(
    project, stilt, client
):
    before, states = loaded(project), counts(stilt, project)
    model = Model(project)
    with pytest.raises(Stopped):
        compact(StopsAtFirstDeletion(str(project)), model.config, model.registry(), client=client)
    assert (project / layout.shard_key(NAME, 0)).exists()
    assert (project / layout.chunk_key(NAME, 0)).exists()  # both: the unpacked key wins
    xr.testing.assert_identical(loaded(project), before)
    assert counts(stilt, project) == states
    assert "0 damaged" in ok(stilt("verify", project))
    ok(stilt("compact", project))
    assert len(result_files(project)) == 7
    xr.testing.assert_identical(loaded(project), before)
    assert counts(stilt, project) == states


@pytest.mark.slow
def test_five_blocks_of_simulations_leave_under_a_hundredth_of_a_file_each(tmp_path, stilt):
    """5,120 simulations; every file of the project counted (config, registry, zarr metadata)."""
    n = 5 * layout.BLOCK_ROWS
    config = make_config(tmp_path, names=(NAME,))
    model = Model(tmp_path / "project", make_receptors(n), config)
    model.register_pending()
    for k, sim_id in enumerate(model.simulations.ids()):
        run_synthetic(model.location, sim_id, config, outside="all" if empty(k) else None)
    before = loaded(tmp_path / "project")
    files = [p for p in (tmp_path / "project").rglob("*") if p.is_file()]
    assert len(files) / n > 2
    ok(stilt("compact", tmp_path / "project"))
    files = [p for p in (tmp_path / "project").rglob("*") if p.is_file()]
    assert len(files) / n <= 0.01, sorted(map(str, files))
    xr.testing.assert_identical(loaded(tmp_path / "project"), before)
    assert "0 damaged" in ok(stilt("verify", tmp_path / "project"))


def test_a_footprint_added_after_compaction_is_computed_and_packed_beside_the_first(
    tmp_path, client
):
    one = make_config(tmp_path, names=(NAME,))
    model = Model(tmp_path / "project", make_receptors(20), one)
    model.register_pending()
    ids = model.simulations.ids()
    for sim_id in ids:
        run_synthetic(model.location, sim_id, one)
    compact(model.location, one, model.registry(), client=client)
    coarse = loaded(tmp_path / "project")

    both = Model(tmp_path / "project", make_receptors(20), make_config(tmp_path))
    both.register_pending()
    counts = both.status().counts()["footprints"]
    assert counts[NAME]["complete"] == 20 and counts["fine"]["pending"] == 20
    for sim_id in ids:
        assert run_synthetic(both.location, sim_id, both.config) == "complete"
    fine = both.footprints["fine"].load().compute()
    for row in (0, 19):
        np.testing.assert_array_equal(fine.values[row], expected_chunk(both, ids[row], "fine"))
    both.compact(client=client)
    assert not list((tmp_path / "project" / layout.foot_array("fine")).glob("c.*"))
    xr.testing.assert_identical(both.footprints[NAME].load().compute(), coarse)
    xr.testing.assert_identical(both.footprints["fine"].load().compute(), fine)
    assert both.status().counts()["complete"] == 20
    assert both.verify().ok


def test_realizations_and_variants_are_packed_and_read_the_same(tmp_path, client):
    """Realization 1 and a transport variant pack their own particles; a footprint-only
    variant packs its chunks and leaves the particles it reads to the root's compaction."""
    config = make_config(tmp_path, names=(NAME,))
    config = config.from_dict({
        **config.model_dump(mode="json"),
        "hysplit": {**config.hysplit.model_dump(mode="json"), "realizations": 2},
        "variants": {"more": {"hysplit": {"numpar": 20}},
                     "fine": {"footprints": {NAME: GRIDS["fine"]}}},
    })  # fmt: skip
    n = 40
    model = Model(tmp_path / "project", make_receptors(n), config)
    model.register_pending()
    ids = model.simulations.ids()
    registry = model.registry()
    members = ensemble.members(config)
    prefixes = [m.prefix for m in members]
    assert "realizations/1/" in prefixes and "variants/fine/" in prefixes
    for member in members:
        for k, sim_id in enumerate(ids):
            outside = "all" if empty(k) else None
            simulate = functools.partial(synthetic_trajectories, outside=outside)
            where, entry = member.location(model.location), registry.entry(sim_id)
            state = run_simulation(where, sim_id, member.config, entry=entry, simulate=simulate)
            assert state.startswith("complete")
    states = model.ensemble_status()
    loads = {
        (m.variant, m.realization): model.footprints[NAME].load(
            variant=m.variant, realization=m.realization).compute()
        for m in members
    }  # fmt: skip
    project = tmp_path / "project"
    assert len([p for p in project.rglob("*.parquet") if "particles" in p.parts]) > 3 * n

    report = compact(model.location, config, registry, client=client)
    assert report.blocks == len(members) and report.simulations == n * len(members)
    for member in members:
        where = Path(member.location(model.location).root)
        if member.shares is None:
            assert sorted(p.name for p in (where / "particles").iterdir()) == ["block-0.parquet"]
        assert (where / layout.shard_key(NAME, 0)).is_file()
        assert not list((where / layout.foot_array(NAME)).glob("c.*"))
    assert not (project / "variants" / "fine" / "particles").exists()
    pd.testing.assert_frame_equal(model.ensemble_status(), states)
    for (variant, realization), before in loads.items():
        after = model.footprints[NAME].load(variant=variant, realization=realization).compute()
        xr.testing.assert_identical(after, before)
    assert model.verify().ok
    assert compact(model.location, config, model.registry(), client=client).simulations == 0


def completed(tmp_path: Path, n: int) -> Model:
    """A project of ``n`` simulations, every one complete."""
    config = make_config(tmp_path, names=(NAME,))
    model = Model(tmp_path / "project", make_receptors(n), config)
    model.register_pending()
    for sim_id in model.simulations.ids():
        run_synthetic(model.location, sim_id, config)
    return model


def test_a_damaged_particle_file_is_left_unpacked_and_named(tmp_path, client):
    model = completed(tmp_path, 12)
    config, ids = model.config, model.simulations.ids()
    before = {sim_id: model.trajectories.load(sim_id) for sim_id in (ids[0], ids[11])}
    damaged = tmp_path / "project" / layout.particles_key(ids[3])
    column = pq.ParquetFile(damaged).metadata.row_group(0).column(2)
    flip_byte(damaged, column.data_page_offset + column.total_compressed_size // 2)
    report = compact(model.location, config, model.registry(), client=client)
    assert report.left == [f"{layout.particles_key(ids[3])}: damaged (ValueError)"]
    assert damaged.exists()
    packed = packing.block_ids(model.location, layout.PARTICLES, 0)
    assert packed == [i for i in ids if i != ids[3]]
    for sim_id, table in before.items():  # row groups copied as stored read as written
        assert not (tmp_path / "project" / layout.particles_key(sim_id)).exists()
        pd.testing.assert_frame_equal(model.trajectories.load(sim_id), table)


def test_particle_files_of_several_row_groups_or_without_page_crcs_are_packed(tmp_path, client):
    """Files written before particle files had one row group and page CRCs pack as others."""
    model = completed(tmp_path, 4)
    config, ids = model.config, model.simulations.ids()
    before = {sim_id: model.trajectories.load(sim_id) for sim_id in ids}
    logs = {sim_id: model.simulations.log(sim_id) for sim_id in ids}
    split, plain = (tmp_path / "project" / layout.particles_key(i) for i in ids[:2])
    for path, crcs, groups in ((split, True, 3), (plain, False, 1)):
        stored = pq.ParquetFile(path)
        table = stored.read()
        with pq.ParquetWriter(
            path, table.schema, compression="zstd", write_page_checksum=crcs
        ) as writer:
            writer.write_table(table, row_group_size=max(table.num_rows // groups, 1))
            writer.add_key_value_metadata(
                {k: v for k, v in stored.metadata.metadata.items() if b"log" in k}
            )
    assert pq.ParquetFile(split).metadata.num_row_groups > 1
    assert pq.ParquetFile(plain).metadata.num_row_groups == 1
    report = compact(model.location, config, model.registry(), client=client)
    assert report.left == [] and report.simulations == 4
    assert packing.block_ids(model.location, layout.PARTICLES, 0) == ids
    for sim_id in ids:
        assert not (tmp_path / "project" / layout.particles_key(sim_id)).exists()
        pd.testing.assert_frame_equal(model.trajectories.load(sim_id), before[sim_id])
        assert model.simulations.log(sim_id) == logs[sim_id]
    assert model.verify().ok


def test_the_ids_of_a_block_written_before_are_read_from_its_footer(tmp_path):
    """A block file whose ids are not its footer's last entry (as ``compact`` wrote them
    before) is read through its footer."""
    location = Location(str(tmp_path))
    ids = [f"sim-{k}" for k in range(3)]
    table = pa.table({"x": [1.0, 2.0]})
    sink = io.BytesIO()
    with pq.ParquetWriter(sink, table.schema) as writer:
        writer.write_table(table)
        writer.add_key_value_metadata({"pystilt_dask:sim_ids": "\n".join(ids)})
        writer.add_key_value_metadata({"pystilt_dask:simulations": "x" * 2 * packing.TAIL_BYTES})
    location.write_bytes(layout.block_key(layout.PARTICLES, 0), sink.getvalue())
    assert packing.block_ids(location, layout.PARTICLES, 0) == ids
