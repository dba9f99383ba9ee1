"""One simulation, end to end: the idempotent unit of work.

:func:`run_simulation` is what a scheduler runs, once per simulation, under the
task key :func:`~pystilt_dask.store.status.task_key`. It is safe under
at-least-once execution and against concurrent attempts in other processes:

1. it checks completion first (a few key lookups) and returns if done;
2. it reuses stored particles when only footprints are missing;
3. it publishes results in the order of :mod:`pystilt_dask.store.publish`, the
   footprint chunks (completion keys) last;
4. on failure it writes a failure record and nothing that looks complete.

With ``hysplit.seed`` set, repeated attempts write identical bytes.
"""

from __future__ import annotations

import pandas as pd

from .config import ModelConfig
from .errors import StiltError
from .footprint import calc_footprint, is_empty
from .receptors import Receptor
from .store import footprints, layout, manifest, particles, publish, records
from .store.paths import Location
from .store.status import State, simulation_state
from .trajectory import simulate_trajectories


def run_simulation(
    project: str | Location,
    sim_id: str,
    config: ModelConfig,
    skip_existing: bool = True,
    entry: pd.Series | None = None,
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
        The simulation's manifest row, when the caller has it (a coordinator reads
        the manifest once instead of every task reading it); default: looked up.

    Returns
    -------
    str
        The resulting :class:`~pystilt_dask.store.status.State`: ``"complete"``,
        ``"complete-empty"`` or ``"failed"``.

    Raises
    ------
    Exception
        Unexpected errors (not a :class:`~pystilt_dask.errors.StiltError`) are
        recorded, then re-raised so the scheduler can retry.
    """
    location = project if isinstance(project, Location) else Location(project)
    if entry is None:
        entry = manifest.lookup(location, sim_id)
    receptor, row, met = manifest.receptor(entry), int(entry["row"]), str(entry["met"])
    names = list(config.footprints)
    error_run = bool(config.hysplit.winderrtf)
    if skip_existing:
        state, foot_states = simulation_state(location, sim_id, row, names, error_run)
        if state.done:
            return state.value
        todo = [name for name in names if not foot_states[name].done]
    else:
        publish.invalidate(location, sim_id, row, names)
        todo = names
    step = "trajectory"
    try:
        table = _particles(location, receptor, config, met, skip_existing)
        for name in todo:
            step = f"footprint:{name}"
            fp_config = config.footprints[name]
            foot = calc_footprint(table, receptor, fp_config)
            chunk = footprints.to_chunk(foot, fp_config, config.hysplit, receptor.time)
            publish.publish_footprint(location, name, sim_id, row, chunk, is_empty(foot))
    except Exception as exc:
        records.write_failure(location, records.failure(exc, sim_id, step))
        if isinstance(exc, StiltError):
            return State.FAILED.value
        raise
    publish.clear_failure(location, sim_id)
    state, _ = simulation_state(location, sim_id, row, names, error_run)
    return state.value


def _particles(
    location: Location, receptor: Receptor, config: ModelConfig, met: str, reuse: bool
) -> pd.DataFrame:
    """The simulation's particles: stored ones when reusable, else a fresh published run."""
    sim_id = receptor.sim_id
    stored = location.exists(layout.particles_key(sim_id))
    if config.hysplit.winderrtf:
        stored = stored and location.exists(layout.error_particles_key(sim_id))
    if reuse and stored:
        return particles.read(location, layout.particles_key(sim_id))
    run = simulate_trajectories(receptor, config, met)
    publish.publish_particles(location, receptor, met, run.particles, run.error_particles, run.log)
    return run.particles
