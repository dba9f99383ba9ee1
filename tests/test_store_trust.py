"""Nothing damaged is read as data, and repair never loses work silently (issue 21).

Every test drives the installed ``stilt-dask`` on a real project store: real
HYSPLIT on the idealized met of conftest, tiny runs (20 particles, one hour back),
then damage done by hand as a disk or an operator would, then the commands a
user has: ``run``, ``status``, ``verify [--repair]``, ``register``, ``export``,
``logs``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numcodecs
import numpy as np
import pyarrow.parquet as pq
import pytest
import xarray as xr
import yaml

from pystilt_dask.model import Model
from pystilt_dask.store import StoreError, layout, packing

GRID = {"xmin": -112.5, "xmax": -111.2, "ymin": 40.3, "ymax": 41.2, "xres": 0.02}
FIRST = [("2019-05-30 06:00", -111.85, 40.77), ("2019-05-30 07:00", -111.9, 40.7)]
LATER = [("2019-05-30 08:00", -111.7, 40.8), ("2019-05-30 09:00", -111.8, 40.75)]
#: The ids ``stilt-dask`` gives those receptors (5 m above ground).
IDS = {row: f"{row[0][:10].replace('-', '')}{row[0][11:13]}00_{row[1]:g}_{row[2]:g}_5" for row in
       FIRST + LATER}  # fmt: skip


def write_project(folder: Path, met: dict, rows, **hysplit) -> Path:
    """config.yaml (store ``project/`` beside it) and receptors.csv; returns the config."""
    config = {
        "mets": {"idealized": met},
        "hysplit": {"n_hours": -1, "numpar": 20, "seed": 3, **hysplit},
        "footprints": {"default": GRID},
        "execution": {"n_workers": 2, "cluster": {"dashboard_address": ":0"}},
        "output": "project",
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    add_receptors(path, rows)
    return path


def add_receptors(config: Path, rows) -> None:
    table = config.with_name("receptors.csv")
    lines = [] if table.exists() else ["time,longitude,latitude,altitude"]
    table.open("a").write("\n".join(lines + [f"{t},{lon},{lat},5" for t, lon, lat in rows]) + "\n")


def ok(result) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def results(project: Path) -> dict[str, bytes]:
    """Every result file (particle files, footprint chunks) by path."""
    return {
        str(p.relative_to(project)): p.read_bytes()
        for p in sorted(project.rglob("*"))
        if p.is_file() and (p.parent.name == "particles" or layout.CHUNK_RE.match(p.name))
    }


def per_simulation_files(project: Path) -> list[str]:
    """Files that are not the project's own (config, registry, footprint group metadata)."""
    group = project / layout.footprint_group("default")
    return sorted(
        str(p.relative_to(project))
        for p in project.rglob("*")
        if p.is_file()
        and p.name != layout.CONFIG
        and not p.is_relative_to(project / ".stilt")
        and not (p.is_relative_to(group) and not layout.CHUNK_RE.match(p.name))
    )


def states(stilt, project: Path) -> dict:
    return json.loads(ok(stilt("status", project, "--json")))


def rewrite_decodably(chunk: Path) -> None:
    """Change a chunk's values and keep its old CRC: it decodes, but is not what was written."""
    data = chunk.read_bytes()
    values = np.frombuffer(numcodecs.Zstd().decode(data[:-4]), "<f4").copy()
    values[values > 0] *= -50.0
    chunk.write_bytes(numcodecs.Zstd(level=3).encode(values.tobytes()) + data[-4:])


def damage_a_page(path: Path) -> None:
    """Flip one byte inside the data of a particle file's ``long`` column; the footer stays."""
    column = pq.ParquetFile(path).metadata.row_group(0).column(2)
    position = column.data_page_offset + column.total_compressed_size // 2
    with path.open("r+b") as f:
        f.seek(position)
        byte = f.read(1)
        f.seek(position)
        f.write(bytes([byte[0] ^ 0xFF]))


@pytest.fixture
def complete(tmp_path, idealized_met, stilt) -> Path:
    """A complete project: FIRST registered in commit 0, LATER[0] in commit 1 by ``run``."""
    config = write_project(tmp_path, idealized_met, FIRST)
    ok(stilt("register", config))
    add_receptors(config, LATER[:1])
    ok(stilt("run", config))
    return config


