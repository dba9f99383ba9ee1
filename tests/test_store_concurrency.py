"""Writers in real processes: SIGKILL mid-write, reruns, and concurrent writers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from store_helpers import expected_chunk, make_config, make_receptors

from pystilt_dask.model import Model
from pystilt_dask.store import layout

HELPER = Path(__file__).with_name("store_helpers.py")


def start_writer(project: str, sim_ids: list[str]) -> subprocess.Popen:
    # Short claims: a writer resuming after a killed one waits out its claims quickly.
    env = {**os.environ, "DASK_STILT__CLAIM_TTL": "1s"}
    return subprocess.Popen(
        [sys.executable, str(HELPER), project, *sim_ids], stdout=subprocess.PIPE, text=True,
        env=env,
    )  # fmt: skip


def assert_footprints_exact(model: Model, rows) -> None:
    """Complete simulations hold exactly what their writer computed."""
    foot = model.footprints["big"].load()
    ids = model.simulations.ids()
    for row in rows:
        expected = expected_chunk(model, ids[row], "big")
        np.testing.assert_array_equal(foot.isel(simulation=row).values, expected)


def kill_after_first(tmp_path) -> Model:
    """Run a writer over 8 big simulations and SIGKILL it once the first is complete.

    Where the kill lands (computing, writing a chunk's temporary, renaming it) is
    whatever the writer was doing then; the test holds for every case, so it never
    depends on catching a particular moment.
    """
    config = make_config(tmp_path, names=("big",))
    model = Model(tmp_path / "project", make_receptors(8), config)
    ids = model.register_pending()
    first = model.location.url(layout.chunk_key("big", 0))
    writer = start_writer(model.location.root, ids)
    while not os.path.exists(first):  # the event: simulation 0 is published
        assert writer.poll() is None, "the writer ended before publishing anything"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    return model


def test_sigkill_mid_write_leaves_simulation_incomplete(tmp_path):
    model = kill_after_first(tmp_path)
    ids = model.simulations.ids()
    chunk_dir = model.location.url(layout.foot_array("big"))
    table = model.status().table
    # Whether the kill landed before or after the rename, nothing torn looks complete:
    # every simulation is pending (or running: the killed writer's claim, until it
    # expires), or complete with exactly what its writer computed.
    assert set(table["state"]) <= {"pending", "running", "complete"}
    assert (table["state"] == "running").sum() <= 1
    complete = [i for i, s in enumerate(table["state"]) if s == "complete"]
    assert 0 in complete and complete == list(range(len(complete)))
    assert_footprints_exact(model, complete)
    assert model.verify().ok
    mtimes = {r: os.stat(f"{chunk_dir}/c.{r}.0.0.0").st_mtime_ns for r in complete}

    done = [line.strip() for line in start_writer(model.location.root, ids).stdout]
    assert done == ids
    assert model.status().counts()["complete"] == len(ids)
    assert {r: os.stat(f"{chunk_dir}/c.{r}.0.0.0").st_mtime_ns for r in complete} == mtimes
    assert_footprints_exact(model, range(len(ids)))


@pytest.mark.slow
def test_concurrent_writers_lose_nothing(tmp_path):
    config = make_config(tmp_path, names=("coarse", "fine"))
    model = Model(tmp_path / "project", make_receptors(48), config)
    ids = model.register_pending()
    writers = [start_writer(model.location.root, ids[i::4]) for i in range(4)]
    # a duplicate attempt of some simulations (at-least-once execution)
    writers.append(start_writer(model.location.root, ids[::5]))
    for writer in writers:
        writer.communicate(timeout=300)
        assert writer.returncode == 0
    counts = model.status().counts()
    assert counts["complete"] == 48
    foot = model.footprints["fine"].load()
    for row, sim_id in enumerate(ids):
        np.testing.assert_array_equal(
            foot.isel(simulation=row).values, expected_chunk(model, sim_id, "fine")
        )
    leftovers = [
        n for n in os.listdir(model.location.url(layout.foot_array("fine"))) if "partial" in n
    ]
    assert leftovers == []
