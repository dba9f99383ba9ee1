"""The write protocol of one simulation: completion keys last, each carrying its own digest.

Every write is atomic. A simulation's outputs are published in this order:
particles (with the HYSPLIT log of the run inside) → transport-error particles →
per footprint (empty marker, then chunk) → removal of the failure record and log.
A particle file carries its page CRCs and a chunk its CRC-32C, written in the
same atomic write as the data they protect, so every complete-looking key can be
checked by whoever reads it. An attempt killed at any point leaves the simulation
incomplete; a retry rewrites identical keys (idempotent under at-least-once
execution). :func:`invalidate` runs in the reverse order. Writers write only
unpacked keys, also after ``stilt-dask compact`` packed others (:mod:`.packing`).

Footprint arrays made in format 1 (no ``crc32c`` codec) still get a digest object
(:mod:`~pystilt_dask.store.digests`), recorded before the key it describes, for
their chunks and for the simulation's particle files; :func:`legacy` says when.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import chunks, digests, footprints, layout, records
from .completion import ERROR_PARTICLES, PARTICLES, footprint_component
from .paths import Location


def legacy(location: Location, names: Sequence[str]) -> bool:
    """Whether any of these footprint arrays is format 1, so digests are recorded for them."""
    return any(
        not chunks.checked(footprints.foot_array(location, name, read_only=True)) for name in names
    )


def invalidate(location: Location, sim_id: str, row: int, names: Sequence[str]) -> None:
    """Remove a simulation's unpacked results, completion keys first.

    Copies that ``compact`` packed stay (a writer never rewrites a shared packed
    object): the simulation reads as its packed results until the keys written
    next replace them, since an unpacked key wins over its packed copy
    (:mod:`.packing`); the next ``compact`` packs the new keys in their place.
    """
    for name in names:
        footprints.delete_chunk(location, name, row)
    for name in names:
        location.delete(layout.empty_key(name, sim_id))
    location.delete(layout.error_particles_key(sim_id))
    location.delete(layout.particles_key(sim_id))
    location.delete(layout.checksums_key(sim_id))


def publish_particles(
    location: Location,
    sim_id: str,
    data: bytes,
    error_data: bytes | None = None,
    record_digests: bool = False,
) -> None:
    """Write the particle file (and the transport-error one).

    ``record_digests``: record their format 1 digests first (see :func:`legacy`).
    """
    if record_digests:
        found = {PARTICLES: digests.digest(data)}
        if error_data is not None:
            found[ERROR_PARTICLES] = digests.digest(error_data)
        digests.record(location, sim_id, found)
    location.write_bytes(layout.particles_key(sim_id), data)
    if error_data is not None:
        location.write_bytes(layout.error_particles_key(sim_id), error_data)


def publish_footprint(
    location: Location, name: str, sim_id: str, row: int, chunk: np.ndarray, empty: bool
) -> None:
    """Write one footprint: its empty marker (or the marker's removal), then its chunk.

    A format 1 array gets the chunk's digest recorded first.
    """
    array = footprints.foot_array(location, name, row + 1)
    if not chunks.checked(array):
        digests.record(location, sim_id, {footprint_component(name): digests.digest(chunk)})
    marker = layout.empty_key(name, sim_id)
    if empty:
        location.write_bytes(marker, b"")
    else:
        location.delete(marker)
    footprints.write_chunk(location, array, row, chunk)


def clear_failure(location: Location, sim_id: str) -> None:
    """Remove the failure record and log of a simulation that has completed."""
    records.clear(location, sim_id)