def test_a_decodable_but_damaged_chunk_is_never_read_and_one_repair_restores_it(complete, stilt):
    project = complete.with_name("project")
    good = results(project)
    victim = IDS[LATER[0]]  # alone in registry commit 1, row 2
    chunk = project / layout.chunk_key("default", 2)
    rewrite_decodably(chunk)

    # Every reader of chunks refuses it, naming the simulation and the footprint.
    foot = Model(project).footprints["default"].load()
    with pytest.raises(StoreError, match=f"{victim}.*footprint 'default'"):
        foot.sel(simulation=victim).compute()
    assert float(foot.sel(simulation=IDS[FIRST[0]]).sum()) > 0  # the others still read
    result = stilt("export", complete, "--footprint", "default", complete.parent / "out")
    assert result.returncode == 2 and victim in result.stderr
    assert "Traceback" not in result.stderr
    plain = xr.open_zarr(project / layout.footprint_group("default"), consolidated=False)
    with pytest.raises(ValueError, match="checksum"):
        plain["foot"].isel(simulation=2).load()  # zarr itself checks the CRC-32C

    # And its registry entry is lost too (the commit and its copy).
    (project / layout.registry_key(1)).unlink()
    (project / layout.registry_copy_key(1)).unlink()
    assert victim not in ok(stilt("ls", project))

    result = stilt("verify", complete)
    assert result.returncode == 1
    assert f"{victim}: its registry entry is lost" in result.stdout
    assert f"footprint 'default' chunk {layout.chunk_key('default', 2)}" in result.stdout

    result = stilt("verify", complete, "--repair")  # one pass: the entry and the chunk
    assert result.returncode == 0, result.stdout + result.stderr
    assert "lost" not in result.stdout.splitlines()[-1]
    counts = states(stilt, project)
    assert counts["complete"] == 2 and counts["pending"] == 1
    ok(stilt("run", complete))
    assert results(project) == good
    assert "checked 3 simulations: 0 damaged" in ok(stilt("verify", complete))


