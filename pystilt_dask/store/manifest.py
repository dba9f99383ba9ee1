"""The registry of simulations: ``.stilt/manifest.parquet``.

One row per registered simulation: its id, a stable integer ``row`` (its index
along the ``simulation`` dimension of every footprint array), the receptor's
fields, ``scene_id``, the meteorology name, the footprint names configured when it
was registered and the registration time. Rows are only ever appended; a row is
never changed or removed, so ``row`` numbers are stable for the life of a project.
The manifest records *what* to simulate, never whether it is done.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import StoreError
from ..receptors import ColumnReceptor, MultiPointReceptor, PointReceptor, Receptor
from . import layout
from .paths import Location

_FLOATS = ("longitude", "latitude", "altitude", "bottom", "top")
_LISTS = ("longitudes", "latitudes", "altitudes")

SCHEMA = pa.schema(
    [
        ("sim_id", pa.string()),
        ("row", pa.int64()),
        ("kind", pa.string()),
        ("time", pa.timestamp("us")),
        *[(name, pa.float64()) for name in _FLOATS],
        *[(name, pa.list_(pa.float64())) for name in _LISTS],
        ("scene_id", pa.string()),
        ("met", pa.string()),
        ("footprints", pa.list_(pa.string())),
        ("registered", pa.timestamp("us", tz="UTC")),
    ]
)


def read(location: Location, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read the manifest (an empty table when nothing is registered), ordered by ``row``."""
    try:
        data = location.read_bytes(layout.MANIFEST)
    except FileNotFoundError:
        return SCHEMA.empty_table().to_pandas()[list(columns or SCHEMA.names)]
    return pq.read_table(io.BytesIO(data), columns=list(columns) if columns else None).to_pandas()


def append(
    location: Location,
    receptors: Sequence[Receptor],
    met: str,
    footprints: Sequence[str],
    scene_id: str | None = None,
) -> pd.DataFrame:
    """Register the receptors not registered yet, appending rows; return the new rows.

    Receptors whose simulation id is already in the manifest (or repeated in
    ``receptors``) are skipped. Registration is a single-writer operation: run one
    registration at a time per project.
    """
    existing = read(location)
    known = set(existing["sim_id"])
    fresh: dict[str, Receptor] = {}
    for receptor in receptors:
        sim_id = receptor.sim_id
        if sim_id not in known and sim_id not in fresh:
            fresh[sim_id] = receptor
    if not fresh:
        return existing.iloc[:0]
    start = len(existing)
    now = datetime.now(UTC)
    records = [
        {
            **_receptor_fields(receptor),
            "sim_id": sim_id,
            "row": start + i,
            "scene_id": scene_id,
            "met": met,
            "footprints": list(footprints),
            "registered": now,
        }
        for i, (sim_id, receptor) in enumerate(fresh.items())
    ]
    new = pa.Table.from_pylist(records, schema=SCHEMA)
    old = pq.read_table(io.BytesIO(location.read_bytes(layout.MANIFEST))) if start else None
    table = pa.concat_tables([old.cast(SCHEMA), new]) if old is not None else new
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    location.write_bytes(layout.MANIFEST, sink.getvalue())
    return new.to_pandas()


def _receptor_fields(receptor: Receptor) -> dict:
    fields = receptor.model_dump()
    return {
        "kind": fields.pop("kind"),
        "time": fields.pop("time"),
        **{name: fields.get(name) for name in _FLOATS},
        **{name: list(fields[name]) if name in fields else None for name in _LISTS},
    }


def receptor(entry: pd.Series) -> Receptor:
    """Rebuild the receptor of one manifest row."""
    fields: dict = {"time": entry["time"]}
    if entry["kind"] == "multipoint":
        fields.update({name: list(entry[name]) for name in _LISTS})
        return MultiPointReceptor(**fields)
    fields.update({"longitude": entry["longitude"], "latitude": entry["latitude"]})
    if entry["kind"] == "column":
        return ColumnReceptor(**fields, bottom=entry["bottom"], top=entry["top"])
    return PointReceptor(**fields, altitude=entry["altitude"])


def lookup(location: Location, sim_id: str) -> pd.Series:
    """The manifest row of one simulation.

    Raises
    ------
    StoreError
        When ``sim_id`` is not registered.
    """
    try:
        data = location.read_bytes(layout.MANIFEST)
    except FileNotFoundError:
        data = b""
    if data:
        table = pq.read_table(io.BytesIO(data), filters=[("sim_id", "==", sim_id)]).to_pandas()
        if len(table):
            return table.iloc[0]
    raise StoreError(f"simulation {sim_id!r} is not registered in {location.root}")
