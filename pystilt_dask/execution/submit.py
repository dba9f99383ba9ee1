"""Feed simulations to a Dask scheduler in bounded waves.

Each simulation is one task keyed ``stilt-sim-<id>`` (hyphens, so the dashboard
groups them as ``stilt-sim``) that runs
:func:`~pystilt_dask.simulation.run_simulation`, needs one ``hysplit`` resource
and is retried by the scheduler. At most ``window`` tasks are in flight, so a
project of 10⁶ simulations never holds 10⁶ futures: the coordinator's memory
stays flat and what is pending is always read back from the store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
from distributed import Client, as_completed

from ..config import ModelConfig
from ..simulation import run_simulation
from ..store import manifest
from ..store.paths import Location
from ..store.status import task_key

logger = logging.getLogger(__name__)

#: Tasks kept in flight per HYSPLIT slot of the cluster.
WAVE_FACTOR = 4
#: What each simulation task asks of its worker: one HYSPLIT slot.
HYSPLIT_SLOT = {"hysplit": 1}


@dataclass(frozen=True)
class Outcome:
    """How one simulation task ended: a store state, or the error that ended it."""

    sim_id: str
    state: str
    error: str | None = None


def capacity(client: Client) -> tuple[int, dict[str, int] | None]:
    """Simulations the cluster runs at once, and the resources each task asks for.

    Workers started by pystilt_dask advertise one ``hysplit`` slot each, and every
    task asks for one. A cluster whose workers advertise none (a plain
    ``SLURMCluster()`` or ``LocalCluster()`` of your own) runs one task per worker
    thread instead; give such workers one thread each for one HYSPLIT per core.
    """
    workers = list(client.scheduler_info(n_workers=-1)["workers"].values())
    slots = int(sum(w.get("resources", {}).get("hysplit", 0) for w in workers))
    if slots or not workers:
        return max(1, slots), HYSPLIT_SLOT
    return sum(int(w["nthreads"]) for w in workers), None


def submit(
    client: Client,
    project: str | Location,
    sim_id: str,
    config: ModelConfig,
    skip_existing: bool = True,
    entry: pd.Series | None = None,
    resources: dict[str, int] | None = HYSPLIT_SLOT,
) -> Any:
    """Submit one simulation task (with its manifest row, when known) and return its future."""
    return client.submit(
        run_simulation,
        project,
        sim_id,
        config,
        skip_existing,
        entry,
        key=task_key(sim_id),
        resources=resources,
        retries=config.execution.retries,
        pure=False,
    )


def run_waves(
    client: Client,
    project: str | Location,
    sim_ids: Iterable[str],
    config: ModelConfig,
    skip_existing: bool = True,
    window: int | None = None,
) -> Iterator[Outcome]:
    """Run simulations on ``client``, yielding each :class:`Outcome` as it finishes.

    Parameters
    ----------
    client : distributed.Client
        Connected client.
    project : str or Location
        Project store (path or URL) the workers can reach.
    sim_ids : iterable of str
        Simulations to run; consumed lazily, ``window`` at a time.
    config : ModelConfig
        Resolved configuration, shipped to the tasks.
    skip_existing : bool
        Passed to each task: skip work whose results exist.
    window : int, optional
        Most tasks in flight; default ``WAVE_FACTOR`` × HYSPLIT slots, re-read
        as the cluster grows or shrinks (see :func:`capacity`).

    Notes
    -----
    Closing the generator (or an exception in the consumer, such as Ctrl-C)
    cancels the tasks in flight; the store stays consistent because every task
    publishes its completion keys last.
    """
    pending = iter(sim_ids)
    location = project if isinstance(project, Location) else Location(project)
    # One read of the manifest here spares every task reading all of it.
    entries = manifest.read(location).set_index("sim_id", drop=False)
    in_flight = as_completed()
    futures: dict[str, Any] = {}

    def refill() -> None:
        slots, resources = capacity(client)
        limit = window or WAVE_FACTOR * slots
        while len(futures) < limit:
            sim_id = next(pending, None)
            if sim_id is None:
                return
            entry = entries.loc[sim_id] if sim_id in entries.index else None
            future = submit(client, location, sim_id, config, skip_existing, entry, resources)
            futures[sim_id] = future
            in_flight.add(future)

    try:
        refill()
        for future in in_flight:
            sim_id = _sim_id(future.key)
            futures.pop(sim_id, None)
            if future.status == "finished":
                outcome = Outcome(sim_id, future.result())
            else:
                error = future.exception() if future.status == "error" else None
                detail = f"{type(error).__name__}: {error}" if error else f"task {future.status}"
                outcome = Outcome(sim_id, "failed", detail)
            future.release()
            refill()
            yield outcome
    finally:
        if futures:
            client.cancel(list(futures.values()))


def _sim_id(key: str) -> str:
    return key.removeprefix(task_key(""))
