"""Format 1 digests: one object per simulation holding the CRC-32 of its completion keys.

Stores written before format 2 keep ``.stilt/checksums/<sim_id>.json``:
``{component: "crc32:<hex>"}``, the CRC-32 of a particle file's bytes and of a
footprint chunk's decoded float32 values. Format 2 puts the digests inside the
objects instead (see ``docs/store.md``); these are still written, read and
checked for footprint arrays made in format 1 (arrays without the ``crc32c``
codec), so such stores keep working unchanged.
"""

from __future__ import annotations

import json
import zlib

import numpy as np

from . import layout
from .paths import Location


def digest(data: bytes | np.ndarray) -> str:
    """The format 1 digest of a completion key's content (bytes, or decoded chunk values)."""
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data, dtype="float32").data  # hashed without a copy
    return f"crc32:{zlib.crc32(data):08x}"


def read(location: Location, sim_id: str) -> dict[str, str]:
    """The digests recorded for a simulation's completion keys, by component."""
    try:
        return json.loads(location.read_bytes(layout.checksums_key(sim_id)))
    except (FileNotFoundError, ValueError):
        return {}


def record(location: Location, sim_id: str, digests: dict[str, str]) -> None:
    """Add ``digests`` to a simulation's record (before the keys they describe are written)."""
    # Only the holder of the simulation's claim writes here (or a duplicate attempt
    # writing the same digests), so read-modify-write is safe.
    merged = {**read(location, sim_id), **digests}
    location.write_bytes(layout.checksums_key(sim_id), json.dumps(merged).encode())
