"""Simulation states of a whole project, derived from the store and nothing else.

One listing per key family (one ``os.scandir`` locally, about 0.1 s per 100,000
keys) gives the presence of every completion key; :mod:`.completion` turns that
into states, and claims (:mod:`.claims`) say which simulations are running,
whichever process runs them, and which were interrupted (a claim left by a
holder that is gone, or expired). No client or scheduler is asked.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import claims, layout
from .completion import (
    ERROR_PARTICLES,
    PARTICLES,
    STATES,
    CompletionRule,
    State,
    footprint_component,
)
from .paths import Location
from .registry import Registry


@dataclass(frozen=True)
class Status:
    """States of every registered simulation.

    Attributes
    ----------
    table : pandas.DataFrame
        Indexed by ``sim_id`` in row order; column ``state`` and one column per
        footprint name, all categorical with the :class:`State` values.
    claims : mapping of str to Claim
        The claims present, by simulation id, as read for this status (live or not).
    """

    table: pd.DataFrame
    claims: Mapping[str, claims.Claim] = field(default_factory=dict)

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
         'footprints': {'default': {'pending': 2, 'running': 0, 'complete': 7, ...}}}
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


def status(location: Location, registry: Registry, rule: CompletionRule) -> Status:
    """Derive every registered simulation's state from the keys present in the store."""
    index = registry.index
    ids = registry.entries["sim_id"]

    def by_id(names: Iterable[str]) -> np.ndarray:
        mask = np.zeros(len(index), dtype=bool)
        names = list(names)
        if names:  # an empty folder costs no lookup: a million pending simulations stay cheap
            found = pc.index_in(pa.array(names, pa.string()), value_set=ids.combine_chunks())
            positions = pc.drop_null(found).to_numpy()
            mask[positions] = True
        return mask

    def listed(folder: str, suffix: str) -> np.ndarray:
        # Expected names only cut large object-store folders into concurrent listings.
        expected = (f"{sim_id}{suffix}" for sim_id in index)
        return by_id(layout.strip_suffix(location.list_names(folder, expected), suffix))

    def chunks(name: str) -> np.ndarray:
        expected = (posixpath.basename(layout.chunk_key(name, row)) for row in registry.rows)
        names = location.list_names(layout.foot_array(name), expected)
        rows = [int(m.group(1)) for key in names if (m := layout.CHUNK_RE.match(key))]
        mask = np.zeros(len(index), dtype=bool)
        positions = registry.positions(rows)
        mask[positions[positions >= 0]] = True
        return mask

    present = {PARTICLES: listed(layout.PARTICLES, layout.PARQUET_SUFFIX)}
    if rule.error_run:
        present[ERROR_PARTICLES] = listed(layout.ERROR_PARTICLES, layout.PARQUET_SUFFIX)
    for name in rule.footprints:
        present[footprint_component(name)] = chunks(name)
    claimed = claims.current(location)
    table = rule.derive(
        present.__getitem__,
        lambda name: listed(layout.empty_folder(name), layout.EMPTY_SUFFIX),
        by_id(sim_id for sim_id, claim in claimed.items() if claim.live),
        listed(layout.FAILURES, layout.FAILURE_SUFFIX),
        by_id(sim_id for sim_id, claim in claimed.items() if not claim.live),
    )
    table.index = index
    return Status(table, claimed)
