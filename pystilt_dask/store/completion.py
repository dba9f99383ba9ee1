"""The completion rule: the keys a simulation must have, and the states they imply.

A simulation is complete iff every one of its completion keys exists: its
particles, its transport-error particles (when configured) and the chunk of every
configured footprint. It is ``complete-empty`` when complete and every footprint
is marked empty. Otherwise it is ``running`` while a live claim holds it,
``failed`` when its last attempt left a failure record, ``interrupted`` when it
was started and never finished (its claim is left, but dead or expired, and it
has no failure record), and ``pending`` else.
Each footprint name gets the same states from its own chunk and marker.

A key counts as present when it exists unpacked or when ``stilt-dask compact``
packed it (:mod:`.packing`): a particle file when its block's particle file
lists the simulation, a chunk when its block's shard index holds the row, an
empty marker when its block's markers list it while the packed chunk is the one
read (an unpacked key wins over its packed copy).

This module is the only place that says so: the per-simulation check of a task,
the project-wide status (from listings) and verification all apply
:meth:`CompletionRule.derive` to presence masks of :meth:`CompletionRule.keys`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import layout, packing
from .paths import Location

if TYPE_CHECKING:
    from ..config import ModelConfig


class State(StrEnum):
    """The state of a simulation, or of one of its footprints."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETE = "complete"
    COMPLETE_EMPTY = "complete-empty"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    @property
    def done(self) -> bool:
        """Whether this state is terminal success."""
        return self in (State.COMPLETE, State.COMPLETE_EMPTY)


STATES = tuple(State)
_CATEGORIES = pd.CategoricalDtype([s.value for s in STATES])

PARTICLES = "particles"
ERROR_PARTICLES = "error_particles"


def footprint_component(name: str) -> str:
    """The completion component of footprint ``name``."""
    return f"footprint:{name}"


@dataclass(frozen=True)
class CompletionRule:
    """Which keys make a simulation complete, for one project configuration.

    Parameters
    ----------
    footprints : tuple of str
        The configured footprint names.
    error_run : bool
        Whether transport-error particles are part of every simulation.
    """

    footprints: tuple[str, ...]
    error_run: bool = False

    @classmethod
    def from_config(cls, config: ModelConfig) -> CompletionRule:
        """The rule of a project configuration."""
        return cls(tuple(config.footprints), bool(config.hysplit.winderrtf))

    def keys(self, sim_id: str, row: int) -> dict[str, str]:
        """Every completion key of one simulation, by component."""
        keys = {PARTICLES: layout.particles_key(sim_id)}
        if self.error_run:
            keys[ERROR_PARTICLES] = layout.error_particles_key(sim_id)
        for name in self.footprints:
            keys[footprint_component(name)] = layout.chunk_key(name, row)
        return keys

    def derive(
        self,
        present: Callable[[str], np.ndarray],
        empty: Callable[[str], np.ndarray],
        running: np.ndarray,
        failed: np.ndarray,
        interrupted: np.ndarray | None = None,
    ) -> pd.DataFrame:
        """States of many simulations from presence masks.

        Parameters
        ----------
        present : callable
            ``present(component)``: boolean mask of simulations holding that key.
        empty : callable
            ``empty(name)``: mask of simulations whose footprint ``name`` is marked empty.
        running, failed : numpy.ndarray
            Masks of simulations under a live claim / with a failure record.
        interrupted : numpy.ndarray, optional
            Mask of simulations whose claim is left but not live (default: none).

        Returns
        -------
        pandas.DataFrame
            Column ``state`` and one column per footprint name, categorical.
        """
        if interrupted is None:
            interrupted = np.zeros(len(running), bool)
        done = present(PARTICLES).copy()
        if self.error_run:
            done &= present(ERROR_PARTICLES)
        all_empty = np.full(len(done), bool(self.footprints))
        columns = {}
        for name in self.footprints:
            chunk = present(footprint_component(name))
            is_empty = chunk & empty(name)
            columns[name] = _states(chunk, is_empty, running, failed, interrupted)
            done &= chunk
            all_empty &= is_empty
        return pd.DataFrame(
            {"state": _states(done, all_empty, running, failed, interrupted), **columns}
        )

    def state(
        self, exists: Callable[[str], bool], sim_id: str, row: int, running: bool = False
    ) -> tuple[State, dict[str, State]]:
        """One simulation's state and its footprints' states, from existence checks.

        ``exists`` is a key check; given a project's ``Location.exists``, keys
        packed by ``compact`` count too.
        """
        exists = _with_packed(exists, sim_id, row)
        keys = self.keys(sim_id, row)
        flags = {component: np.array([exists(key)]) for component, key in keys.items()}
        empties = {
            name: np.array([exists(layout.empty_key(name, sim_id))])
            for name in self.footprints
            if flags[footprint_component(name)][0]
        }
        table = self.derive(
            flags.__getitem__,
            lambda name: empties.get(name, np.zeros(1, bool)),
            np.array([running]),
            np.array([exists(layout.failure_key(sim_id))]),
        )
        states = {column: State(table[column].iloc[0]) for column in table.columns}
        return states.pop("state"), states


def _with_packed(exists: Callable[[str], bool], sim_id: str, row: int) -> Callable[[str], bool]:
    """``exists``, also finding a key of ``sim_id`` packed into its block when it checks a store."""
    location = getattr(exists, "__self__", None)
    if not isinstance(location, Location):
        return exists

    def found(key: str) -> bool:
        return location.exists(key) or packing.packed_exists(location, key, sim_id, row)

    return found


def _states(
    done: np.ndarray,
    empty: np.ndarray,
    running: np.ndarray,
    failed: np.ndarray,
    interrupted: np.ndarray,
):
    codes = np.zeros(len(done), dtype="int8")
    codes[interrupted] = STATES.index(State.INTERRUPTED)
    codes[failed] = STATES.index(State.FAILED)
    codes[running] = STATES.index(State.RUNNING)
    codes[done] = STATES.index(State.COMPLETE)
    codes[done & empty] = STATES.index(State.COMPLETE_EMPTY)
    return pd.Categorical.from_codes(codes, dtype=_CATEGORIES)
