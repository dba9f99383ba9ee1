"""Reconstruct the registry after damage, and say exactly which registrations are lost.

:func:`recover` reads every registry commit, its second copy
(``.stilt/registry-copy/<version>.parquet``) and every checkpoint, and the
footers of particle files no commit holds. What it finds:

* a commit that is unreadable (or missing while its copy is left) and that its
  copy or a checkpoint holds (:func:`~pystilt_dask.store.registry.recover_commit`)
  is restored in place, byte for byte from a copy;
* entries that only a checkpoint, a copy that differs from its commit, or a
  particle file still holds are to be committed again (at their original row
  when it is free, else past every row in use, chunks included);
* an unreadable commit that nothing restores is to be removed, and the entries
  it held that nothing else holds are lost: named from the commit's readable
  parts or from the footprint groups' ``simulation`` coordinates (which
  registration writes after each commit), or counted when not even that works.

Nothing is written unless :meth:`Recovery.apply` is called, except missing copies
of readable commits (:func:`write_missing_copies`), which are only ever added.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import zarr

from ..buffers import arrow_buffer
from ..config import ModelConfig
from ..errors import StoreError, StoreUnwritable
from . import layout, packing, particles, registry
from .paths import Location
from .registry import Registry


@dataclass
class Recovery:
    """The registry as :func:`recover` reconstructs it.

    Attributes
    ----------
    current : Registry
        What the readable commits hold (with ``repair``, after commits were
        restored from their copies or checkpoints).
    restore : list of (dict, str)
        Entries to commit again (records as :func:`~pystilt_dask.store.registry.record`
        makes them, rows already placed), each with the key that still holds it.
    problems : list of str
        One line per damaged commit, copy or checkpoint.
    lost : list of str
        Ids of registered simulations nothing holds any more.
    unnamed : list of str
        Unreadable commits whose lost entries cannot even be named.
    unrecovered : list of int
        Unreadable commits nothing restores (removed by :meth:`apply`).
    listed : int
        How many of ``restore`` (from the start) to report one by one; the
        others are whole commits their copies hold, reported once per commit.
    """

    current: Registry
    restore: list[tuple[dict, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    unnamed: list[str] = field(default_factory=list)
    unrecovered: list[int] = field(default_factory=list)
    listed: int = 0

    def apply(self, location: Location) -> None:
        """Commit the entries to restore, then remove the commits nothing restores."""
        if self.restore:
            records = [record for record, _ in self.restore]
            while not registry.commit(location, records):
                pass  # a registrant took the version: commit as the next one
        for version in self.unrecovered:
            location.delete(layout.registry_key(version))


def recover(location: Location, config: ModelConfig, repair: bool) -> Recovery:
    """Reconstruct the registry; with ``repair``, restore commits and copies in place.

    See the module docstring. Entries to restore are committed by
    :meth:`Recovery.apply`, after the caller has cleaned their keys.
    """
    named_rows = _coordinate_ids(location, config)  # before the commits: see _name_lost
    commits, copies = registry.versions(location), _copies(location)
    readable: dict[int, pa.Table] = {}  # every commit, as read or as restored
    on_disk: list[int] = []  # commits readable where they are
    restored: list[int] = []  # commits restored from a copy or a checkpoint
    held_elsewhere: dict[str, tuple[dict, str]] = {}
    salvaged: dict[int, tuple[int | None, list[str] | None]] = {}
    problems: list[str] = []
    for version in sorted(set(commits) | set(copies)):
        key, copy_key = layout.registry_key(version), layout.registry_copy_key(version)
        data, table = _read(location, key) if version in commits else (None, None)
        if table is not None:
            readable[version] = table
            on_disk.append(version)
            if version in copies:
                copy_data, copy = _read(location, copy_key)
                if copy_data != data:
                    problems.append(f"{copy_key}: differs from its commit")
                    for record in copy.to_pylist() if copy is not None else []:
                        held_elsewhere.setdefault(record["sim_id"], (record, copy_key))
                    if repair:
                        location.write_bytes(copy_key, data)
            continue
        try:
            good = registry.recover_commit(location, version)
        except StoreError:
            good = None
        if good is not None:
            state = "is missing" if data is None else "is unreadable"
            how = "restored from" if repair else "held by"
            problems.append(f"{key} {state}; {how} its copy or a checkpoint")
            readable[version] = _parse(good)
            restored.append(version)
            if repair:
                if data is None:
                    location.create(key, good)
                else:
                    location.write_bytes(key, good)
                location.write_bytes(copy_key, good)
            continue
        if data is None:  # a copy is all that is left of it, and it does not read
            problems.append(f"{copy_key}: unreadable, and its commit is missing")
            if repair:
                location.delete(copy_key)
            continue
        problems.append(f"{key} is unreadable, and no copy or checkpoint holds it")
        salvaged[version] = _salvage(data)

    held = {sim_id for table in readable.values() for sim_id in table["sim_id"].to_pylist()}
    for version in registry.checkpoints(location):
        key = layout.checkpoint_key(version)
        try:
            table = registry.read_checkpoint(location, version)
        except StoreError:
            problems.append(f"{key}: unreadable (an older checkpoint or the commits serve)")
            if repair:
                location.delete(key)
            continue
        ids = set(table["sim_id"].to_pylist())
        below = {i for v, t in readable.items() if v <= version for i in t["sim_id"].to_pylist()}
        if below - ids:
            problems.append(f"{key}: lacks entries its commits hold")
            if repair:
                location.delete(key)
        for record in table.to_pylist():
            if record["sim_id"] not in held:
                held_elsewhere.setdefault(record["sim_id"], (record, key))

    current = registry.read(location, only=sorted(on_disk + restored if repair else on_disk))
    restore = [item for sim_id, item in held_elsewhere.items() if sim_id not in current]
    found = Recovery(current, restore, problems, unrecovered=sorted(salvaged))
    _from_particles(location, config, found)
    found.listed = len(found.restore)
    if not repair:
        # Not written back: their entries are checked as entries to restore instead.
        found.restore += [
            (record, layout.registry_copy_key(version))
            for version in restored
            for record in readable[version].to_pylist()
        ]
    _place(location, config, found)
    _name_lost(found, salvaged, named_rows)
    return found


def write_missing_copies(location: Location) -> int:
    """Write the second copy of every readable commit that has none; return how many.

    Best effort: a store that refuses writes is left as it is.
    """
    copies, written = set(_copies(location)), 0
    for version in registry.versions(location):
        if version in copies:
            continue
        data, table = _read(location, layout.registry_key(version))
        if table is None:
            continue
        try:
            written += location.create(layout.registry_copy_key(version), data)
        except StoreUnwritable:
            break
    return written


def _copies(location: Location) -> list[int]:
    names = layout.strip_suffix(location.list_names(layout.REGISTRY_COPIES), layout.PARQUET_SUFFIX)
    return sorted(int(name) for name in names if name.isdigit())


def _parse(data: bytes) -> pa.Table:
    return pq.read_table(pa.BufferReader(arrow_buffer(data)), page_checksum_verification=True)


def _read(location: Location, key: str) -> tuple[bytes | None, pa.Table | None]:
    """A registry file's bytes and table: ``(None, None)`` absent, ``(data, None)`` unreadable."""
    try:
        data = location.read_bytes(key)
    except FileNotFoundError:
        return None, None
    try:
        return data, _parse(data)
    except Exception:
        return data, None


