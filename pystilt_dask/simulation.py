"""One simulation, end to end: the idempotent unit of work.

:func:`run_simulation` is what a scheduler runs, once per simulation. It is safe
under at-least-once execution and against other coordinators working the same
project:

1. it checks completion first (a few key lookups) and returns if done;
2. it takes the simulation's claim, or returns ``"running"`` when another
   process holds it (see :mod:`pystilt_dask.store.claims`);
3. it reuses stored particles when only footprints are missing;
4. it publishes results in the order of :mod:`pystilt_dask.store.publish`, the
   footprint chunks (completion keys) last;
5. on failure it writes a failure record and nothing that looks complete;
6. when Dask gives up on the task (:func:`cancellation_probe`), it kills HYSPLIT,
   publishes nothing more and leaves the simulation pending.

With ``hysplit.seed`` set, repeated attempts write identical bytes.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc

from .config import ModelConfig
from .errors import HysplitError, StiltError, StoreUnwritable
from .footprint import footprint_layers
from .hysplit.run import CANCELLED, log_text
from .receptors import Receptor
from .store import claims, footprints, layout, particles, publish, records, registry
from .store.completion import CompletionRule, State
from .store.paths import Location
from .trajectory import Trajectories, simulate_trajectories

#: What runs HYSPLIT for a receptor: ``simulate(receptor, config, met) -> Trajectories``.
Simulator = Callable[[Receptor, ModelConfig, str], Trajectories]


def run_simulation(
    project: str | Location,
    sim_id: str,
    config: ModelConfig,
    skip_existing: bool = True,
    entry: pd.Series | None = None,
    simulate: Simulator | None = None,
    owner: str | None = None,
) -> str:
    """Run one registered simulation and publish its results to the project store.

    Parameters
    ----------
    project : str or Location
        The project store (path or fsspec URL).
    sim_id : str
        A registered simulation id.
    config : ModelConfig
        The project configuration (resolved on the client and passed in).
    skip_existing : bool
        Return at once if the simulation is complete, and reuse stored particles
        when only footprints are missing. ``False`` removes its results and redoes all.
    entry : pandas.Series, optional
        The simulation's registry entry, when the caller has it (a run's tasks always
        do: the coordinator reads the registry once instead of every task reading
        it); default: read from the store.
    simulate : callable, optional
        Produces the particles; default: HYSPLIT, killed when Dask gives up on
        the task. Tests where HYSPLIT is not the point pass their own.
    owner : str, optional
        The run this attempt belongs to (:func:`~pystilt_dask.store.claims.new_owner`):
        a retry of the same run takes its claim over at once. Default: this call alone.

    Returns
    -------
    str
        The resulting :class:`~pystilt_dask.store.State`: ``"complete"``,
        ``"complete-empty"``, ``"failed"``, or ``"running"`` when another process
        holds the simulation's claim.

    Raises
    ------
    Exception
        Unexpected errors (not a :class:`~pystilt_dask.errors.StiltError`) are
        recorded, then re-raised so the scheduler can retry.
    """
    location = project if isinstance(project, Location) else Location(project)
    if entry is None:
        entry = _read_entry(location, sim_id)
    rule = CompletionRule.from_config(config)
    row = int(entry["row"])
    if skip_existing:
        state, _ = rule.state(location.exists, sim_id, row)
        if state.done:
            return state.value
    with claims.hold(location, sim_id, owner) as claim:
        if claim is None:
            return State.RUNNING.value
        return _attempt(location, sim_id, entry, config, rule, skip_existing, simulate)


def _read_entry(location: Location, sim_id: str) -> pd.Series:
    """The registry entry of ``sim_id``, read now: one scan of the ids, no index built."""
    entries = registry.read(location).entries
    found = registry.Registry(entries.filter(pc.equal(entries["sim_id"], sim_id)), -1)
    return found.entry(sim_id)  # raises StoreError when it is not registered


def _attempt(
    location: Location,
    sim_id: str,
    entry: pd.Series,
    config: ModelConfig,
    rule: CompletionRule,
    skip_existing: bool,
    simulate: Simulator | None,
) -> str:
    """One attempt under the simulation's claim."""
    receptor, row = registry.receptor(entry), int(entry["row"])
    names = list(config.footprints)
    stored = None
    if skip_existing:
        # Checked again under the claim: another holder may have just finished.
        state, foot_states = rule.state(location.exists, sim_id, row)
        if state.done:
            return state.value
        stored = _stored_particles(location, sim_id, row, config)
        # A chunk at this row is reused only beside this simulation's own particles
        # at this row: after outside damage (a lost registry commit) a row can hold
        # another's chunk, and chunks are never written before their particles.
        todo = [name for name in names if stored is None or not foot_states[name].done]
    else:
        publish.invalidate(location, sim_id, row, names)
        todo = names
    step = "trajectory"
    cancelled = cancellation_probe()
    if simulate is None:
        simulate = functools.partial(simulate_trajectories, cancelled=cancelled)
    try:
        table = stored
        if table is None:
            table = _publish_run(location, receptor, entry, config, simulate, cancelled)
        for name in todo:
            step = f"footprint:{name}"
            fp_config = config.footprints[name]
            layers, values = footprint_layers(table, receptor, fp_config)
            chunk = footprints.place_layers(layers, values, fp_config, config.hysplit)
            _raise_if(cancelled)
            publish.publish_footprint(location, name, sim_id, row, chunk, layers.size == 0)
    except Exception as exc:
        if isinstance(exc, HysplitError) and exc.reason == CANCELLED:
            # Dask gave up on this task (cancelled, client closed, worker closing):
            # the simulation did not fail and stays pending; Dask drops the error.
            raise
        if isinstance(exc, StoreUnwritable):
            raise  # not this simulation's failure, and no record could be written
        records.write_failure(location, records.failure(exc, sim_id, step), _failed_log(exc))
        if isinstance(exc, StiltError):
            return State.FAILED.value
        raise
    publish.clear_failure(location, sim_id)
    return rule.state(location.exists, sim_id, row)[0].value


