"""One run path: a plan reads the registry once and builds every task the same way.

Real HYSPLIT on the idealized met, a real LocalCluster (conftest ``client``).
"""

from __future__ import annotations

import io
import re
from collections import Counter

import dask
from rich.console import Console

from pystilt_dask.config import ModelConfig
from pystilt_dask.execution.console import follow
from pystilt_dask.execution.run import task_key
from pystilt_dask.execution.waves import Outcome
from pystilt_dask.model import Model
from pystilt_dask.receptors import PointReceptor
from pystilt_dask.store import registry

GRID = {"xmin": -112.5, "xmax": -111.2, "ymin": 40.3, "ymax": 41.2, "xres": 0.02}


def _model(path, idealized_met, hours=(8, 9, 10)) -> Model:
    receptors = [
        PointReceptor(time=f"2019-05-30 {h:02d}:00", longitude=-111.848, latitude=40.766,
                      altitude=5)
        for h in hours
    ]  # fmt: skip
    config = ModelConfig.from_dict(
        {
            "mets": {"idealized": idealized_met},
            "hysplit": {"n_hours": -1, "numpar": 20, "seed": 3},
            "footprints": {"default": GRID},
        }
    )
    return Model(path, receptors=receptors, config=config)


def test_a_run_reads_each_registry_commit_once(tmp_path, idealized_met, client, monkeypatch):
    model = _model(tmp_path / "proj", idealized_met)
    Model(model.location.root, model.receptors()[:1], model.config).register_pending()
    reads: Counter[int] = Counter()
    read_commit = registry._commit_entries  # every read of a commit goes through it

    def counted(location, version):
        reads[version] += 1
        return read_commit(location, version)

    monkeypatch.setattr(registry, "_commit_entries", counted)
    # Registers the two receptors not registered yet (commit 1), then runs all three.
    states = model.run(client=client, quiet=True)
    assert sorted(states.values()) == ["complete"] * 3
    # Commit 0 read once when registering; commit 1 never (its registrant keeps the
    # entries it wrote). The plan, the waves and the tasks use that one snapshot.
    assert reads == {0: 1}


def test_every_way_to_run_builds_the_same_tasks(tmp_path, idealized_met):
    model = _model(tmp_path / "proj", idealized_met)
    run = model.plan()
    assert len(run) == 3 and run.token == model.plan().token
    delayed = run.to_delayed()
    assert [d.key for d in delayed] == [task_key(run.token, i) for i in run.sim_ids]
    args, kwargs = run.task(run.sim_ids[0])
    assert args[1] == run.sim_ids[0] and kwargs == {"owner": run.owner}
    assert dask.compute(*delayed, scheduler="sync") == ("complete",) * 3
    assert len(model.plan()) == 0


def test_a_changed_result_setting_changes_the_task_keys(tmp_path, idealized_met):
    model = _model(tmp_path / "proj", idealized_met)
    token = model.plan().token
    timeout = model.config.model_copy(
        update={"hysplit": model.config.hysplit.model_copy(update={"timeout": 7})}
    )
    assert Model(model.location.root, config=timeout).plan().token == token
    grid = {"default": model.config.footprints["default"].model_copy(update={"xres": 0.05})}
    other = Model(tmp_path / "other", model.receptors(), model.config.model_copy(
        update={"footprints": grid}))  # fmt: skip
    assert other.plan().token != _model(tmp_path / "again", idealized_met).plan().token


def _frames(text: str) -> list[dict[str, int]]:
    """The state counts of every progress frame drawn to a terminal."""
    found = []
    for frame in re.split(r"\r|\x1b\[[0-9;]*[A-Za-z]", text):
        counts = dict(re.findall(r"(complete-empty|complete|failed|running|pending) (\d+)", frame))
        if {"running", "pending"} <= set(counts):
            found.append({state: int(n) for state, n in counts.items()})
    return found


def test_progress_counts_add_up_in_every_frame(client):
    terminal = io.StringIO()
    console = Console(file=terminal, force_terminal=True, width=200)
    states = ["complete", "failed", "complete-empty", "complete", "complete"]
    outcomes = (Outcome(f"sim{i}", state) for i, state in enumerate(states))
    assert len(list(follow(outcomes, len(states), console, client))) == len(states)
    frames = _frames(terminal.getvalue())
    assert frames, terminal.getvalue()
    assert all(sum(frame.values()) == len(states) for frame in frames), frames
    assert frames[-1] == {"complete": 3, "complete-empty": 1, "failed": 1, "pending": 0,
                          "running": 0}  # fmt: skip


def test_an_interrupted_runs_last_frame_has_nothing_running(client):
    terminal = io.StringIO()
    console = Console(file=terminal, force_terminal=True, width=200)

    def two_then_interrupt():
        yield Outcome("a", "complete")
        yield Outcome("b", "complete")
        raise KeyboardInterrupt

    try:
        list(follow(two_then_interrupt(), 6, console, client))
    except KeyboardInterrupt:
        pass
    frames = _frames(terminal.getvalue())
    assert all(sum(frame.values()) == 6 for frame in frames), frames
    assert frames[-1] == {"complete": 2, "pending": 4, "running": 0}
