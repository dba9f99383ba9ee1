"""``stilt-dask compact``: pack completed simulations into a few objects per block of rows.

For every block of :data:`~.layout.BLOCK_ROWS` rows holding completed
simulations with unpacked keys, :func:`compact` writes (:mod:`.packing` says
how each is encoded):

1. the block's logs file and particle block files (merging the simulations a
   previous compaction packed there, unless an unpacked file replaces them);
2. per footprint, the block's packed empty markers, then its shard (merged the
   same way);
3. only then deletes the unpacked keys it packed.

Every object is written whole and atomically before anything it replaces is
deleted, and an unpacked key wins over its packed copy, so a compaction killed
at any point leaves a store that reads the same; the next one finishes the work.
Only simulations complete when the store is listed are packed; runs meanwhile
write unpacked keys of other simulations, which the next compaction packs. One
compaction at a time holds ``.stilt/compact.lock`` (create-if-absent); a lock
whose holder is gone (same host) is taken over, any other is released with
``--break-lock``.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from ..config import ModelConfig
from ..errors import StoreError
from . import footprints, layout, packing
from .claims import Holder
from .completion import CompletionRule, State
from .paths import Location
from .recovery import chunk_rows_of
from .registry import Registry
from .status import status

#: Particle files of a block read at once.
THREADS = 4


@dataclass
class CompactReport:
    """What :func:`compact` did.

    Attributes
    ----------
    simulations : int
        Completed simulations whose unpacked keys were packed.
    blocks : int
        Blocks written.
    removed : int
        Unpacked keys deleted.
    left : list of str
        Keys left unpacked, and why (damaged, or a particle table of another schema).
    """

    simulations: int = 0
    blocks: int = 0
    removed: int = 0
    left: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line per key left unpacked, then counts."""
        lines = [f"left unpacked: {why}" for why in self.left]
        lines.append(
            f"packed {self.simulations} simulations into {self.blocks} blocks; "
            f"{self.removed} unpacked keys removed"
        )
        return "\n".join(lines)


@contextmanager
def locked(location: Location, break_lock: bool = False) -> Iterator[None]:
    """Hold ``.stilt/compact.lock`` while the block runs.

    Raises
    ------
    StoreError
        When another compaction holds it (and ``break_lock`` is false).
    """
    mine = json.dumps(dataclasses.asdict(Holder.this_process("compact"))).encode()
    for attempt in range(2):
        if location.create(layout.COMPACT_LOCK, mine):
            break
        holder = _holder(location)
        if attempt or not (break_lock or (holder is not None and holder.dead)):
            who = f" by {holder}" if holder is not None else ""
            raise StoreError(
                f"{location.url(layout.COMPACT_LOCK)} is held{who}: another compaction is "
                "running; if none is, run `stilt-dask compact --break-lock`"
            )
        location.delete(layout.COMPACT_LOCK)  # its holder is gone, or the user said so
    try:
        yield
    finally:
        location.delete(layout.COMPACT_LOCK)


def _holder(location: Location) -> Holder | None:
    try:
        return Holder(**json.loads(location.read_bytes(layout.COMPACT_LOCK)))
    except FileNotFoundError:
        return None
    except Exception:
        return None  # unreadable: only --break-lock frees it


