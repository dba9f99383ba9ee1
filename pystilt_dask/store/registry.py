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

Reading the history stays cheap however long it grows: every 64th version
(``version % 64 == 63``) its registrant also writes a checkpoint
``.stilt/registry/<version>.checkpoint.parquet``, every entry of the versions up
to it, sorted by row, with the version each came from. Its content depends on
the commits alone, it is created with create-if-absent and never replaced; a
reader that finds 64 or more commits after the newest checkpoint may write the
missing one the same way. A reader lists the folder once and reads the newest
readable checkpoint plus the commits after it. Each registrant also writes a
second copy of its commit, ``.stilt/registry-copy/<version>.parquet`` (same
bytes), from which :func:`recover_commit` restores a damaged commit.

A receptor never changes under its id: registering a receptor whose id is
registered with other fields is refused. Registries written before ids carried a
column's extent and a time's seconds hold columns as ``…_X`` and times to the
minute; a receptor whose fields match such an entry is that simulation (its
results are reused), and :func:`receptor` rebuilds it under that id. A ``…_X``
entry with other heights stays a simulation of its own.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..buffers import arrow_buffer
from ..errors import ReceptorError, StoreError, StoreUnwritable
from ..receptors import ColumnReceptor, MultiPointReceptor, PointReceptor, Receptor
from ..receptors.frame import FLOATS, LISTS, ReceptorFrame, as_frame, first_occurrences
from . import layout
from .paths import Location

SCHEMA = pa.schema(
    [
        ("sim_id", pa.string()),
        ("row", pa.int64()),
        ("kind", pa.string()),
        ("time", pa.timestamp("us")),
        *[(name, pa.float64()) for name in FLOATS],
        *[(name, pa.list_(pa.float64())) for name in LISTS],
        ("scene_id", pa.string()),
        ("met", pa.string()),
        ("footprints", pa.list_(pa.string())),
        ("registered", pa.timestamp("us", tz="UTC")),
        # Null in commits written before receptors had them: agl, no sounding.
        ("altitude_ref", pa.string()),
        ("sounding_id", pa.string()),
    ]
)
#: A checkpoint's entries: a commit's, with the version of the commit each came from.
CHECKPOINT_SCHEMA = SCHEMA.append(pa.field("version", pa.int64()))
#: Version ``v`` has a checkpoint when ``v % CHECKPOINT_INTERVAL == CHECKPOINT_INTERVAL - 1``.
CHECKPOINT_INTERVAL = 64
#: Parquet metadata key of the receptor tables (:func:`table_digest`) a commit or checkpoint
#: says are registered whole.
TABLES_KEY = "pystilt_dask:tables"


