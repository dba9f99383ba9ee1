"""Feed a run's simulations to a Dask scheduler in bounded waves.

Each simulation is one task (see :meth:`pystilt_dask.execution.Run.submit`) that
runs :func:`~pystilt_dask.simulation.run_simulation` and is retried by the
scheduler. At most ``window`` tasks are in flight, so a project of 10⁶
simulations never holds 10⁶ futures: the coordinator's memory stays flat. Tasks
ask for no worker resources, so any worker a user brings (started later,
adaptive, several threads) can run them.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import CancelledError
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from distributed import Client, as_completed
from distributed.scheduler import KilledWorker

from ..errors import StoreError, StoreUnwritable
from ..store import claims, records
from ..store.completion import State

if TYPE_CHECKING:
    from .run import Run

#: Tasks kept in flight per worker thread of the cluster.
WAVE_FACTOR = 4
#: Held simulations named in one line; the rest are counted.
NAMED = 3
#: Times a simulation is sent again after Dask gave up on its task before it ever
#: started (its worker died while it waited there): a bound, not a retry policy.
REQUEUES = 3

logger = logging.getLogger(__name__)


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


def run_waves(
    client: Client,
    run: Run,
    window: int | None = None,
    notify: Callable[[str], None] | None = None,
) -> Iterator[Outcome]:
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
    notify : callable, optional
        Called with one line whenever the simulations this run waits for (held
        by other coordinators) change; default: a warning on this module's logger.

    Raises
    ------
    StoreError
        When, all else done, simulations remain under stuck claims (see
        :mod:`pystilt_dask.store.claims`), naming them and how to free them.

    Notes
    -----
    A simulation another coordinator holds (its task returns ``"running"``) is
    waited for, never silently (``notify`` names it, its holder and until
    when): it ends as that coordinator leaves it, or is run here once its claim
    is no longer live (expired on the store's clock, or its holder's process is
    gone). A simulation under a stuck claim is not waited for. A task that ends
    without a state (its worker killed, the task cancelled or lost) gets a
    failure record naming why, but for one Dask gave up on (``KilledWorker``)
    while it waited on a worker that another task killed: it never started (it
    took no claim), so it is sent again, at most :data:`REQUEUES` times. Closing
    the generator (or an exception in the consumer, such as Ctrl-C) cancels the
    tasks in flight; the store stays consistent because every task publishes
    its completion keys last.
    """
    location = run.model.location
    rule = run.model.completion
    pending = iter(run.sim_ids)
    again: list[str] = []
    held: set[str] = set()
    stuck: dict[str, claims.Claim] = {}
    told: tuple = ()
    say = notify or logger.warning
    in_flight = as_completed()
    futures: dict[str, str] = {}
    requeued: Counter[str] = Counter()

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
                outcome = _outcome(run, sim_id, future, requeued[sim_id] < REQUEUES)
                future.release()
                if outcome is None:
                    requeued[sim_id] += 1
                    again.append(sim_id)
                elif outcome.state == State.RUNNING:
                    held.add(sim_id)
                else:
                    yield outcome
                continue
            if not held:
                if stuck:
                    raise StoreError(_stuck_message(stuck, location.root))
                return
            current = claims.current(location)
            for sim_id in sorted(held):
                state, _ = rule.state(location.exists, sim_id, run.registry.row(sim_id))
                claim = current.get(sim_id)
                if state.done or claim is None or not claim.live or claim.stuck:
                    held.discard(sim_id)
                    if state.done:
                        yield Outcome(sim_id, state.value)
                    elif claim is not None and claim.stuck:
                        stuck[sim_id] = claim
                    else:
                        again.append(sim_id)
            waiting = {sim_id: current[sim_id] for sim_id in sorted(held)}
            # Said again when who holds what changes, not at every renewal.
            holders = tuple((sim_id, claim.holder) for sim_id, claim in waiting.items())
            if holders and holders != told:
                say(_held_line(waiting))
            told = holders
            if held:
                time.sleep(min(claims.ttl() / 6, 10.0))
    finally:
        if futures:
            client.cancel(list(futures))


def _listing(held: Mapping[str, claims.Claim]) -> str:
    named = [f"{sim_id} ({claim.describe()})" for sim_id, claim in list(held.items())[:NAMED]]
    more = f"; and {len(held) - NAMED} more" if len(held) > NAMED else ""
    return "; ".join(named) + more


def _held_line(held: Mapping[str, claims.Claim]) -> str:
    return f"waiting for {len(held)} simulations held by other coordinators: {_listing(held)}"


def _stuck_message(stuck: Mapping[str, claims.Claim], root: str) -> str:
    return (
        f"{len(stuck)} simulations were not run: their claims outlive any renewal "
        f"(written with a clock far ahead?): {_listing(stuck)}; if their holders are gone, "
        f"free them with `stilt-dask claims {root} --release ID` and run again"
    )


def _outcome(run: Run, sim_id: str, future: Any, requeue: bool) -> Outcome | None:
    """How ``sim_id``'s task ended; ``None``: it never started, send it again (``requeue``)."""
    location, owner = run.model.location, run.owner
    try:
        # Waits while Dask recomputes a result lost with its worker (the
        # "Couldn't gather keys … rescheduling" of a worker killed after the task
        # finished); raises what ended the task, or that the recomputation failed.
        return Outcome(sim_id, future.result())
    except CancelledError:
        error = None
    except Exception as exc:
        error = exc
    claim = claims.current(location).get(sim_id)
    ours = claim is not None and claim.holder.run == owner
    if ours:
        # An attempt that died with its worker never released this run's claim.
        claims.release(location, claim)
    if isinstance(error, StoreUnwritable):
        # Every other simulation would meet the same refusal: stop the run here.
        raise StoreUnwritable(
            f"{error}; the run stopped, its unfinished simulations stay pending "
            "(run again once the store takes writes)"
        )
    if isinstance(error, KilledWorker):
        state, _ = run.model.completion.state(location.exists, sim_id, run.registry.row(sim_id))
        if state.done:  # it finished before its worker died, unreported
            return Outcome(sim_id, state.value)
        if not ours and requeue:
            # Dask counts a death against every task sent to that worker, also
            # those waiting there behind the one that killed it: this one took no
            # claim, so it never started.
            return None
    detail = f"{type(error).__name__}: {error}" if error else f"task {future.status}"
    killed = isinstance(error, KilledWorker)
    if killed or records.read_failure(location, sim_id) is None:
        # The task never ran to its own error handling (worker killed, cancelled, lost).
        reason = type(error).__name__ if error else f"task {future.status}"
        record = {
            **records.failure(error or RuntimeError(detail), sim_id, "task"),
            "reason": reason,
        }
        if killed and ours:
            holder = claim.holder
            record["message"] += f" Its last attempt ran in process {holder.pid} on {holder.host}."
        records.write_failure(location, record)
    return Outcome(sim_id, State.FAILED.value, detail)
