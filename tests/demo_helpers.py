"""Shared pieces of the tests on the demo project: its run, its time bins, another
``hycs_std`` for it; and a scheduler that refuses to compute."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dask
import pandas as pd
import yaml

import pystilt_dask as stilt
from pystilt_dask.demo import make_demo_project


def small_demo(folder: Path, receptors: int = 4) -> Path:
    """The demo project at 20 particles, not its 100, for tests whose point is what is
    done with the footprints (not their noise): most of a demo run's CPU is HYSPLIT's."""
    config = make_demo_project(folder, receptors)
    settings = yaml.safe_load(config.read_text())
    settings["hysplit"]["numpar"] = 20
    config.write_text(yaml.safe_dump(settings))
    return config


def run_demo(folder: Path, receptors: int = 4) -> stilt.Model:
    """:func:`small_demo` (idealized met, real ``hycs_std``) in ``folder``, every simulation run."""
    model = stilt.Model.from_yaml(small_demo(folder, receptors))
    assert set(dask.compute(*model.to_delayed(), scheduler="threads")) == {"complete"}
    return model


def use_hycs_std(config: Path, executable: Path, execution: dict | None = None) -> None:
    """Make the project of ``config`` run ``executable`` as HYSPLIT, and ``execution``
    (the config's section) replace its execution settings when given."""
    settings = yaml.safe_load(config.read_text())
    settings["hysplit"]["executable"] = str(executable)
    if execution:
        settings["execution"] = execution
    config.write_text(yaml.safe_dump(settings))


def worker_killer(record: str, coordinator: str = "*stilt-dask*") -> str:
    """Shell lines for a ``hycs_std`` stand-in that kills -9 the Dask worker process
    running it, after appending that process's id to the file ``record`` (shell-quoted).

    The worker is the nearest ancestor started by multiprocessing (spawn or forkserver).
    Reaching the ``coordinator`` (a ``case`` pattern) or init first means the worker is
    not a separate process: the stand-in then fails as HYSPLIT does (exit 3) instead
    of killing anything. The worker's death takes the stand-in with it
    (PR_SET_PDEATHSIG), which is why the id is recorded before the kill.
    """
    return f"""pid=$$
while [ "$pid" -gt 1 ]; do
  pid=$(awk '/^PPid:/ {{print $2}}' "/proc/$pid/status")
  case "$(tr '\\0' ' ' < "/proc/$pid/cmdline")" in
    {coordinator}) exit 3 ;;
    *multiprocessing*) echo "$pid" >> {record}; kill -9 "$pid"; exec sleep 600 ;;
  esac
done
exit 3
"""


def demo_bins(freq: str) -> pd.IntervalIndex:
    """Time bins of ``freq``, closed on the left, over the demo footprints' 12 hours."""
    start, end = pd.Timestamp("2024-07-15 00:00"), pd.Timestamp("2024-07-15 12:00")
    return pd.interval_range(start, end, freq=freq, closed="left")


@contextmanager
def computing_refused() -> Iterator[None]:
    """Fail any dask computation inside: building an analysis must stay lazy."""

    def refuse(*args, **kwargs):
        raise AssertionError("dask computed while an analysis was being built")

    with dask.config.set(scheduler=refuse):
        yield