@dataclass(frozen=True)
class Registry:
    """The registered simulations as of one committed version.

    Attributes
    ----------
    entries : pyarrow.Table
        One row per simulation, ordered by ``row``, each id once, with the
        version of the commit that registered it (:data:`CHECKPOINT_SCHEMA`).
    version : int
        The newest commit read (``-1`` when nothing is registered).
    tables : frozenset of str
        Digests (:func:`table_digest`) of receptor tables every receptor of which
        is registered: each commit records the table it registered from, when it
        came from one, and a checkpoint those of its commits.
    """

    entries: pa.Table
    version: int
    tables: frozenset[str] = frozenset()

    @cached_property
    def table(self) -> pd.DataFrame:
        """The entries as a DataFrame indexed by ``sim_id`` (built when first asked for).

        List columns stay Arrow-backed: a million rows of numpy arrays would cost seconds.
        """
        table = self.entries.to_pandas(types_mapper=_arrow_lists)
        table.index = pd.Index(table["sim_id"], name="sim_id")
        return table

    @cached_property
    def index(self) -> pd.Index:
        """Simulation ids, in row order, as an index."""
        return pd.Index(self.entries["sim_id"].to_pandas(), name="sim_id")

    def __len__(self) -> int:
        return self.entries.num_rows

    def holds_table(self, digest: str) -> bool:
        """Whether every receptor of the table with this :func:`table_digest` is registered.

        Only while no row is missing: rows are given in commit order, so a commit
        lost after the table's was written leaves a gap below the table's rows,
        and its receptors may be among the lost ones.
        """
        return digest in self.tables and len(self) == self.next_row

    def __contains__(self, sim_id: object) -> bool:
        return sim_id in self.index

    @property
    def sim_ids(self) -> list[str]:
        """Simulation ids, in row order."""
        return self.entries["sim_id"].to_pylist()

    @cached_property
    def rows(self) -> np.ndarray:
        """Rows, ascending (gaps only where a commit was lost)."""
        return self.entries["row"].to_numpy()

    @property
    def next_row(self) -> int:
        """The first row a new commit may use."""
        return int(self.rows[-1]) + 1 if len(self) else 0

    def entry(self, sim_id: str) -> pd.Series:
        """The registry entry of one simulation.

        Raises
        ------
        StoreError
            When ``sim_id`` is not registered.
        """
        try:
            position = self.index.get_loc(sim_id)
        except KeyError:
            raise StoreError(f"simulation {sim_id!r} is not registered") from None
        # One row of the Arrow entries: the pandas view of a million entries took seconds.
        return pd.Series(self.entries.slice(position, 1).to_pylist()[0], name=sim_id)

    def row(self, sim_id: str) -> int:
        """The row of one simulation."""
        return int(self.entry(sim_id)["row"])

    def pending(self, receptors: ReceptorFrame | Iterable[Receptor]) -> ReceptorFrame:
        """The receptors not registered yet (each id once), in their order.

        A receptor is registered under its own id, or under its legacy id (see
        :attr:`~pystilt_dask.receptors.PointReceptor.legacy_sim_id`) by an entry
        with its fields.

        Raises
        ------
        ReceptorError
            When a receptor's id is registered, or given twice, with other fields.
        """
        frame = as_frame(receptors)
        given = frame.table
        fresh = np.ones(len(frame), dtype=bool)
        if len(self) and len(frame):
            found = self._found(given["sim_id"])
            hit = np.flatnonzero(found >= 0)
            # A point's or column's id prints its numbers as it keeps them; its time only
            # to the minute in ids written before seconds were stamped.
            kinds = given["kind"].to_numpy(zero_copy_only=False)
            times = _times(given)
            doubt = (kinds[hit] == "multipoint") | (times[hit] != _times(self.entries)[found[hit]])
            for i in hit[doubt]:
                self._same(given["sim_id"][i].as_py(), frame.receptor(int(i)))
            fresh[hit] = False
            unknown = np.flatnonzero(fresh)
            found_legacy = np.full(len(frame), -1)
            if len(unknown):
                legacy = given["legacy_id"].take(pa.array(unknown))
                found_legacy[unknown] = _positions(legacy, self.entries["sim_id"])
            candidates = np.flatnonzero(found_legacy >= 0)
            same = _same_fields(given, candidates, self.entries, found_legacy[candidates])
            for j in np.flatnonzero(kinds[candidates] == "multipoint"):
                entry = self.table.iloc[int(found_legacy[candidates[j]])]
                same[j] = receptor(entry) == frame.receptor(int(candidates[j]))
            fresh[candidates[same]] = False
        keep = np.flatnonzero(fresh)
        if not frame.unique and len(keep):
            keep = keep[_first_of_each(frame, keep)]
        if len(keep) == len(frame):  # all new (a first registration): no copy of them
            return ReceptorFrame(given, unique=True)
        return ReceptorFrame(given.take(pa.array(keep)), unique=True)

    def _found(self, ids: pa.ChunkedArray) -> np.ndarray:
        """Position of each id among the registered ones (``-1``: not registered).

        A table registered again holds its ids in registry order, so ids are first
        compared in place, and only the others are looked up.
        """
        found = np.full(len(ids), -1)
        shared = min(len(ids), len(self))
        in_place = pc.equal(ids.slice(0, shared), self.entries["sim_id"].slice(0, shared))
        in_place = pc.fill_null(in_place, False).to_numpy(zero_copy_only=False)
        found[:shared][in_place] = np.flatnonzero(in_place)
        rest = np.flatnonzero(found < 0)
        if len(rest):
            found[rest] = _positions(ids.take(pa.array(rest)), self.entries["sim_id"])
        return found

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

    def extended(self, entries: pa.Table, version: int) -> Registry:
        """This registry with ``entries`` (rows after its own, new ids) committed as ``version``."""
        tables = self.tables | _tables(entries)
        entries = entries.replace_schema_metadata(None)
        combined = pa.concat_tables([self.entries, entries]) if len(self) else entries
        return Registry(combined, version, tables)


