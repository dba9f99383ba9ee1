"""The write protocol of one simulation: completion keys are published last.

Every write is atomic. A simulation's outputs are published in this order:
log → particles → transport-error particles → per footprint (empty marker, then
chunk) → removal of the failure record. The footprint chunks are the last
completion keys, so an attempt killed at any point leaves the simulation
incomplete, and a retry rewrites identical keys (idempotent under at-least-once
execution). :func:`invalidate` runs in the reverse order: completion keys first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..receptors import Receptor
from . import footprints, layout, particles, records
from .paths import Location


def invalidate(location: Location, sim_id: str, row: int, names: Sequence[str]) -> None:
    """Remove a simulation's results, completion keys first, so it reads as pending."""
    for name in names:
        footprints.delete_chunk(location, name, row)
    for name in names:
        location.delete(layout.empty_key(name, sim_id))
    location.delete(layout.error_particles_key(sim_id))
    location.delete(layout.particles_key(sim_id))


def publish_particles(
    location: Location,
    receptor: Receptor,
    met: str | None,
    table: pd.DataFrame,
    error_table: pd.DataFrame | None = None,
    log: str | None = None,
) -> None:
    """Write the log, the particles and (when given) the transport-error particles."""
    sim_id = receptor.sim_id
    if log is not None:
        records.write_log(location, sim_id, log)
    particles.write(location, layout.particles_key(sim_id), table, receptor, met)
    if error_table is not None:
        particles.write(location, layout.error_particles_key(sim_id), error_table, receptor, met)


def publish_footprint(
    location: Location, name: str, sim_id: str, row: int, chunk: np.ndarray, empty: bool
) -> None:
    """Write one footprint: its empty marker (or the marker's removal), then its chunk."""
    marker = layout.empty_key(name, sim_id)
    if empty:
        location.write_bytes(marker, b"")
    else:
        location.delete(marker)
    footprints.write_chunk(location, name, row, chunk)


def clear_failure(location: Location, sim_id: str) -> None:
    """Remove the failure record of a simulation that has completed."""
    location.delete(layout.failure_key(sim_id))
