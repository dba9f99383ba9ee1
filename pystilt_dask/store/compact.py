"""``stilt-dask compact``: pack completed simulations into a few objects per block of rows.

Every result prefix of the project is packed (the plain run, realizations and
variants: :func:`pystilt_dask.ensemble.members`), each block of
:data:`~.layout.BLOCK_ROWS` rows holding completed simulations with unpacked keys
by a task of its own on a Dask cluster (blocks share no key). A block's task
writes (:mod:`.packing` says how each is encoded):

1. the block's logs file and particle block files (merging the simulations a
   previous compaction packed there, unless an unpacked file replaces them),
   each particle file's row group copied as stored (:mod:`.rowgroups`); only
   the prefix that owns particles packs them, not a variant that reads them there;
2. per footprint, the block's packed empty markers, then its shard (merged the
   same way);
3. only then deletes the unpacked keys it packed.

Every object is written whole and atomically before anything it replaces is
deleted, and an unpacked key wins over its packed copy, so a compaction killed
at any point leaves a store that reads the same; the next one finishes the work.
Only simulations complete when the store is listed are packed; runs meanwhile
write unpacked keys of other simulations, which the next compaction packs. The
coordinator lists the store, rewrites the arrays' metadata and holds
``.stilt/compact.lock`` (create-if-absent) until every task has ended; a lock
whose holder is gone (same host) is taken over, any other is released with
``--break-lock``."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..config import ModelConfig
from ..errors import StoreError
from . import footprints, layout, packing, particles, rowgroups
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
    location: Location,
    config: ModelConfig,
    registry: Registry,
    break_lock: bool = False,
    client: Any = None,
) -> CompactReport:
    """Pack every completed simulation's unpacked keys; see the module docstring.

    Parameters
    ----------
    location : Location
        The project root; every result prefix under it (realizations, variants) is packed.
    config : ModelConfig
        The project's configuration.
    registry : Registry
        A snapshot of its registry.
    break_lock : bool
        Take over ``.stilt/compact.lock`` whoever holds it.
    client : distributed.Client, cluster or str, optional
        Where blocks are packed, as :meth:`Model.run <pystilt_dask.Model.run>`
        runs: a client, a cluster or a scheduler address; default: the current
        default client, else a cluster built from ``config.execution`` (closed
        at the end). None is started when nothing is to be packed.

    Raises
    ------
    StoreError
        When another compaction holds the lock, or a footprint array is format 1.
    """
    from ..ensemble import members

    parts = [(m.location(location), m.rule, m.shares is None) for m in members(config)]
    for where, rule, _ in parts:
        for name in rule.footprints:
            footprints.check_packable(where, name)  # before anything is written
    report = CompactReport()
    with locked(location, break_lock):
        blocks = []
        for where, rule, owns_particles in parts:
            for name in rule.footprints:
                footprints.pack_metadata(where, name)
            blocks += _blocks(where, rule, registry, owns_particles)
        if blocks:
            for part in _pack_all(blocks, client, config):
                report.simulations += part.simulations
                report.blocks += part.blocks
                report.removed += part.removed
                report.left += part.left
    return report


def _pack_all(blocks: list[_Block], client: Any, config: ModelConfig) -> list[CompactReport]:
    """Pack ``blocks`` as independent tasks; return once every task has ended.

    The lock is released only after that, so no task of this compaction still
    writes when the next one starts. Interrupted, it sets the compaction's stop
    event, which a task reads before it writes anything, and waits for every
    task: those not started end at once, those running finish their block (a
    task cannot be stopped midway). A second interruption stops waiting.
    """
    from distributed import Event, wait

    from ..execution.run import connect

    with connect(client, config.execution) as active:
        stop = f"stilt-compact-stop-{uuid.uuid4().hex}"
        futures = [
            active.submit(_pack_block, block, stop, key=f"stilt-compact-{uuid.uuid4().hex}")
            for block in blocks
        ]
        try:
            wait(futures)
        except BaseException:
            Event(stop, client=active).set()
            wait(futures)
            raise
        for future in futures:
            if future.status == "error":
                future.result()  # raises the task's error
        return active.gather(futures)


@dataclass(frozen=True)
class _Block:
    """One block of a result prefix to pack: its completed simulations with unpacked keys."""

    location: Location
    block: int
    sims: list[tuple[str, int]]
    #: Ids with an unpacked particle file, by particle folder.
    particles: dict[str, set[str]]
    #: Rows with an unpacked chunk, and ids with an unpacked empty marker, by footprint.
    chunks: dict[str, set[int]]
    markers: dict[str, set[str]]


def _blocks(
    location: Location, rule: CompletionRule, registry: Registry, owns_particles: bool
) -> list[_Block]:
    """The blocks of one result prefix holding complete simulations with unpacked keys.

    Particles are packed by the prefix that owns them (``owns_particles``), not
    by one that reads them there.
    """
    table = status(location, registry, rule).table
    done = table["state"].isin([State.COMPLETE.value, State.COMPLETE_EMPTY.value]).to_numpy()
    folders = [layout.PARTICLES] + ([layout.ERROR_PARTICLES] if rule.error_run else [])
    particles = {
        folder: set(layout.strip_suffix(location.list_names(folder), layout.PARQUET_SUFFIX))
        for folder in (folders if owns_particles else [])
    }
    chunks = {name: set(chunk_rows_of(location, name)) for name in rule.footprints}
    markers = {
        name: set(
            layout.strip_suffix(location.list_names(layout.empty_folder(name)), layout.EMPTY_SUFFIX)
        )
        for name in rule.footprints
    }
    found: dict[int, _Block] = {}
    for sim_id, row in zip(table.index[done].tolist(), registry.rows[done].tolist(), strict=True):
        held_particles = [f for f, ids in particles.items() if sim_id in ids]
        held_chunks = [n for n, rows in chunks.items() if row in rows]
        held_markers = [n for n, ids in markers.items() if sim_id in ids]
        if not (held_particles or held_chunks or held_markers):
            continue
        number = layout.block_of(row)
        block = found.get(number)
        if block is None:
            block = found[number] = _Block(
                location, number, [], {f: set() for f in particles},
                {n: set() for n in chunks}, {n: set() for n in markers},
            )  # fmt: skip
        block.sims.append((sim_id, row))
        for folder in held_particles:
            block.particles[folder].add(sim_id)
        for name in held_chunks:
            block.chunks[name].add(row)
        for name in held_markers:
            block.markers[name].add(sim_id)
    return [found[number] for number in sorted(found)]


def _pack_block(work: _Block, stop: str) -> CompactReport:
    """Pack one block's completed simulations: packed objects first, then the deletions.

    Nothing is done once the compaction's event ``stop`` is set (it was interrupted).
    """
    from distributed import Event

    location, block, sims = work.location, work.block, work.sims
    report = CompactReport()
    if Event(stop).is_set():
        return report
    delete: list[str] = []
    for folder, ids in work.particles.items():
        delete += _pack_particles(location, folder, block, [s for s in sims if s[0] in ids], report)
    for name in work.chunks:
        delete += _pack_footprint(location, name, work, report)
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
    """Write ``folder``'s block file with these simulations' files; the keys now packed.

    Row groups are copied as stored (:mod:`.rowgroups`), their page CRCs checked.
    """
    if not sims:
        return []
    key = layout.block_key(folder, block)
    held: dict[str, tuple[dict, rowgroups.Group | None]] = {}
    logs: dict[str, str] = {}
    template = None
    try:
        old = rowgroups.Footer.of(location.read_bytes(key))
        groups = old.groups()
        for sim_id, entry in packing.footer_entries(old).items():
            group = entry.pop("row_group")
            held[sim_id] = (entry, None if group is None else groups[group])
        template = old
        logs = _read_logs(location, folder, block)
    except FileNotFoundError:
        pass
    except Exception as exc:
        report.left.append(f"{key} cannot be read ({type(exc).__name__}); run `verify --repair`")
        return []
    packed = []
    # Read side by side: on an object store each read is a request.
    with ThreadPoolExecutor(THREADS) as pool:
        read = list(pool.map(lambda sim: _read_particles(location, folder, sim[0]), sims))
    for (sim_id, _), (unpacked_key, got) in zip(sims, read, strict=True):
        if got is None:
            continue
        if isinstance(got, str):
            report.left.append(f"{unpacked_key}: {got}")
            continue
        entry, footer = got
        if template is None:
            template = packing.plain_template(footer)
        if footer.schema != template.schema:
            report.left.append(f"{unpacked_key}: its columns differ from its block's")
            continue
        log = entry.pop("log", None)
        groups = footer.groups()
        held[sim_id] = (entry, groups[0] if groups else None)
        logs.pop(sim_id, None)
        if log is not None:
            logs[sim_id] = log
        packed.append(unpacked_key)
    if not packed:
        return []
    # Logs first: a particle block never lists a simulation whose log is not packed.
    location.write_bytes(layout.block_key(_logs_folder(folder), block), packing.encode_logs(logs))
    # In row order: status compares a full block's ids with the registry's at once.
    ordered = sorted(held.values(), key=lambda pair: int(pair[0]["row"]))
    location.write_bytes(key, b"".join(packing.particle_block(template, ordered)))
    return packed


def _read_particles(
    location: Location, folder: str, sim_id: str
) -> tuple[str, tuple[dict, rowgroups.Footer] | str | None]:
    """``(key, (metadata, footer))`` of an unpacked particle file, why not, or ``None`` if gone."""
    key = f"{folder}/{sim_id}{layout.PARQUET_SUFFIX}"
    try:
        footer = rowgroups.Footer.of(location.read_bytes(key))
        groups = footer.groups()
        if len(groups) > 1:  # written before particle files had one group
            footer = rowgroups.Footer.of(particles.one_group(footer.data))
            groups = footer.groups()
        for group in groups:
            group.check_pages()
        meta = {
            k.decode().removeprefix("pystilt_dask:"): v.decode()
            for k, v in footer.key_values().items()
            if k.startswith(b"pystilt_dask:")
        }
    except FileNotFoundError:
        return key, None
    except Exception as exc:
        return key, f"damaged ({type(exc).__name__})"
    return key, (meta, footer)


def _logs_folder(folder: str) -> str:
    """Where the logs kept in ``folder``'s particle files are packed."""
    return layout.LOGS if folder == layout.PARTICLES else f"{layout.LOGS}/{folder}"


def _read_logs(location: Location, folder: str, block: int) -> dict[str, str]:
    try:
        data = location.read_buffer(layout.block_key(_logs_folder(folder), block))
    except FileNotFoundError:
        return {}
    table = pq.read_table(pa.BufferReader(data))
    return dict(zip(table["sim_id"].to_pylist(), table["log"].to_pylist(), strict=True))


def _pack_footprint(
    location: Location, name: str, work: _Block, report: CompactReport
) -> list[str]:
    """Write footprint ``name``'s shard and markers of a block; the keys now packed."""
    block, chunks_held, markers_held = work.block, work.chunks[name], work.markers[name]
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
    for sim_id, row in work.sims:
        if row not in chunks_held:
            # Packed already: an unpacked marker left by a killed compaction goes.
            if sim_id in markers_held and sim_id in marked:
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
        if sim_id in markers_held:
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