def _arrow_lists(kind: pa.DataType) -> pd.ArrowDtype | None:
    return pd.ArrowDtype(kind) if pa.types.is_list(kind) else None


def _positions(values: pa.ChunkedArray, value_set: pa.ChunkedArray) -> np.ndarray:
    """Position of each value in ``value_set`` (``-1``: absent or null)."""
    found = pc.index_in(values, value_set=value_set.combine_chunks())
    return pc.fill_null(found, -1).to_numpy().astype(np.int64)


def _times(table: pa.Table) -> np.ndarray:
    return table["time"].cast(pa.int64()).to_numpy()


def _references(table: pa.Table) -> np.ndarray:
    """Each receptor's ``altitude_ref`` (null, as older commits hold it, is ``agl``)."""
    return pc.fill_null(table["altitude_ref"], "agl").to_numpy(zero_copy_only=False)


def _same_fields(
    given: pa.Table, at: np.ndarray, entries: pa.Table, positions: np.ndarray
) -> np.ndarray:
    """Whether receptors ``given[at]`` have the fields of entries ``entries[positions]``."""
    one, other = given.take(pa.array(at)), entries.take(pa.array(positions))
    same = one["kind"].to_numpy(zero_copy_only=False) == other["kind"].to_numpy(
        zero_copy_only=False
    )
    same &= _times(one) == _times(other)
    same &= _references(one) == _references(other)
    for name in FLOATS:
        a = pc.fill_null(one[name], np.nan).to_numpy()
        b = pc.fill_null(other[name], np.nan).to_numpy()
        same &= (a == b) | (np.isnan(a) & np.isnan(b))
    return same


def _first_of_each(frame: ReceptorFrame, keep: np.ndarray) -> np.ndarray:
    """Mask of ``keep`` (positions in ``frame``) to register: each id once.

    Raises
    ------
    ReceptorError
        When two receptors with one id differ.
    """
    ids = frame.table["sim_id"].take(pa.array(keep))
    first = first_occurrences(ids)
    if first.all():
        return first
    earliest = np.flatnonzero(first)[
        pc.fill_null(pc.index_in(ids, value_set=ids.filter(pa.array(first))), -1).to_numpy()
    ]
    repeated = np.flatnonzero(~first)
    same = _same_fields(frame.table, keep[repeated], frame.table, keep[earliest[repeated]])
    kinds = frame.table["kind"].take(pa.array(keep[repeated])).to_numpy(zero_copy_only=False)
    for j in np.flatnonzero(~same | (kinds == "multipoint")):
        one = frame.receptor(int(keep[earliest[repeated[j]]]))
        other = frame.receptor(int(keep[repeated[j]]))
        if one != other:
            raise ReceptorError(
                f"two receptors have one simulation id {one.sim_id}: "
                f"{one.describe()} and {other.describe()}; keep one"
            )
    return first


def _listing(location: Location) -> tuple[list[int], list[int]]:
    """``(commits, checkpoints)``: the versions of each in one listing, ascending."""
    commits, checkpoints = [], []
    for name in location.list_names(layout.REGISTRY):
        if name.endswith(layout.CHECKPOINT_SUFFIX):
            stem, found = name[: -len(layout.CHECKPOINT_SUFFIX)], checkpoints
        elif name.endswith(layout.PARQUET_SUFFIX):
            stem, found = name[: -len(layout.PARQUET_SUFFIX)], commits
        else:
            continue  # temporaries
        if stem.isdigit():
            found.append(int(stem))
    return sorted(commits), sorted(checkpoints)


