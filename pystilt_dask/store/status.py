"""Simulation states, derived from the keys in the store and nothing else.

A simulation is ``complete`` iff its particles file (and its transport-error
particles, when configured) and the chunk of every configured footprint exist;
``complete-empty`` iff it is complete and every footprint is empty (marked by an
``.empty`` key, so no footprint data is read). Otherwise it is ``running`` if a
live Dask scheduler is processing it, ``failed`` if a failure record exists, and
``pending`` otherwise. Footprint names get the same states from their own chunk
and marker.

A project-wide status costs one directory listing per key family (one
``os.scandir`` locally, about 0.1 s per 100,000 keys); a single simulation's
state costs a handful of existence checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
from distributed import default_client

from . import layout, manifest
from .paths import Location


class State(StrEnum):
    """The state of a simulation, or of one of its footprints."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETE = "complete"
    COMPLETE_EMPTY = "complete-empty"
    FAILED = "failed"

    @property
    def done(self) -> bool:
        """Whether this state is terminal success."""
        return self in (State.COMPLETE, State.COMPLETE_EMPTY)


STATES = tuple(State)

#: Prefix of the Dask task key of a simulation: ``stilt-sim-<sim_id>``.
TASK_PREFIX = "stilt-sim-"


def task_key(sim_id: str) -> str:
    """The Dask task key of a simulation (one task group ``stilt-sim`` on the dashboard)."""
    return f"{TASK_PREFIX}{sim_id}"


def running_ids(client: Any = None) -> set[str]:
    """Ids of simulations a live scheduler is processing (empty without a client).

    Parameters
    ----------
    client : distributed.Client, optional
        Default: the current client, if there is one.
    """
    if client is None:
        try:
            client = default_client()
        except ValueError:
            return set()
    # Asked through the client API, so the scheduler needs no pystilt_dask installed.
    return {
        key.removeprefix(TASK_PREFIX)
        for keys in client.processing().values()
        for key in keys
        if isinstance(key, str) and key.startswith(TASK_PREFIX)
    }


_CATEGORIES = pd.CategoricalDtype([s.value for s in STATES])


def _derive(done: np.ndarray, empty: np.ndarray, running: np.ndarray, failed: np.ndarray):
    codes = np.zeros(len(done), dtype="int8")
    codes[failed] = STATES.index(State.FAILED)
    codes[running] = STATES.index(State.RUNNING)
    codes[done] = STATES.index(State.COMPLETE)
    codes[done & empty] = STATES.index(State.COMPLETE_EMPTY)
    return pd.Categorical.from_codes(codes, dtype=_CATEGORIES)


@dataclass(frozen=True)
class Status:
    """States of every registered simulation.

    Attributes
    ----------
    table : pandas.DataFrame
        Indexed by ``sim_id`` in registration order; column ``state`` and one
        column per footprint name, all categorical with the :class:`State` values.
    """

    table: pd.DataFrame

    @property
    def footprints(self) -> list[str]:
        """The footprint names."""
        return [c for c in self.table.columns if c != "state"]

    def counts(self) -> dict:
        """Counts per state, then ``"footprints"``: the same per footprint name.

        Examples
        --------
        >>> status.counts()  # doctest: +SKIP
        {'pending': 2, 'running': 0, 'complete': 7, 'complete-empty': 1, 'failed': 0,
         'footprints': {'slv': {'pending': 2, 'running': 0, 'complete': 7, ...}}}
        """

        def count(column: str) -> dict[str, int]:
            values = self.table[column].value_counts()
            return {s.value: int(values.get(s.value, 0)) for s in STATES}

        return {**count("state"), "footprints": {n: count(n) for n in self.footprints}}

    def ids(self, *states: State | str, footprint: str | None = None) -> list[str]:
        """Simulation ids in any of ``states`` (of footprint ``footprint`` when given)."""
        column = self.table["state" if footprint is None else footprint]
        wanted = [State(s).value for s in states]
        return self.table.index[column.isin(wanted).to_numpy()].tolist()

    def __len__(self) -> int:
        return len(self.table)


def status(
    location: Location,
    footprints: Sequence[str],
    error_run: bool = False,
    running: Iterable[str] = (),
) -> Status:
    """Derive every simulation's state from the keys present in the store.

    Parameters
    ----------
    location : Location
        The project.
    footprints : sequence of str
        The configured footprint names.
    error_run : bool
        Whether transport-error particles are part of completion.
    running : iterable of str
        Ids a live scheduler is processing.
    """
    sim_ids = manifest.read(location, columns=["sim_id"])["sim_id"].to_numpy(dtype=object)
    index = pd.Index(sim_ids)
    n = len(index)

    def present(ids: Iterable[str]) -> np.ndarray:
        mask = np.zeros(n, dtype=bool)
        positions = index.get_indexer(list(ids))
        mask[positions[positions >= 0]] = True
        return mask

    def listed(folder: str, suffix: str) -> np.ndarray:
        return present(layout.strip_suffix(location.list_names(folder), suffix))

    required = listed(layout.PARTICLES, layout.PARQUET_SUFFIX)
    if error_run:
        required &= listed(layout.ERROR_PARTICLES, layout.PARQUET_SUFFIX)
    failed = listed(layout.FAILURES, layout.FAILURE_SUFFIX)
    active = present(running)
    columns = {}
    all_done, all_empty = required.copy(), np.ones(n, dtype=bool)
    for name in footprints:
        done = _chunks(location, name, n)
        empty = done & listed(layout.empty_folder(name), layout.EMPTY_SUFFIX)
        columns[name] = _derive(done, empty, active, failed)
        all_done &= done
        all_empty &= empty
    if not footprints:
        all_empty[:] = False
    table = pd.DataFrame(
        {"state": _derive(all_done, all_empty, active, failed), **columns},
        index=pd.Index(sim_ids, name="sim_id"),
    )
    return Status(table)


def _chunks(location: Location, name: str, n: int) -> np.ndarray:
    rows = [
        int(match.group(1))
        for key in location.list_names(layout.foot_array(name))
        if (match := layout.CHUNK_RE.match(key))
    ]
    mask = np.zeros(n, dtype=bool)
    rows_array = np.asarray(rows, dtype=np.int64)
    mask[rows_array[rows_array < n]] = True
    return mask


def simulation_state(
    location: Location, sim_id: str, row: int, footprints: Sequence[str], error_run: bool = False
) -> tuple[State, dict[str, State]]:
    """One simulation's state and its footprints' states, from existence checks alone.

    ``running`` is never reported here: only a scheduler knows it.
    """
    failed = location.exists(layout.failure_key(sim_id))
    fallback = State.FAILED if failed else State.PENDING
    states = {}
    for name in footprints:
        if not location.exists(layout.chunk_key(name, row)):
            states[name] = fallback
        elif location.exists(layout.empty_key(name, sim_id)):
            states[name] = State.COMPLETE_EMPTY
        else:
            states[name] = State.COMPLETE
    done = location.exists(layout.particles_key(sim_id))
    if error_run:
        done = done and location.exists(layout.error_particles_key(sim_id))
    done = done and all(s.done for s in states.values())
    if not done:
        return fallback, states
    if states and all(s is State.COMPLETE_EMPTY for s in states.values()):
        return State.COMPLETE_EMPTY, states
    return State.COMPLETE, states
