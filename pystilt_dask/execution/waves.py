"""Feed a run's simulations to a Dask scheduler in bounded waves.

Each simulation is one task (see :meth:`pystilt_dask.execution.Run.submit`) that
runs :func:`~pystilt_dask.simulation.run_simulation` and is retried by the
scheduler. At most ``window`` tasks are in flight, so a project of 10⁶
simulations never holds 10⁶ futures: the coordinator's memory stays flat. Tasks
ask for no worker resources, so any worker a user brings (started later,
adaptive, several threads) can run them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from distributed import Client, as_completed

from ..errors import StoreUnwritable
from ..store import claims, records
from ..store.completion import State
from ..store.paths import Location

if TYPE_CHECKING:
    from .run import Run

#: Tasks kept in flight per worker thread of the cluster.
WAVE_FACTOR = 4


@dataclass(frozen=True)
class Outcome:
    """How one simulation task ended: a store state, or the error that ended it."""

    sim_id: str
    state: str
    error: str | None = None


def capacity(client: Client) -> int:
    """Simulations the cluster runs at once: its worker threads (at least one)."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    return max(1, sum(int(w["nthreads"]) for w in workers))


def run_waves(client: Client, run: Run, window: int | None = None) -> Iterator[Outcome]:
    """Run ``run``'s simulations on ``client``, yielding each :class:`Outcome` as it finishes.

    Parameters
    ----------
    client : distributed.Client
        Connected client.
    run : Run
        The planned run; its simulations are sent ``window`` at a time.
    window : int, optional
        Most tasks in flight; default ``WAVE_FACTOR`` × worker threads, re-read
        as the cluster grows or shrinks (see :func:`capacity`).

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
    location, owner = run.model.location, run.owner
    rule = run.model.completion
    pending = iter(run.sim_ids)
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
            future = run.submit(client, sim_id)
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
                state, _ = rule.state(location.exists, sim_id, run.registry.row(sim_id))
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
    if isinstance(error, StoreUnwritable):
        # Every other simulation would meet the same refusal: stop the run here.
        raise StoreUnwritable(
            f"{error}; the run stopped, its unfinished simulations stay pending "
            "(run again once the store takes writes)"
        )
    detail = f"{type(error).__name__}: {error}" if error else f"task {future.status}"
    if records.read_failure(location, sim_id) is None:
        # The task never ran to its own error handling (worker killed, cancelled, lost).
        reason = type(error).__name__ if error else f"task {future.status}"
        records.write_failure(
            location,
            {**records.failure(error or RuntimeError(detail), sim_id, "task"), "reason": reason},
        )
    return Outcome(sim_id, State.FAILED.value, detail)