def _salvage(data: bytes) -> tuple[int | None, list[str] | None]:
    """What an unreadable commit still tells: its entry count and ids, when those parse."""
    try:
        count = pq.ParquetFile(pa.BufferReader(arrow_buffer(data))).metadata.num_rows
    except Exception:
        return None, None
    try:
        table = pq.read_table(pa.BufferReader(arrow_buffer(data)), columns=["sim_id"])
        ids = table["sim_id"].to_pylist()
    except Exception:
        return count, None
    return count, [str(i) for i in ids]


def _from_particles(location: Location, config: ModelConfig, found: Recovery) -> None:
    """Entries that only a particle file's footer holds, to commit again (registered now).

    Particle files packed by ``compact`` are found in their block files' footers.
    """
    known = set(found.current.sim_ids) | {record["sim_id"] for record, _ in found.restore}
    names = location.list_names(layout.PARTICLES)
    stored = {sim_id: None for sim_id in layout.strip_suffix(names, layout.PARQUET_SUFFIX)}
    for block in layout.blocks_in(names):
        key = layout.block_key(layout.PARTICLES, block)
        try:
            entries = packing.block_entries(packing.open_block(location, layout.PARTICLES, block))
        except FileNotFoundError:
            continue
        except Exception:
            continue  # verify names the damaged block file
        for sim_id, entry in entries.items():
            stored.setdefault(sim_id, (key, entry))
    now = datetime.now(UTC)
    for sim_id in sorted(set(stored) - known):
        packed = stored[sim_id]
        key = layout.particles_key(sim_id) if packed is None else packed[0]
        try:
            meta = particles.metadata(location, key) if packed is None else packed[1]
            record = registry.record(
                particles.receptor(meta),
                int(meta["row"]),
                meta["met"],
                list(config.footprints),
                meta["scene_id"] or None,
                now,
                sim_id,  # the id it was registered under (an older scheme's, perhaps)
            )
        except FileNotFoundError:
            continue  # removed meanwhile
        except Exception as exc:
            found.problems.append(
                f"{key}: no registry entry holds {sim_id!r}, and its footer cannot be read "
                f"({type(exc).__name__})"
            )
            found.lost.append(sim_id)
            continue
        found.restore.append((record, key))


