"""Feed simulations to a Dask scheduler in bounded waves.

Each simulation is one task keyed ``stilt-sim-<project token>-<id>`` (hyphens, so
the dashboard groups them as ``stilt-sim``; the token keeps two projects that
share a receptor apart on one client) that runs
:func:`~pystilt_dask.simulation.run_simulation` and is retried by the scheduler.
At most ``window`` tasks are in flight, so a project of 10⁶ simulations never
holds 10⁶ futures: the coordinator's memory stays flat and what is pending is
always read back from the store. Tasks ask for no worker resources, so any
worker a user brings (started later, adaptive, several threads) can run them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from dask.base import tokenize
from distributed import Client, as_completed

from ..config import ModelConfig
from ..simulation import run_simulation
from ..store import claims, records, registry
from ..store.completion import CompletionRule, State
from ..store.paths import Location

logger = logging.getLogger(__name__)

#: Tasks kept in flight per worker thread of the cluster.
WAVE_FACTOR = 4
#: Prefix of every simulation task key.
TASK_PREFIX = "stilt-sim-"


@dataclass(frozen=True)
class Outcome:
    """How one simulation task ended: a store state, or the error that ended it."""

    sim_id: str
    state: str
    error: str | None = None


def project_token(location: Location, config: ModelConfig) -> str:
    """A short token of a project: its store and the settings that change its results."""
    settings = {
        "hysplit": config.hysplit.result_settings(),
        "footprints": {n: fp.model_dump(mode="json") for n, fp in config.footprints.items()},
    }
    return tokenize(location.root, json.dumps(settings, sort_keys=True))[:10]


def task_key(token: str, sim_id: str) -> str:
    """The Dask task key of a simulation of the project with ``token``."""
    return f"{TASK_PREFIX}{token}-{sim_id}"


def capacity(client: Client) -> int:
    """Simulations the cluster runs at once: its worker threads (at least one)."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    return max(1, sum(int(w["nthreads"]) for w in workers))


def submit(
    client: Client,
    location: Location,
    sim_id: str,
    config: ModelConfig,
    skip_existing: bool = True,
    entry: Any = None,
    token: str | None = None,
    retries: int | None = None,
    owner: str | None = None,
) -> Any:
    """Submit one simulation task (with its registry entry, when known); return its future.

    ``owner`` names the run whose claims the task takes (one per coordinator run).
    """
    token = token or project_token(location, config)
    return client.submit(
        run_simulation,
        location,
        sim_id,
        config,
        skip_existing,
        entry,
        owner=owner or claims.new_owner(),
        key=task_key(token, sim_id),
        retries=config.execution.retries if retries is None else retries,
        pure=False,
    )


def run_waves(
    client: Client,
    project: str | Location,
    sim_ids: Iterable[str],
    config: ModelConfig,
    skip_existing: bool = True,
    window: int | None = None,
    retries: int | None = None,
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
        Most tasks in flight; default ``WAVE_FACTOR`` × worker threads, re-read
        as the cluster grows or shrinks (see :func:`capacity`).
    retries : int, optional
        Scheduler retries per task; default ``config.execution.retries``.

    Notes
    -----
    A simulation another coordinator holds (its task returns ``"running"``) is
    waited for: it ends as that coordinator leaves it, or is run here once its
    claim expires. A task that ends without a state (its worker killed, the task
    cancelled or lost) gets a failure record naming why. Closing the generator
    (or an exception in the consumer, such as Ctrl-C) cancels the tasks in
    flight; the store stays consistent because every task publishes its
    completion keys last.
    """
    location = project if isinstance(project, Location) else Location(project)
    # One read of the registry here spares every task reading all of it.
    table = registry.read(location).table
    token = project_token(location, config)
    rule = CompletionRule.from_config(config)
    owner = claims.new_owner()
    pending = iter(sim_ids)
    again: list[str] = []
    held: set[str] = set()
    in_flight = as_completed()
    futures: dict[str, str] = {}

    def refill() -> None:
        limit = window or WAVE_FACTOR * capacity(client)
        while len(futures) < limit:
            sim_id = again.pop() if again else next(pending, None)
            if sim_id is None:
                return
            entry = table.loc[sim_id] if sim_id in table.index else None
            future = submit(
                client, location, sim_id, config, skip_existing, entry, token, retries, owner
            )
            futures[future.key] = sim_id
            in_flight.add(future)

    try:
        while True:
            refill()
            if futures:
                future = next(in_flight)
                sim_id = futures.pop(future.key)
                outcome = _outcome(location, sim_id, future, owner)
                future.release()
                if outcome.state == State.RUNNING:
                    held.add(sim_id)
                else:
                    yield outcome
                continue
            if not held:
                return
            time.sleep(min(claims.ttl() / 6, 10.0))
            live = claims.live_ids(location)
            for sim_id in sorted(held):
                state, _ = rule.state(location.exists, sim_id, int(table.loc[sim_id, "row"]))
                if state.done or sim_id not in live:
                    held.discard(sim_id)
                    if state.done:
                        yield Outcome(sim_id, state.value)
                    else:
                        again.append(sim_id)
    finally:
        if futures:
            client.cancel(list(futures))


def _outcome(location: Location, sim_id: str, future: Any, owner: str) -> Outcome:
    if future.status == "finished":
        return Outcome(sim_id, future.result())
    # An attempt that died with its worker never released this run's claim.
    claims.release_owned(location, sim_id, owner)
    error = future.exception() if future.status == "error" else None
    detail = f"{type(error).__name__}: {error}" if error else f"task {future.status}"
    if records.read_failure(location, sim_id) is None:
        # The task never ran to its own error handling (worker killed, cancelled, lost).
        reason = type(error).__name__ if error else f"task {future.status}"
        records.write_failure(
            location,
            {**records.failure(error or RuntimeError(detail), sim_id, "task"), "reason": reason},
        )
    return Outcome(sim_id, State.FAILED.value, detail)
