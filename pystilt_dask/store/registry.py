"""The registry of simulations: which receptors a project simulates, and their rows.

Registration is a commit, as in table formats: each commit is one immutable
Parquet file ``.stilt/registry/<version>.parquet`` holding the simulations it
adds, written with create-if-absent (:meth:`Location.create`). A registrant reads
the committed versions, assigns its new simulations the rows after the last one
and tries to create the next version; if another registrant created it first, it
reads that commit, drops what it registered and tries the version after. Any
number of processes may register at once, on local disks and object stores alike:
every simulation is registered exactly once and rows are never reused.

A simulation's ``row`` is its index along the ``simulation`` dimension of every
footprint array, and the name of its chunks. :class:`Registry` is the one mapping
between simulations and rows; status, tasks, loading and verification all use it.
The registry records *what* to simulate, never whether it is done.

A receptor never changes under its id: registering a receptor whose id is
registered with other fields is refused. Registries written before ids carried a
column's extent and a time's seconds hold columns as ``…_X`` and times to the
minute; a receptor whose fields match such an entry is that simulation (its
results are reused), and :func:`receptor` rebuilds it under that id. A ``…_X``
entry with other heights stays a simulation of its own.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ReceptorError, StoreError
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


@dataclass(frozen=True)
class Registry:
    """The registered simulations as of one committed version.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per simulation, ordered by ``row``, indexed by ``sim_id``.
    version : int
        The newest commit read (``-1`` when nothing is registered).
    """

    table: pd.DataFrame
    version: int

    def __len__(self) -> int:
        return len(self.table)

    def __contains__(self, sim_id: object) -> bool:
        return sim_id in self.table.index

    @property
    def sim_ids(self) -> list[str]:
        """Simulation ids, in row order."""
        return self.table.index.tolist()

    @property
    def rows(self) -> np.ndarray:
        """Rows, ascending (gaps only where a commit was lost)."""
        return self.table["row"].to_numpy(dtype=np.int64)

    @property
    def next_row(self) -> int:
        """The first row a new commit may use."""
        return int(self.table["row"].iloc[-1]) + 1 if len(self.table) else 0

    def entry(self, sim_id: str) -> pd.Series:
        """The registry entry of one simulation.

        Raises
        ------
        StoreError
            When ``sim_id`` is not registered.
        """
        try:
            return self.table.loc[sim_id]
        except KeyError:
            raise StoreError(f"simulation {sim_id!r} is not registered") from None

    def row(self, sim_id: str) -> int:
        """The row of one simulation."""
        return int(self.entry(sim_id)["row"])

    def pending(self, receptors: Sequence[Receptor]) -> dict[str, Receptor]:
        """The receptors not registered yet, by id (each id once).

        A receptor is registered under its own id, or under its legacy id (see
        :attr:`~pystilt_dask.receptors.PointReceptor.legacy_sim_id`) by an entry
        with its fields.

        Raises
        ------
        ReceptorError
            When a receptor's id is registered, or given twice, with other fields.
        """
        receptors = list(receptors)
        ids = [given.sim_id for given in receptors]
        found = self.table.index.get_indexer(ids) if len(self) else np.full(len(ids), -1)
        times = self.table["time"].to_numpy()
        fresh: dict[str, Receptor] = {}
        for given, sim_id, position in zip(receptors, ids, found, strict=True):
            if position >= 0:
                # A point's or column's id prints its numbers as it keeps them; its time
                # only to the minute in ids written before seconds were stamped.
                if given.kind == "multipoint" or times[position] != np.datetime64(given.time):
                    self._same(sim_id, given)
                continue
            legacy = given.legacy_sim_id
            if legacy is not None and legacy in self and receptor(self.entry(legacy)) == given:
                continue
            first = fresh.setdefault(sim_id, given)
            if first != given:
                raise ReceptorError(
                    f"two receptors have one simulation id {sim_id}: "
                    f"{first.describe()} and {given.describe()}; keep one"
                )
        return fresh

    def _same(self, sim_id: str, given: Receptor) -> None:
        registered = receptor(self.entry(sim_id))
        if registered != given:
            raise ReceptorError(
                f"simulation {sim_id} is registered as {registered.describe()}, not "
                f"{given.describe()}; a receptor cannot change under its id"
            )

    def positions(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Positions (in :attr:`sim_ids`) of ``rows``; ``-1`` for rows nobody holds."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(self):
            return np.full(len(rows), -1, dtype=np.int64)
        index = np.minimum(np.searchsorted(self.rows, rows), len(self) - 1)
        return np.where(self.rows[index] == rows, index, -1)


def versions(location: Location) -> list[int]:
    """Committed registry versions, ascending."""
    names = layout.strip_suffix(location.list_names(layout.REGISTRY), layout.PARQUET_SUFFIX)
    return sorted(int(name) for name in names if name.isdigit())


def read_commit(location: Location, version: int) -> pd.DataFrame:
    """The simulations one commit registered.

    Raises
    ------
    StoreError
        When the commit cannot be read (it was damaged after it was written).
    """
    key = layout.registry_key(version)
    try:
        return pq.read_table(io.BytesIO(location.read_bytes(key))).to_pandas()
    except Exception as exc:
        raise StoreError(
            f"registry commit {key} is unreadable ({type(exc).__name__}: {exc}); "
            "run `stilt-dask verify --repair`"
        ) from None


def read(
    location: Location, since: Registry | None = None, only: Sequence[int] | None = None
) -> Registry:
    """Read the registry (reading only commits newer than ``since`` when given).

    ``only`` limits it to those commit versions (``verify`` reads around damage).

    Raises
    ------
    StoreError
        When a commit is unreadable, or two commits disagree on a simulation's row.
    """
    known = since.version if since is not None else -1
    newer = [v for v in (versions(location) if only is None else only) if v > known]
    frames = [since.table.reset_index(drop=True)] if since is not None and len(since) else []
    frames += [read_commit(location, v) for v in newer]
    version = newer[-1] if newer else known
    if not frames:
        empty = SCHEMA.empty_table().to_pandas().set_index("sim_id", drop=False)
        return Registry(empty.rename_axis("sim_id"), version)
    table = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    table = table.drop_duplicates(["sim_id", "row"]).sort_values("row", kind="stable")
    for column in ("sim_id", "row"):
        clash = table[column].duplicated()
        if clash.any():
            value = table.loc[clash, column].iloc[0]
            raise StoreError(
                f"the registry of {location.root} holds {column} {value!r} twice with "
                "different partners; run `stilt-dask verify`"
            )
    table.index = pd.Index(table["sim_id"].to_numpy(dtype=object), name="sim_id")
    return Registry(table, version)


def register(
    location: Location,
    receptors: Sequence[Receptor],
    met: str,
    footprints: Sequence[str],
    scene_id: str | None = None,
) -> tuple[list[str], Registry]:
    """Register the receptors not registered yet; safe with any number of concurrent callers.

    Returns
    -------
    new : list of str
        Ids this call registered (in row order).
    registry : Registry
        The registry as of this call's commit (or the newest read, when nothing was new).

    Raises
    ------
    ReceptorError
        When a receptor's id is registered with other fields (see :meth:`Registry.pending`).
    """
    registry = read(location)
    while True:
        fresh = registry.pending(receptors)
        if not fresh:
            return [], registry
        now, start = datetime.now(UTC), registry.next_row
        records = [
            record(receptor, start + i, met, footprints, scene_id, now, sim_id)
            for i, (sim_id, receptor) in enumerate(fresh.items())
        ]
        if location.create(layout.registry_key(registry.version + 1), commit_bytes(records)):
            return list(fresh), read(location, since=registry)
        # Another registrant committed this version first: read it and try the next.
        registry = read(location, since=registry)


def commit(location: Location, records: list[dict], version: int | None = None) -> bool:
    """Commit prepared records (as :func:`record` makes them) as one new version.

    Used by repair to restore lost entries with their original rows; returns
    whether the commit was created (``False``: ``version`` exists already).
    """
    if version is None:
        found = versions(location)
        version = found[-1] + 1 if found else 0
    return location.create(layout.registry_key(version), commit_bytes(records))


def commit_bytes(records: list[dict]) -> bytes:
    """Serialise registry records to one commit's Parquet bytes."""
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records, schema=SCHEMA), sink, compression="zstd")
    return sink.getvalue()