def _place(location: Location, config: ModelConfig, found: Recovery) -> None:
    """Give each entry to restore its original row when free, else a row past every row in use.

    Rows in use include rows that only a chunk occupies, so a moved entry never
    lands on someone's chunk.
    """
    taken = set(found.current.rows.tolist())
    chunk_rows = [
        row for name in config.footprints for row in chunk_rows_of(location, name, packed=True)
    ]
    wanted = [int(record["row"]) for record, _ in found.restore]
    next_row = 1 + max([found.current.next_row - 1, *chunk_rows, *wanted])
    for record, _ in found.restore:
        if int(record["row"]) in taken:
            record["row"], next_row = next_row, next_row + 1
        taken.add(int(record["row"]))


def chunk_rows_of(location: Location, name: str, packed: bool = False) -> list[int]:
    """Rows that have an unpacked chunk of footprint ``name``, from one listing.

    ``packed``: rows whose chunk a shard holds too (each shard's index read once).
    """
    rows = [
        int(match.group(1))
        for key in location.list_names(layout.foot_array(name))
        if (match := layout.CHUNK_RE.match(key))
    ]
    if packed:
        for block in packing.shard_blocks(location, name):
            offsets = packing.shard_positions(location, name, block)
            rows += (block * layout.BLOCK_ROWS + offsets).tolist()
    return rows


def _coordinate_ids(location: Location, config: ModelConfig) -> dict[int, str]:
    """Ids by row as the footprint groups' ``simulation`` coordinates hold them.

    Registration writes them after its commit (for plain zarr readers), so read
    before the commits they name nothing the commits do not: an id found here and
    in no commit is a lost entry's.
    """
    found: dict[int, str] = {}
    for name in config.footprints:
        try:
            store = location.zarr_store(layout.footprint_group(name), read_only=True)
            ids = zarr.open_array(store, path="simulation", mode="r")[:]
        except Exception:
            continue  # no group yet, or a damaged coordinate: nothing to name from it
        found.update({row: str(i) for row, i in enumerate(ids.tolist()) if i})
    return found


def _name_lost(
    found: Recovery,
    salvaged: dict[int, tuple[int | None, list[str] | None]],
    named_rows: dict[int, str],
) -> None:
    """Name the entries nothing holds any more, or count them when even that fails."""
    kept = set(found.current.sim_ids) | {record["sim_id"] for record, _ in found.restore}
    lost = set(found.lost) | {i for i in named_rows.values() if i not in kept}
    for _, ids in salvaged.values():
        lost |= set(ids or ()) - kept
    found.lost = sorted(lost)
    if all(ids is not None for _, ids in salvaged.values()):
        return  # every entry of theirs is named or restored
    counts = [count for count, _ in salvaged.values()]
    keys = ", ".join(layout.registry_key(v) for v in salvaged)
    if None in counts:
        found.unnamed.append(
            f"{keys}: neither its entries nor their number can be read; any entry of it "
            "not named here is lost"
        )
        return
    from_particles = sum(source.startswith(f"{layout.PARTICLES}/") for _, source in found.restore)
    unnamed = sum(counts) - from_particles - len(found.lost)  # type: ignore[arg-type]
    if unnamed > 0:
        found.unnamed.append(f"{keys}: {unnamed} of its {sum(counts)} entries cannot be named")  # type: ignore[arg-type]