def test_an_unreadable_commit_with_pending_registrations_loses_nothing_silently(
    tmp_path, idealized_met, stilt
):
    config = write_project(tmp_path, idealized_met, FIRST)
    ok(stilt("run", config))
    add_receptors(config, LATER)
    ok(stilt("register", config))  # commit 1: two simulations, registered, never run
    project = config.with_name("project")
    pending = sorted(IDS[row] for row in LATER)
    commit, copy = project / layout.registry_key(1), project / layout.registry_copy_key(1)
    if not copy.exists():  # the registrant writes it; the format says what it holds
        shutil.copyfile(commit, copy)
    before = sorted(Model(project).simulations.ids())
    with commit.open("r+b") as f:
        f.truncate(commit.stat().st_size // 2)

    result = stilt("status", project)
    assert result.returncode == 2 and "unreadable" in result.stderr
    assert result.stderr.count("\n") == 1
    result = stilt("verify", config)
    assert result.returncode == 1 and "held by its copy" in result.stdout
    result = stilt("verify", config, "--repair")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(Model(project).simulations.ids()) == before
    assert commit.read_bytes() == copy.read_bytes()

    # The copy gone too: the two registrations are named as lost, and exit 1.
    copy.unlink()
    with commit.open("r+b") as f:
        f.truncate(commit.stat().st_size // 2)
    result = stilt("verify", config)
    assert result.returncode == 1
    assert f"2 registry entries cannot be restored (nothing holds them): {', '.join(pending)}" in (
        result.stdout
    )
    result = stilt("verify", config, "--repair")
    assert result.returncode == 1
    last = result.stdout.splitlines()[-1]
    assert last.startswith(f"2 registry entries are lost: {', '.join(pending)}")
    assert "stilt-dask register" in last and "repaired" not in last
    assert states(stilt, project)["complete"] == 2

    # Registering the receptor table again brings them back, as new simulations.
    assert "registered 2 new simulations (4 in total)" in ok(stilt("register", config))
    assert sorted(Model(project).simulations.ids()) == before
    ok(stilt("verify", config))


def test_on_a_compacted_store_a_damaged_packed_chunk_and_a_lost_entry_are_repaired_at_once(
    complete, stilt
):
    project = complete.with_name("project")
    before = Model(project).footprints["default"].load().compute()
    ok(stilt("compact", complete))
    assert list(results(project)) == ["particles/block-0.parquet"]  # all packed
    victim = IDS[LATER[0]]  # alone in registry commit 1, row 2
    shard = project / layout.shard_key("default", 0)
    index = packing.parse_index(shard.read_bytes()[-packing.INDEX_BYTES :], "shard")
    offset, size = (int(v) for v in index[2])
    with shard.open("r+b") as f:  # one byte inside row 2's packed chunk
        f.seek(offset + size // 2)
        byte = f.read(1)
        f.seek(offset + size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))

    foot = Model(project).footprints["default"].load()
    with pytest.raises(StoreError, match=f"{victim}.*footprint 'default'"):
        foot.sel(simulation=victim).compute()
    result = stilt("export", complete, "--footprint", "default", complete.parent / "out")
    assert result.returncode == 2 and victim in result.stderr
    plain = xr.open_zarr(project / layout.footprint_group("default"), consolidated=False)
    with pytest.raises(ValueError, match="checksum"):
        plain["foot"].isel(simulation=2).load()
    np.testing.assert_array_equal(plain["foot"].isel(simulation=0).values, before.values[0])

    # Its registry entry is lost too: only its particle block file's footer still holds it.
    (project / layout.registry_key(1)).unlink()
    (project / layout.registry_copy_key(1)).unlink()
    result = stilt("verify", complete)
    assert result.returncode == 1
    assert f"{victim}: its registry entry is lost (held by particles/block-0.parquet)" in (
        result.stdout
    )
    assert "CRC-32C does not match" in result.stdout

    result = stilt("verify", complete, "--repair")  # the entry, and the shard removed whole
    assert result.returncode == 0, result.stdout + result.stderr
    assert not shard.exists()
    assert states(stilt, project)["pending"] == 3
    ok(stilt("run", complete))
    ok(stilt("compact", complete))
    after = Model(project).footprints["default"].load().compute()
    assert after["simulation"].values.tolist() == before["simulation"].values.tolist()
    np.testing.assert_array_equal(after.values, before.values)
    assert "checked 3 simulations: 0 damaged" in ok(stilt("verify", complete))


def test_a_damaged_particle_page_is_never_read_and_a_rerun_replaces_it(complete, stilt):
    project = complete.with_name("project")
    good = results(project)
    victim = IDS[FIRST[1]]
    path = project / layout.particles_key(victim)
    damage_a_page(path)
    assert pq.read_metadata(path).metadata[b"pystilt_dask:log"]  # the footer is intact

    with pytest.raises(StoreError, match=f"particle file of simulation '{victim}'.*damaged"):
        Model(project).trajectories.load(victim)
    assert "Complete Hysplit" in ok(stilt("logs", complete, victim))  # from the footer
    result = stilt("verify", complete)
    assert result.returncode == 1
    assert f"{victim}: {layout.particles_key(victim)}: cannot be read" in result.stdout
    assert "CRC" in result.stdout

    ok(stilt("verify", complete, "--repair"))
    assert states(stilt, project)["pending"] == 1
    ok(stilt("run", complete))  # HYSPLIT again: the same particles, and the same log
    assert results(project) == good


def test_a_failed_attempts_log_is_kept_until_completion_then_the_runs_log_is_in_its_particles(
    tmp_path, idealized_met, stilt, stand_in
):
    failing = stand_in('echo " stand-in: no transport today"; exit 3')
    config = write_project(tmp_path, idealized_met, FIRST[:1], executable=str(failing))
    project = config.with_name("project")
    sim_id = IDS[FIRST[0]]
    result = stilt("run", config)
    assert result.returncode != 0
    assert (project / layout.failure_key(sim_id)).exists()
    assert "no transport today" in (project / layout.log_key(sim_id)).read_text()
    assert "no transport today" in ok(stilt("logs", config, sim_id))

    settings = yaml.safe_load(config.read_text())
    del settings["hysplit"]["executable"]  # run control: it may change
    config.write_text(yaml.safe_dump(settings))
    ok(stilt("run", config))
    # Complete: its particle file and its chunk (one footprint), nothing else.
    assert per_simulation_files(project) == [
        layout.chunk_key("default", 0),
        layout.particles_key(sim_id),
    ]
    assert not (project / layout.CHECKSUMS).exists()
    log = ok(stilt("logs", config, sim_id))  # kept in the particle file
    assert "Complete Hysplit" in log and "no transport today" not in log
    # What differs between equal runs is left out, so attempts stay byte-identical.
    assert "Simulation Time (HHMMSS.S): (left out: the wall clock of the run)" in log