def versions(location: Location) -> list[int]:
    """Committed registry versions, ascending (checkpoints are not versions)."""
    return _listing(location)[0]


def checkpoints(location: Location) -> list[int]:
    """Versions that have a checkpoint, ascending."""
    return _listing(location)[1]


def _parquet(data: pa.Buffer) -> pa.Table:
    """A commit's or checkpoint's bytes as a table, every page checked against its CRC.

    The trust rule: a damaged page raises rather than being read as entries.
    (Files written before pages carried CRCs have none to check, and read as before.)
    ``data`` is in Arrow's memory (:meth:`Location.read_buffer`, :func:`arrow_buffer`).
    """
    return pq.read_table(pa.BufferReader(data), page_checksum_verification=True)


def _parsed(data: pa.Buffer, version: int) -> pa.Table:
    """A commit's bytes as entries (with ``version``); raises what Parquet raises."""
    table = _parquet(data)
    return _versioned(
        _conformed(table, SCHEMA).replace_schema_metadata(table.schema.metadata), version
    )


def _conformed(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` as ``schema``; columns added to the schema since it was written are null."""
    for field in schema:
        if field.name not in table.column_names:
            table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    return table.select(schema.names).cast(schema)


def _versioned(table: pa.Table, version: int) -> pa.Table:
    """``table`` with its commit's ``version``; of its metadata only :data:`TABLES_KEY` stays."""
    kept = _recorded(_tables(table))
    table = table.append_column("version", pa.array(np.full(table.num_rows, version)))
    return table.replace_schema_metadata(kept)


def _tables(table: pa.Table) -> frozenset[str]:
    """The receptor table digests recorded in ``table``'s metadata."""
    recorded = (table.schema.metadata or {}).get(TABLES_KEY.encode())
    return frozenset(json.loads(recorded)) if recorded else frozenset()


def table_digest(data: bytes, name: str) -> str:
    """The digest a commit records for the receptor table ``name`` holding ``data``.

    Over the bytes and the name's suffix (which decides how the bytes are read).
    """
    digest = hashlib.blake2b(posixpath.splitext(name)[1].lower().encode(), digest_size=16)
    digest.update(data)
    return digest.hexdigest()


def _commit_entries(location: Location, version: int) -> pa.Table:
    key = layout.registry_key(version)
    try:
        return _parsed(location.read_buffer(key), version)
    except Exception as exc:
        raise StoreError(
            f"registry commit {key} is unreadable ({type(exc).__name__}: {exc}); "
            "run `stilt-dask verify --repair`"
        ) from None


def read_commit(location: Location, version: int) -> pd.DataFrame:
    """The simulations one commit registered.

    Raises
    ------
    StoreError
        When the commit cannot be read (it was damaged after it was written).
    """
    return _commit_entries(location, version).drop_columns("version").to_pandas()


def read_checkpoint(location: Location, version: int) -> pa.Table:
    """The entries of checkpoint ``version`` (:data:`CHECKPOINT_SCHEMA`).

    Raises
    ------
    StoreError
        When it is absent or cannot be read.
    """
    key = layout.checkpoint_key(version)
    try:
        table = _parquet(location.read_buffer(key))
        kept = _recorded(_tables(table))
        return _conformed(table, CHECKPOINT_SCHEMA).replace_schema_metadata(kept)
    except Exception as exc:
        raise StoreError(
            f"registry checkpoint {key} is unreadable ({type(exc).__name__}: {exc})"
        ) from None


def recover_commit(location: Location, version: int) -> bytes:
    """Bytes that restore commit ``version``: its copy's, else its entries in a checkpoint.

    The copy (``.stilt/registry-copy/<version>.parquet``) holds the commit's own
    bytes; a checkpoint at or after ``version`` holds its entries, which are
    written anew as a commit. Neither is trusted unless it reads back.

    Raises
    ------
    StoreError
        When neither a readable copy nor a readable checkpoint holds the version.
    """
    try:
        data = location.read_bytes(layout.registry_copy_key(version))
        _parsed(arrow_buffer(data), version)
        return data
    except Exception:  # absent or damaged: a checkpoint may hold it
        pass
    for held in reversed(checkpoints(location)):
        if held < version:
            break
        try:
            table = read_checkpoint(location, held)
        except StoreError:
            continue
        entries = table.filter(pc.equal(table["version"], version))
        if entries.num_rows:
            # Without the checkpoint's receptor tables: some were registered whole only later.
            return _commit_bytes(entries.drop_columns("version").replace_schema_metadata(None))
    raise StoreError(
        f"registry commit {layout.registry_key(version)} has no readable copy, and no "
        "readable checkpoint holds it"
    )


def read(
    location: Location, since: Registry | None = None, only: Sequence[int] | None = None
) -> Registry:
    """Read the registry: the newest readable checkpoint and the commits after it.

    With ``since``, only commits newer than it are read (unless a checkpoint
    saves reading many). ``only`` limits it to those commit versions, without
    checkpoints (``verify`` reads around damage). A reader that finds
    :data:`CHECKPOINT_INTERVAL` or more commits after its base writes the
    missing checkpoint.

    Raises
    ------
    StoreError
        When a commit is unreadable, or two commits disagree on a simulation's row.
    """
    if only is not None:
        known = since.version if since is not None else -1
        newer = [v for v in only if v > known]
        tables = [_commit_entries(location, v) for v in newer]
        return _combined(location, since, tables, newer[-1] if newer else known)
    commits, held = _listing(location)
    base = since
    known = since.version if since is not None else -1
    if sum(v > known for v in commits) >= 2 * CHECKPOINT_INTERVAL or since is None:
        base = _newest_checkpoint(location, [v for v in held if v > known]) or since
    start = base.version if base is not None else -1
    newer = [v for v in commits if v > start]
    tables = [_commit_entries(location, v) for v in newer]
    current = _combined(location, base, tables, newer[-1] if newer else start)
    due = [v for v in newer if v % CHECKPOINT_INTERVAL == CHECKPOINT_INTERVAL - 1]
    if len(newer) >= CHECKPOINT_INTERVAL and due and due[-1] not in held:
        upto = newer.index(due[-1]) + 1
        state = current if upto == len(newer) else _combined(location, base, tables[:upto], due[-1])
        write_checkpoint(location, state)
    return current


def _newest_checkpoint(location: Location, held: list[int]) -> Registry | None:
    """The registry as of the newest checkpoint in ``held`` that reads (unreadable ones skipped)."""
    for version in reversed(held):
        try:
            table = read_checkpoint(location, version)
        except StoreError:
            continue
        return Registry(table.replace_schema_metadata(None), version, _tables(table))
    return None


def _combined(
    location: Location, base: Registry | None, tables: list[pa.Table], version: int
) -> Registry:
    """``base`` with the entries of ``tables`` (newer commits) added, as of ``version``."""
    known = base.tables if base is not None else frozenset()
    known = known.union(*(_tables(t) for t in tables))
    tables = [t.replace_schema_metadata(None) for t in tables]
    pieces = [t for t in ([base.entries] if base is not None else []) + tables if t.num_rows]
    if not pieces:
        return Registry(CHECKPOINT_SCHEMA.empty_table(), version, known)
    if len(pieces) == 1:  # one commit or checkpoint: its writer checked it
        return Registry(pieces[0], version, known)
    return Registry(_checked(pa.concat_tables(pieces), location.root), version, known)


def _checked(entries: pa.Table, root: str) -> pa.Table:
    """Entries sorted by row, repeated entries once; an id or row held twice otherwise raises."""
    rows = entries["row"].to_numpy()
    if len(rows) > 1 and np.any(np.diff(rows) < 0):
        order = np.lexsort((entries["version"].to_numpy(), rows))
        entries, rows = entries.take(pa.array(order)), rows[order]
    again = np.flatnonzero(np.diff(rows) == 0) + 1
    ids = entries["sim_id"]
    if len(again):
        differ = pc.not_equal(ids.take(pa.array(again)), ids.take(pa.array(again - 1)))
        if pc.any(differ).as_py():
            _twice(root, "row", int(rows[again[np.flatnonzero(differ)[0]]]))
        keep = np.ones(len(rows), dtype=bool)
        keep[again] = False
        entries = entries.filter(pa.array(keep))
        ids = entries["sim_id"]
    first = first_occurrences(ids)
    if not first.all():
        _twice(root, "sim_id", ids[int(np.flatnonzero(~first)[0])].as_py())
    return entries


def _twice(root: str, column: str, value: object) -> None:
    raise StoreError(
        f"the registry of {root} holds {column} {value!r} twice with different partners; "
        "run `stilt-dask verify`"
    )


def write_checkpoint(location: Location, registry: Registry) -> bool:
    """Write the checkpoint of ``registry`` (create-if-absent); return whether this call wrote it.

    Its bytes depend only on the commits (their entries, and the receptor tables
    they record, sorted), so every writer of one version writes the same; a store
    that refuses the write is left without it (readers replay the commits instead).
    """
    table = registry.entries.select(CHECKPOINT_SCHEMA.names).cast(CHECKPOINT_SCHEMA)
    sink = io.BytesIO()
    pq.write_table(
        table.combine_chunks().replace_schema_metadata(_recorded(registry.tables)),
        sink,
        compression="zstd",
        write_page_checksum=True,
    )
    try:
        return location.create(layout.checkpoint_key(registry.version), sink.getvalue())
    except (StoreUnwritable, PermissionError):
        return False


def register(
    location: Location,
    receptors: ReceptorFrame | Sequence[Receptor],
    met: str,
    footprints: Sequence[str],
    scene_id: str | None = None,
    table: str | None = None,
    known: Registry | None = None,
) -> tuple[list[str], Registry]:
    """Register the receptors not registered yet; safe with any number of concurrent callers.

    ``table``: the :func:`table_digest` of the receptor table ``receptors`` are
    (all of it), recorded in the commit; a registry holding it needs no look at
    that table's receptors to know they are all registered. ``known``: the
    registry as the caller read it; only commits after it are read.

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
    frame = as_frame(receptors)
    registry = read(location, since=known)
    with ThreadPoolExecutor(1) as pool:
        while True:
            fresh = registry.pending(frame)
            if not len(fresh):
                return [], registry
            now = datetime.now(UTC)
            entries = _entries(fresh, registry.next_row, met, footprints, scene_id, now)
            entries = entries.replace_schema_metadata(_recorded([table] if table else []))
            # Parquet encodes without the GIL: the ids are listed meanwhile (each ~0.2 s at 10^6).
            encoding = pool.submit(_commit_bytes, entries)
            new = fresh.sim_ids
            data = encoding.result()
            version = registry.version + 1
            if location.create(layout.registry_key(version), data):
                committed = registry.extended(_versioned(entries, version), version)
                _published(location, version, data, committed)
                return new, committed
            # Another registrant committed this version first: read it and try the next.
            registry = read(location, since=registry)


def _published(location: Location, version: int, data: bytes, state: Registry | None) -> None:
    """What follows a commit: its copy, and its checkpoint when the version has one."""
    location.create(layout.registry_copy_key(version), data)
    if version % CHECKPOINT_INTERVAL != CHECKPOINT_INTERVAL - 1:
        return
    if state is None:
        try:
            state = _state_at(location, version)
        except StoreError:
            return  # a damaged history gets its checkpoint once repaired
    write_checkpoint(location, state)


def _state_at(location: Location, version: int) -> Registry:
    """The registry as of ``version``: the newest checkpoint before it and the commits up to it."""
    commits, held = _listing(location)
    base = _newest_checkpoint(location, [v for v in held if v <= version])
    start = base.version if base is not None else -1
    tables = [_commit_entries(location, v) for v in commits if start < v <= version]
    return _combined(location, base, tables, version)


def _entries(
    fresh: ReceptorFrame,
    start: int,
    met: str,
    footprints: Sequence[str],
    scene_id: str | None,
    registered: datetime,
) -> pa.Table:
    """The registry entries of new receptors, in rows from ``start``."""
    n, given = len(fresh), fresh.table
    names = pa.array(list(footprints), pa.string())
    names = names.take(pa.array(np.tile(np.arange(len(names), dtype=np.int32), n)))
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * len(footprints))
    columns = {
        "sim_id": given["sim_id"],
        "row": pa.array(np.arange(start, start + n, dtype=np.int64)),
        **{name: given[name] for name in ("kind", "time", *FLOATS, *LISTS)},
        "scene_id": pa.repeat(pa.scalar(scene_id, pa.string()), n),
        "met": pa.repeat(pa.scalar(met, pa.string()), n),
        "footprints": pa.ListArray.from_arrays(offsets, names),
        "registered": pa.repeat(pa.scalar(registered, pa.timestamp("us", tz="UTC")), n),
        "altitude_ref": given["altitude_ref"],
        "sounding_id": given["sounding_id"],
    }
    return pa.table(columns, schema=SCHEMA)


def commit(location: Location, records: list[dict], version: int | None = None) -> bool:
    """Commit prepared records (as :func:`record` makes them) as one new version.

    Used by repair to restore lost entries with their original rows; returns
    whether the commit was created (``False``: ``version`` exists already).
    """
    if version is None:
        found = versions(location)
        version = found[-1] + 1 if found else 0
    data = commit_bytes(records)
    if not location.create(layout.registry_key(version), data):
        return False
    _published(location, version, data, None)
    return True


def commit_bytes(records: list[dict]) -> bytes:
    """Serialise registry records to one commit's Parquet bytes."""
    return _commit_bytes(pa.Table.from_pylist(records, schema=SCHEMA))


def _recorded(tables: Iterable[str]) -> dict[str, str] | None:
    """The Parquet metadata recording receptor table digests (``None``: none)."""
    tables = sorted(tables)
    return {TABLES_KEY: json.dumps(tables)} if tables else None


def _commit_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    # Ids and rows are unique: a dictionary of them is built only to be dropped. Rows
    # count up by one, so their deltas take a few bytes (1.3 MB and 0.03 s at 10^6 as a
    # dictionary, 6 kB and 0.007 s as deltas). A commit is always read whole, so its
    # column statistics (0.03 s at 10^6) would serve no reader.
    pq.write_table(
        table,
        sink,
        compression="zstd",
        write_page_checksum=True,
        write_statistics=False,
        use_dictionary=[name for name in table.column_names if name not in ("sim_id", "row")],
        column_encoding={"row": "DELTA_BINARY_PACKED"},
    )
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
        **{name: fields.get(name) for name in FLOATS},
        **{name: list(fields[name]) if name in fields else None for name in LISTS},
        "scene_id": scene_id,
        "met": met,
        "footprints": list(footprints),
        "registered": registered,
        "altitude_ref": receptor.altitude_ref,
        "sounding_id": receptor.sounding_id,
    }


def receptor(entry: pd.Series) -> Receptor:
    """Rebuild the receptor of one registry entry; its ``sim_id`` is the entry's.

    An entry of a commit written before receptors had ``altitude_ref`` and
    ``sounding_id`` (null there) is above ground and has no sounding.
    """
    fields: dict = {
        "time": entry["time"],
        "altitude_ref": _label(entry, "altitude_ref") or "agl",
        "sounding_id": _label(entry, "sounding_id"),
    }
    built: Receptor
    if entry["kind"] == "multipoint":
        fields.update({name: list(entry[name]) for name in LISTS})
        built = MultiPointReceptor(**fields)
    else:
        fields.update({"longitude": entry["longitude"], "latitude": entry["latitude"]})
        if entry["kind"] == "column":
            built = ColumnReceptor(**fields, bottom=entry["bottom"], top=entry["top"])
        else:
            built = PointReceptor(**fields, altitude=entry["altitude"])
    sim_id = str(entry["sim_id"])
    return built if built.sim_id == sim_id else built.registered_as(sim_id)  # type: ignore[return-value]


def _label(entry: pd.Series | dict, name: str) -> str | None:
    """A text field of an entry; ``None`` where it is null or absent."""
    value = entry.get(name)
    return None if value is None or pd.isna(value) else str(value)
