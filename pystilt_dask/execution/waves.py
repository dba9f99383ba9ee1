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
    from .run import Item, Run

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
    """How one simulation task ended: a store state, or the error that ended it.

    ``prefix`` is the result prefix it ran for (``""``: the plain run; see
    :mod:`pystilt_dask.ensemble`).
    """

    sim_id: str
    state: str
    error: str | None = None
    prefix: str = ""

    @property
    def name(self) -> str:
        """The simulation as a run reports it: ``<prefix><sim_id>`` (``realizations/1/<id>``)."""
        return f"{self.prefix}{self.sim_id}"


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
    pending = run.items()
    again: list[Item] = []
    held: set[Item] = set()
    stuck: dict[str, claims.Claim] = {}
    told: tuple = ()
    say = notify or logger.warning
    in_flight = as_completed()
    futures: dict[str, Item] = {}
    sent: dict[Item, Any] = {}
    requeued: Counter[Item] = Counter()

    def refill() -> None:
        limit = window or WAVE_FACTOR * capacity(client)
        while len(futures) < limit:
            item = again.pop() if again else next(pending, None)
            if item is None:
                return
            prefix, sim_id = item
            shares = run.shares(prefix)
            before = sent.get((shares, sim_id)) if shares is not None else None
            future = run.submit(client, sim_id, prefix, before)
            futures[future.key] = item
            sent[item] = future
            in_flight.add(future)

    try:
        while True:
            refill()
            if futures:
                future = next(in_flight)
                item = futures.pop(future.key)
                outcome = _outcome(run, item, future, requeued[item] < REQUEUES)
                del sent[item]
                future.release()
                if outcome is None:
                    requeued[item] += 1
                    again.append(item)
                elif outcome.state == State.RUNNING:
                    held.add(item)
                else:
                    yield outcome
                continue
            if not held:
                if stuck:
                    raise StoreError(_stuck_message(stuck, run.model.location.root))
                return
            waiting: dict[str, claims.Claim] = {}
            for prefix in sorted({prefix for prefix, _ in held}):
                location, rule = run.location(prefix), run.rule(prefix)
                current = claims.current(location)
                for item in sorted(i for i in held if i[0] == prefix):
                    sim_id = item[1]
                    state, _ = rule.state(location.exists, sim_id, run.registry.row(sim_id))
                    claim = current.get(sim_id)
                    if state.done or claim is None or not claim.live or claim.stuck:
                        held.discard(item)
                        if state.done:
                            yield Outcome(sim_id, state.value, prefix=prefix)
                        elif claim is not None and claim.stuck:
                            stuck[prefix + sim_id] = claim
                        else:
                            again.append(item)
                    else:
                        waiting[prefix + sim_id] = claim
            # Said again when who holds what changes, not at every renewal.
            holders = tuple((name, claim.holder) for name, claim in waiting.items())
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


def _outcome(run: Run, item: Item, future: Any, requeue: bool) -> Outcome | None:
    """How ``item``'s task ended; ``None``: it never started, send it again (``requeue``)."""
    prefix, sim_id = item
    location, owner = run.location(prefix), run.owner
    try:
        # Waits while Dask recomputes a result lost with its worker (the
        # "Couldn't gather keys … rescheduling" of a worker killed after the task
        # finished); raises what ended the task, or that the recomputation failed.
        return Outcome(sim_id, future.result(), prefix=prefix)
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
        state, _ = run.rule(prefix).state(location.exists, sim_id, run.registry.row(sim_id))
        if state.done:  # it finished before its worker died, unreported
            return Outcome(sim_id, state.value, prefix=prefix)
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
    return Outcome(sim_id, State.FAILED.value, detail, prefix)