def record(
    receptor: Receptor,
    row: int,
    met: str,
    footprints: Sequence[str],
    scene_id: str | None,
    registered: datetime,
    sim_id: str | None = None,
) -> dict:
    """The registry record of a simulation (``sim_id``: the receptor's, when known)."""
    fields = receptor.model_dump()
    return {
        "sim_id": sim_id or receptor.sim_id,
        "row": row,
        "kind": fields.pop("kind"),
        "time": fields.pop("time"),
        **{name: fields.get(name) for name in _FLOATS},
        **{name: list(fields[name]) if name in fields else None for name in _LISTS},
        "scene_id": scene_id,
        "met": met,
        "footprints": list(footprints),
        "registered": registered,
    }


def receptor(entry: pd.Series) -> Receptor:
    """Rebuild the receptor of one registry entry; its ``sim_id`` is the entry's."""
    fields: dict = {"time": entry["time"]}
    built: Receptor
    if entry["kind"] == "multipoint":
        fields.update({name: list(entry[name]) for name in _LISTS})
        built = MultiPointReceptor(**fields)
    else:
        fields.update({"longitude": entry["longitude"], "latitude": entry["latitude"]})
        if entry["kind"] == "column":
            built = ColumnReceptor(**fields, bottom=entry["bottom"], top=entry["top"])
        else:
            built = PointReceptor(**fields, altitude=entry["altitude"])
    sim_id = str(entry["sim_id"])
    return built if built.sim_id == sim_id else built.registered_as(sim_id)  # type: ignore[return-value]