def compact(
    location: Location, config: ModelConfig, registry: Registry, break_lock: bool = False
) -> CompactReport:
    """Pack every completed simulation's unpacked keys; see the module docstring.

    Raises
    ------
    StoreError
        When another compaction holds the lock, or a footprint array is format 1.
    """
    rule = CompletionRule.from_config(config)
    report = CompactReport()
    for name in rule.footprints:
        footprints.check_packable(location, name)  # before anything is written
    with locked(location, break_lock):
        for name in rule.footprints:
            footprints.pack_metadata(location, name)
        table = status(location, registry, rule).table
        done = table["state"].isin([State.COMPLETE.value, State.COMPLETE_EMPTY.value]).to_numpy()
        ids = table.index[done].tolist()
        rows = registry.rows[done].tolist()
        unpacked = _Unpacked.listed(location, rule)
        blocks: dict[int, list[tuple[str, int]]] = defaultdict(list)
        for sim_id, row in zip(ids, rows, strict=True):
            if unpacked.holds(sim_id, row):
                blocks[layout.block_of(row)].append((sim_id, row))
        for block, sims in sorted(blocks.items()):
            part = _pack_block(location, rule, block, sims, unpacked)
            report.simulations += part.simulations
            report.blocks += part.blocks
            report.removed += part.removed
            report.left += part.left
    return report


@dataclass
class _Unpacked:
    """Unpacked keys present when the store was listed."""

    particles: dict[str, set[str]]
    chunks: dict[str, set[int]]
    markers: dict[str, set[str]]

    @classmethod
    def listed(cls, location: Location, rule: CompletionRule) -> _Unpacked:
        folders = [layout.PARTICLES] + ([layout.ERROR_PARTICLES] if rule.error_run else [])
        return cls(
            {
                folder: set(layout.strip_suffix(location.list_names(folder), layout.PARQUET_SUFFIX))
                for folder in folders
            },
            {name: set(chunk_rows_of(location, name)) for name in rule.footprints},
            {
                name: set(
                    layout.strip_suffix(
                        location.list_names(layout.empty_folder(name)), layout.EMPTY_SUFFIX
                    )
                )
                for name in rule.footprints
            },
        )

    def holds(self, sim_id: str, row: int) -> bool:
        return (
            any(sim_id in ids for ids in self.particles.values())
            or any(row in rows for rows in self.chunks.values())
            or any(sim_id in ids for ids in self.markers.values())
        )


def _pack_block(
    location: Location,
    rule: CompletionRule,
    block: int,
    sims: list[tuple[str, int]],
    unpacked: _Unpacked,
) -> CompactReport:
    """Pack one block's completed simulations: packed objects first, then the deletions."""
    report = CompactReport()
    delete: list[str] = []
    for folder, ids in unpacked.particles.items():
        delete += _pack_particles(location, folder, block, [s for s in sims if s[0] in ids], report)
    for name in rule.footprints:
        delete += _pack_footprint(location, name, block, sims, unpacked, report)
    for key in delete:
        location.delete(key)
    report.blocks += 1
    report.simulations += len(sims)
    report.removed += len(delete)
    return report


def _pack_particles(
    location: Location,
    folder: str,
    block: int,
    sims: list[tuple[str, int]],
    report: CompactReport,
) -> list[str]:
    """Write ``folder``'s block file with these simulations' files; the keys now packed."""
    if not sims:
        return []
    key = layout.block_key(folder, block)
    tables: dict[str, tuple[dict, pa.Table]] = {}
    logs: dict[str, str] = {}
    try:
        old = packing.open_block(location, folder, block)
        entries = packing.block_entries(old)
        for sim_id, entry in entries.items():
            group = entry.pop("row_group")
            table = old.schema_arrow.empty_table() if group is None else old.read_row_group(group)
            tables[sim_id] = (entry, table)
        logs = _read_logs(location, folder, block)
    except FileNotFoundError:
        pass
    except Exception as exc:
        report.left.append(f"{key} cannot be read ({type(exc).__name__}); run `verify --repair`")
        return []
    packed = []
    # Read and checked side by side: Parquet decoding and file reads release the GIL.
    with ThreadPoolExecutor(THREADS) as pool:
        read = list(pool.map(lambda sim: _read_particles(location, folder, sim[0]), sims))
    for (sim_id, _), (unpacked_key, got) in zip(sims, read, strict=True):
        if got is None:
            continue
        if isinstance(got, str):
            report.left.append(f"{unpacked_key}: {got}")
            continue
        meta, table = got
        if tables and not table.schema.equals(next(iter(tables.values()))[1].schema):
            report.left.append(f"{unpacked_key}: its columns differ from its block's")
            continue
        log = meta.pop("log", None)
        tables[sim_id] = (meta, table)
        logs.pop(sim_id, None)
        if log is not None:
            logs[sim_id] = log
        packed.append(unpacked_key)
    if not packed:
        return []
    # Logs first: a particle block never lists a simulation whose log is not packed.
    location.write_bytes(layout.block_key(_logs_folder(folder), block), packing.encode_logs(logs))
    location.write_bytes(key, packing.encode_particle_block(list(tables.values())))
    return packed