def _stored_particles(
    location: Location, sim_id: str, row: int, config: ModelConfig
) -> pd.DataFrame | None:
    """The stored particles, when they are intact and were written for this simulation at ``row``.

    Anything else (absent, damaged, another row's) is recomputed and replaced.
    """
    if config.hysplit.winderrtf and not location.exists(layout.error_particles_key(sim_id)):
        return None
    try:
        table, meta = particles.parse(location.read_bytes(layout.particles_key(sim_id)))
    except Exception:  # absent, or damaged: a fresh run replaces it
        return None
    if meta.get("sim_id") != sim_id or meta.get("row") != str(row):
        return None
    return table


def _publish_run(
    location: Location,
    receptor: Receptor,
    entry: pd.Series,
    config: ModelConfig,
    simulate: Simulator,
    cancelled: Callable[[], str | None] | None,
) -> pd.DataFrame:
    """Run the transport and publish its particles, the run's log inside; return them."""
    sim_id = receptor.sim_id
    run = simulate(receptor, config, str(entry["met"]))
    error_data = None
    if run.error_particles is not None:
        error_data = particles.to_bytes(run.error_particles, receptor, entry)
    # The log goes in as a retry would write it, so attempts stay byte-identical.
    data = particles.to_bytes(run.particles, receptor, entry, records.reproducible(run.log))
    _raise_if(cancelled)
    digested = publish.legacy(location, list(config.footprints))
    publish.publish_particles(location, sim_id, data, error_data, digested)
    return run.particles


def _failed_log(exc: BaseException) -> str | None:
    """The HYSPLIT output of a failed run, from the work directory it kept, if any."""
    workdir = exc.workdir if isinstance(exc, HysplitError) else None
    if workdir and os.path.isdir(workdir):
        return log_text(Path(workdir))
    return None


def _raise_if(cancelled: Callable[[], str | None] | None) -> None:
    """Stop before publishing when Dask has given up on this task: nothing publishes after."""
    why = cancelled() if cancelled is not None else None
    if why:
        raise HysplitError(CANCELLED, why)


def cancellation_probe() -> Callable[[], str | None] | None:
    """A cheap check of whether Dask has given up on the task running this thread.

    Dask cannot stop a running task: when the scheduler releases it (the future
    cancelled, its client closed), the worker only marks it ``cancelled`` and
    discards its result once it returns (distributed's
    ``WorkerState._transition_executing_released``). Polling that mark lets the
    task stop its own work instead of finishing it, and publishing it, for no one.

    Returns
    -------
    callable or None
        ``None`` outside a Dask task (plain calls, other schedulers). Inside one, a
        function returning why the task was given up (one line) or ``None`` while
        it still runs. It reads two attributes and may be called from any thread.

    Notes
    -----
    The task is given up when its worker-side ``TaskState`` is ``cancelled`` (or
    no longer the worker's: forgotten), or when the worker is closing, which
    fails its tasks over to other workers anyway. A task that is ``resumed``
    (cancelled, then asked for again while it still runs) keeps running, as its
    result is wanted again; one cancelled and re-requested between two polls is
    back to ``executing`` and is never seen cancelled, rightly.
    """
    # A thread of a Dask worker has imported distributed; anything else need not.
    if "distributed.worker" not in sys.modules:
        return None
    from distributed.core import Status
    from distributed.worker import get_worker, thread_state

    try:
        worker = get_worker()
    except ValueError:  # not inside a task
        return None
    key = getattr(thread_state, "key", None)
    task = worker.state.tasks.get(key) if key is not None else None
    if task is None:
        return None
    closing = (Status.closing, Status.closed, Status.failed)

    def given_up() -> str | None:
        if task.state in ("cancelled", "released", "forgotten"):
            return f"Dask task {key!r} was cancelled"
        if worker.state.tasks.get(key) is not task:
            return f"Dask task {key!r} was forgotten by its worker"
        if worker.status in closing:
            return f"Dask worker {worker.address} is {worker.status.name}"
        return None

    return given_up
