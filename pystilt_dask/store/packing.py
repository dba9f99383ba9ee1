"""Where a simulation's stored bytes are found.

Today every chunk is its own object, ``foot/c.<row>.0.0.0``; ``docs/store.md``
("Packing") lays out how ``stilt-dask compact`` will pack them.
"""

from __future__ import annotations

from . import layout
from .paths import Location


def chunk_bytes(location: Location, name: str, row: int) -> bytes:
    """The stored bytes of footprint ``name``'s chunk at ``row``.

    Raises
    ------
    FileNotFoundError
        When the chunk was never written.
    """
    return location.read_bytes(layout.chunk_key(name, row))
