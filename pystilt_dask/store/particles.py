"""Particle tables: one zstd Parquet file per simulation.

The table is written exactly as the trajectory step returned it (R-STILT columns:
``time`` in minutes since release, ``indx``, ``long``, ``lati``, ``zagl``,
``foot``, ...), so footprints recomputed from a stored file equal those computed
from the run. The schema metadata records the simulation's registry entry (id,
receptor, row, meteorology name, scene id; not the registration time, so equal
runs write equal bytes) under
``pystilt_dask:*`` keys, which lets ``verify --repair`` restore a lost registry
entry from the particles alone.
"""

from __future__ import annotations

import io
import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..receptors import Receptor
from .paths import Location

_PREFIX = "pystilt_dask:"
_DICTIONARY_COLUMNS = ["time", "indx"]


def to_bytes(particles: pd.DataFrame, receptor: Receptor, entry: pd.Series) -> bytes:
    """Serialise a particle table to zstd Parquet with the simulation's registry entry."""
    table = pa.Table.from_pandas(particles, preserve_index=False)
    scene_id = entry["scene_id"]
    extra = {
        f"{_PREFIX}sim_id": receptor.sim_id,
        f"{_PREFIX}receptor": json.dumps(receptor.model_dump(mode="json")),
        f"{_PREFIX}met": str(entry["met"]),
        f"{_PREFIX}row": str(int(entry["row"])),
        f"{_PREFIX}scene_id": "" if scene_id is None or pd.isna(scene_id) else str(scene_id),
    }
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **extra})
    sink = io.BytesIO()
    # Dictionaries pay off only for the few distinct times and particle numbers;
    # on the float columns they cost a fifth of the write and save nothing.
    pq.write_table(table, sink, compression="zstd", use_dictionary=_DICTIONARY_COLUMNS)
    return sink.getvalue()


def read(location: Location, key: str) -> pd.DataFrame:
    """Read a particle table; raises ``FileNotFoundError`` when it is absent."""
    return pq.read_table(io.BytesIO(location.read_bytes(key))).to_pandas()


def metadata(location: Location, key: str) -> dict[str, str]:
    """The ``pystilt_dask:*`` metadata of a particle file, without the prefix."""
    schema = pq.read_schema(pa.BufferReader(location.read_bytes(key)))
    return {
        k.decode().removeprefix(_PREFIX): v.decode()
        for k, v in (schema.metadata or {}).items()
        if k.decode().startswith(_PREFIX)
    }