def _read_particles(
    location: Location, folder: str, sim_id: str
) -> tuple[str, tuple[dict, pa.Table] | str | None]:
    """``(key, (metadata, table))`` of an unpacked particle file, why not, or ``None`` if gone."""
    key = f"{folder}/{sim_id}{layout.PARQUET_SUFFIX}"
    try:
        parquet = pq.ParquetFile(
            io.BytesIO(location.read_bytes(key)), page_checksum_verification=True
        )
        table = parquet.read()
    except FileNotFoundError:
        return key, None
    except Exception as exc:
        return key, f"damaged ({type(exc).__name__})"
    meta = {
        k.decode().removeprefix("pystilt_dask:"): v.decode()
        for k, v in (parquet.metadata.metadata or {}).items()
        if k.startswith(b"pystilt_dask:")
    }
    return key, (meta, table)


def _logs_folder(folder: str) -> str:
    """Where the logs kept in ``folder``'s particle files are packed."""
    return layout.LOGS if folder == layout.PARTICLES else f"{layout.LOGS}/{folder}"


def _read_logs(location: Location, folder: str, block: int) -> dict[str, str]:
    try:
        data = location.read_bytes(layout.block_key(_logs_folder(folder), block))
    except FileNotFoundError:
        return {}
    table = pq.read_table(io.BytesIO(data))
    return dict(zip(table["sim_id"].to_pylist(), table["log"].to_pylist(), strict=True))


def _pack_footprint(
    location: Location,
    name: str,
    block: int,
    sims: list[tuple[str, int]],
    unpacked: _Unpacked,
    report: CompactReport,
) -> list[str]:
    """Write footprint ``name``'s shard and markers of ``block``; the keys now packed."""
    key = layout.shard_key(name, block)
    try:
        chunks = packing.decode_shard(location.read_bytes(key), key)
    except FileNotFoundError:
        chunks = {}
    except ValueError as exc:
        report.left.append(f"{exc}; run `verify --repair`")
        return []
    marked = packing.empty_ids(location, name, block)
    delete, new = [], {}
    for sim_id, row in sims:
        if row not in unpacked.chunks[name]:
            # Packed already: an unpacked marker left by a killed compaction goes.
            if sim_id in unpacked.markers[name] and sim_id in marked:
                delete.append(layout.empty_key(name, sim_id))
            continue
        chunk_key = layout.chunk_key(name, row)
        try:
            data = location.read_bytes(chunk_key)
        except FileNotFoundError:
            continue
        if not packing.intact(data):
            report.left.append(f"{chunk_key}: fails its CRC-32C")
            continue
        new[row % layout.BLOCK_ROWS] = data
        # The marker goes with the chunk: the unpacked one replaces the packed one.
        marked.discard(sim_id)
        if sim_id in unpacked.markers[name]:
            marked.add(sim_id)
            delete.append(layout.empty_key(name, sim_id))
        delete.insert(0, chunk_key)
    if not new:
        return delete
    markers = layout.empty_block_key(name, block)
    if marked or location.exists(markers):  # a block without empty footprints needs no file
        location.write_bytes(markers, json.dumps(sorted(marked)).encode())
    location.write_bytes(key, packing.encode_shard({**chunks, **new}))
    return delete
