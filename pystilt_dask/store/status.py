"""Simulation states of a whole project, derived from the store and nothing else.

One listing per key family (one ``os.scandir`` locally, about 0.1 s per 100,000
keys) gives the presence of every completion key; :mod:`.completion` turns that
into states (keys packed by ``compact`` too: the
block files and shards are listed, and each block's footer or shard index read
once), and claims (:mod:`.claims`) say which simulations are running,
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

from . import claims, layout, packing
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
    ids = registry.entries["sim_id"].combine_chunks()

    def by_id(names: Iterable[str]) -> np.ndarray:
        mask = np.zeros(len(index), dtype=bool)
        names = list(names)
        if names:  # an empty folder costs no lookup: a million pending simulations stay cheap
            found = pc.index_in(pa.array(names, pa.string()), value_set=ids)
            positions = pc.drop_null(found).to_numpy()
            mask[positions] = True
        return mask

    def names_in(folder: str, suffix: str) -> list[str]:
        # Expected names only cut large object-store folders into concurrent listings.
        return location.list_names(folder, (f"{sim_id}{suffix}" for sim_id in index))

    def listed(folder: str, suffix: str) -> np.ndarray:
        return by_id(layout.strip_suffix(names_in(folder, suffix), suffix))

    def particles(folder: str) -> np.ndarray:
        names = names_in(folder, layout.PARQUET_SUFFIX)
        mask = by_id(layout.strip_suffix(names, layout.PARQUET_SUFFIX))
        for block in layout.blocks_in(names):
            try:
                held = packing.block_ids(location, folder, block)
            except Exception:
                continue  # unreadable: its simulations are pending; verify names it
            # A block holds its own rows only: its ids are looked up among theirs,
            # not among every id (10^6 packed ids cost 0.4-0.8 s that way), and
            # compared at once when it holds every row in order, as compact writes it.
            start, stop = np.searchsorted(
                registry.rows, layout.BLOCK_ROWS * np.array([block, block + 1])
            )
            theirs = ids.slice(start, stop - start)
            if held == theirs.to_pylist():
                mask[start:stop] = True
                continue
            found = pc.index_in(pa.array(held, pa.string()), value_set=theirs)
            mask[start + pc.drop_null(found).to_numpy()] = True
        return mask

    def at_rows(rows) -> np.ndarray:
        mask = np.zeros(len(index), dtype=bool)
        positions = registry.positions(np.asarray(rows, dtype=np.int64))
        mask[positions[positions >= 0]] = True
        return mask

    def chunks(name: str) -> tuple[np.ndarray, np.ndarray]:
        """Masks of rows with an unpacked chunk, and of rows their block's shard holds."""
        expected = (posixpath.basename(layout.chunk_key(name, row)) for row in registry.rows)
        names = location.list_names(layout.foot_array(name), expected)
        unpacked = at_rows([int(m.group(1)) for key in names if (m := layout.CHUNK_RE.match(key))])
        packed = [
            block * layout.BLOCK_ROWS + packing.shard_positions(location, name, block)
            for block in packing.shard_blocks(location, name)
        ]
        return unpacked, at_rows(np.concatenate(packed) if packed else [])

    def empty(name: str) -> np.ndarray:
        unpacked, packed = found[name]
        expected = (f"{sim_id}{layout.EMPTY_SUFFIX}" for sim_id in index)
        markers = location.list_names(layout.empty_folder(name), expected)
        held = [i for block in layout.blocks_in(markers)
                for i in packing.empty_ids(location, name, block)]  # fmt: skip
        # A packed marker goes with its packed chunk: an unpacked chunk wins over both.
        return by_id(layout.strip_suffix(markers, layout.EMPTY_SUFFIX)) | (
            by_id(held) & packed & ~unpacked
        )

    present = {PARTICLES: particles(layout.PARTICLES)}
    if rule.error_run:
        present[ERROR_PARTICLES] = particles(layout.ERROR_PARTICLES)
    found = {name: chunks(name) for name in rule.footprints}
    for name, (unpacked, packed) in found.items():
        present[footprint_component(name)] = unpacked | packed
    claimed = claims.current(location)
    table = rule.derive(
        present.__getitem__,
        empty,
        by_id(sim_id for sim_id, claim in claimed.items() if claim.live),
        listed(layout.FAILURES, layout.FAILURE_SUFFIX),
        by_id(sim_id for sim_id, claim in claimed.items() if not claim.live),
    )
    table.index = index
    return Status(table, claimed)
