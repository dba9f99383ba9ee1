"""Find damaged results by reading every key back, and repair without losing work silently.

:func:`verify` looks at every key the store holds, registered or not:

* the registry: commits, their copies and checkpoints
  (:mod:`~pystilt_dask.store.recovery`), and particle files no commit holds,
  which name lost registry entries;
* a registered simulation's particle files must pass their page CRCs and carry
  its registry entry in their footer; its footprint chunks must pass their
  CRC-32C (format 2) or their recorded digest (format 1), and decode; a chunk
  counts as the simulation's only beside its intact particle file naming its row
  (chunks are never written before their particles, and after a registry commit
  was lost a row's chunk can be another simulation's); a footprint marked empty
  must read as zeros;
* chunks at rows nobody holds, and empty markers and transport-error particles
  of simulations nobody registered, are stray;
* packed objects (:mod:`.packing`): a shard's index must pass its CRC-32C and
  each packed chunk is checked as an unpacked one; a particle block file must
  pass its page CRCs and list only registered simulations, each with its
  registry entry. A damaged packed object is removed whole on repair, so its
  rows are pending again (an unpacked key, which wins over its packed copy,
  keeps its row complete).

With ``repair``, in one pass: commits are restored from their copies or
checkpoints; damaged and stray keys are removed, chunks first, so the next
``run`` recomputes exactly those (reusing intact particles); then entries only a
checkpoint, a copy or a particle file holds are committed again. Entries nothing
holds are **lost**: named (or counted), never dropped silently, and
:attr:`VerifyReport.lost_anything` is true. Missing copies of readable commits
are written in every case.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import dask
import numpy as np

from ..config import ModelConfig
from ..errors import StoreError
from ..receptors import Receptor
from . import chunks, digests, footprints, layout, packing, particles, registry
from .completion import ERROR_PARTICLES, PARTICLES, CompletionRule
from .paths import Location
from .recovery import chunk_rows_of, recover, write_missing_copies

#: Simulations checked per task.
BATCH = 64
_REGISTER_AGAIN = (
    "register them again with `stilt-dask register` of their receptor table "
    "(receptors already registered are skipped)"
)


@dataclass
class VerifyReport:
    """What :func:`verify` found (and, with ``repair``, did).

    Attributes
    ----------
    damaged : dict
        Problems per simulation id: damaged or unverifiable keys, registry
        entries lost but held elsewhere.
    registry : list of str
        Problems with registry commits, their copies and checkpoints.
    stray : list of str
        Keys that no registered simulation holds.
    lost : list of str
        Ids of registered simulations whose entries nothing holds any more.
    unnamed : list of str
        Commits whose lost entries cannot even be named.
    checked : int
        Simulations checked.
    repaired : bool
        Whether the problems were repaired.
    copies_written : int
        Missing copies of registry commits written.
    """

    damaged: dict[str, list[str]] = field(default_factory=dict)
    registry: list[str] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    unnamed: list[str] = field(default_factory=list)
    checked: int = 0
    repaired: bool = False
    copies_written: int = 0

    @property
    def ok(self) -> bool:
        """Whether nothing is damaged, stray or lost."""
        return not (self.damaged or self.registry or self.stray or self.lost_anything)

    @property
    def lost_anything(self) -> bool:
        """Whether registrations are lost (no copy, checkpoint or particle file holds them)."""
        return bool(self.lost or self.unnamed)

    def summary(self) -> str:
        """One line per problem, then counts; losses are said to be lost, never repaired."""
        lines = [*self.registry, *self.stray]
        for sim_id, problems in self.damaged.items():
            lines += [f"{sim_id}: {problem}" for problem in problems]
        lines += self.unnamed
        fixed = self.repaired and not self.lost_anything
        counts = [f"{len(self.damaged)} {'repaired' if self.repaired else 'damaged'}"]
        if self.registry:
            done = " repaired" if fixed else ""
            counts.append(f"{len(self.registry)} registry problems{done}")
        if self.stray:
            counts.append(f"{len(self.stray)} stray keys {'removed' if self.repaired else 'found'}")
        if self.copies_written:
            counts.append(f"{self.copies_written} missing registry copies written")
        lines.append(f"checked {self.checked} simulations: " + ", ".join(counts))
        if self.lost_anything:
            what = f"{len(self.lost)} registry entries" if self.lost else "registry entries"
            named = f": {', '.join(self.lost)}" if self.lost else " (see above)"
            verb = "are lost" if self.repaired else "cannot be restored (nothing holds them)"
            lines.append(f"{what} {verb}{named}; {_REGISTER_AGAIN}")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Expected:
    """What a simulation's particle footers must say: its registry entry."""

    sim_id: str
    row: int
    receptor: Receptor
    met: str
    scene_id: str


def verify(
    location: Location,
    config: ModelConfig,
    repair: bool = False,
    members: Sequence[tuple[str, Location, ModelConfig]] = (),
) -> VerifyReport:
    """Check every key in the project store; see the module docstring.

    The checks of simulations run as dask tasks on the current scheduler (a
    distributed client when one is active), ``BATCH`` simulations each.
    ``members``: the other result prefixes (realizations, variants) as
    ``(prefix, location, config)``; each one's results are checked against the
    root's registry and named ``<prefix><sim_id>``.
    """
    report = VerifyReport(repaired=repair)
    rule = CompletionRule.from_config(config)
    found = recover(location, config, repair)
    report.registry, report.lost, report.unnamed = found.problems, found.lost, found.unnamed

    entries = found.current.entries.to_pylist() + [record for record, _ in found.restore]
    n_rows = 1 + max([int(e["row"]) for e in entries], default=-1)
    by_id = {str(e["sim_id"]): _expected(e) for e in entries}
    packed = _check_packed(location, rule, by_id)
    # The keys to remove, per result prefix ("" is the root: the plain run).
    removals: dict[str, list[str]] = {"": []}
    for where, items in packed.problems.items():
        report.damaged.setdefault(where, []).extend(text for text, _ in items)
        removals[""] += [key for _, keys in items for key in keys]
    batches = [entries[i : i + BATCH] for i in range(0, len(entries), BATCH)]
    checks = [
        ("", dask.delayed(_check_batch)(location, rule, n_rows, b, packed.vouched, packed.rows))
        for b in batches
    ]
    places = {"": location}
    for prefix, where, settings in members:
        places[prefix] = where
        member_rule = CompletionRule.from_config(settings)
        checks += [
            (prefix, dask.delayed(_check_batch)(where, member_rule, n_rows, b)) for b in batches
        ]
    results = dask.compute(*(check for _, check in checks))
    for (prefix, _), problems in zip(checks, results, strict=True):
        for sim_id, items in problems.items():
            report.damaged.setdefault(prefix + sim_id, []).extend(text for text, _ in items)
            removals.setdefault(prefix, []).extend(key for _, keys in items for key in keys)
    report.checked = len(entries)
    for record, source in found.restore[: found.listed]:
        held = "restored from" if repair else "held by"
        report.damaged.setdefault(record["sim_id"], []).insert(
            0, f"its registry entry is lost ({held} {source})"
        )
    held = ({e["sim_id"] for e in entries}, {int(e["row"]) for e in entries})
    stray = _stray(location, rule, *held)
    stray += [
        (layout.shard_key(name, layout.block_of(row)), f"holds a chunk at row {row}, which no "
         "registered simulation holds")
        for name, rows in packed.rows.items()
        for row in sorted(rows - held[1])
    ]  # fmt: skip
    report.stray = [f"{key}: {why}" for key, why in stray]

    if repair:
        removals[""] += [key for key, _ in stray]
        for prefix, keys in removals.items():
            for key in sorted(set(keys), key=lambda k: "/foot/" not in k):
                places[prefix].delete(key)  # completion chunks first, like invalidate
        found.apply(location)
    report.copies_written = write_missing_copies(location)
    return report


# -- simulations ---------------------------------------------------------------------------


def _expected(entry: dict) -> _Expected:
    """What the particle footers of a registry entry must say."""
    return _Expected(
        str(entry["sim_id"]),
        int(entry["row"]),
        registry.receptor(entry),  # type: ignore[arg-type]  # a record reads as an entry
        str(entry["met"]),
        entry["scene_id"] or "",
    )


def _check_batch(
    location: Location,
    rule: CompletionRule,
    n_rows: int,
    entries: list[dict],
    vouched: set[str] = frozenset(),
    packed_rows: dict[str, set[int]] | None = None,
) -> dict[str, list[tuple[str, list[str]]]]:
    """Problems of each simulation in ``entries``, with the keys to remove for each."""
    readers = {
        name: chunks.chunk_reader(footprints.foot_array(location, name, n_rows, read_only=True))
        for name in rule.footprints
        if location.exists(f"{layout.foot_array(name)}/zarr.json")
    }
    legacy = any(not reader.crc for reader in readers.values())
    found: dict[str, list[tuple[str, list[str]]]] = {}
    for entry in entries:
        expected = _expected(entry)
        problems = _check_simulation(
            location, rule, readers, legacy, expected, vouched, packed_rows or {}
        )
        if problems:
            found[expected.sim_id] = problems
    return found


def _check_simulation(
    location: Location,
    rule: CompletionRule,
    readers: dict[str, chunks.ChunkReader],
    legacy: bool,
    expected: _Expected,
    packed_ok: set[str] = frozenset(),
    packed_rows: dict[str, set[int]] | None = None,
) -> list[tuple[str, list[str]]]:
    sim_id, row = expected.sim_id, expected.row
    packed_rows = packed_rows or {}
    problems: list[tuple[str, list[str]]] = []
    recorded = digests.read(location, sim_id) if legacy else {}
    vouched = True
    parts = [(PARTICLES, layout.particles_key(sim_id))]
    if rule.error_run:
        parts.append((ERROR_PARTICLES, layout.error_particles_key(sim_id)))
    for component, key in parts:
        if not location.exists(key):
            # Packed: its block file was checked whole (:func:`_check_packed`).
            vouched = vouched and (component != PARTICLES or sim_id in packed_ok)
            continue
        why = _check_particles(location, key, expected, recorded.get(component) if legacy else "")
        if why:
            problems.append((f"{key}: {why}", [key]))
            vouched = vouched and component != PARTICLES
    for name, read in readers.items():
        key = layout.chunk_key(name, row)
        marker = layout.empty_key(name, sim_id)
        if not location.exists(key):
            if row not in packed_rows.get(name, ()):
                continue
            # Its packed chunk: problems remove the shard (and the block's markers).
            block = layout.block_of(row)
            key = layout.shard_key(name, block)
            if sim_id not in packing.empty_ids(location, name, block):
                marker = key
            else:
                marker = layout.empty_block_key(name, block)
                if not location.exists(marker):
                    marker = key
        if not vouched:
            problems.append(
                (f"{key}: no intact particle file of {sim_id!r} at row {row} vouches for it",
                 [key, marker])
            )  # fmt: skip
            continue
        try:
            values = read(location, name, row, sim_id)
        except (ValueError, RuntimeError) as exc:
            problems.append((str(exc), [key, marker]))
            continue
        if marker != key and location.exists(marker) and np.any(values):
            problems.append((f"{key}: marked empty but holds values", [key, marker]))
    return problems


def _check_particles(
    location: Location, key: str, expected: _Expected, recorded: str | None
) -> str | None:
    """Why a particle file is not intact and ``expected``'s, or ``None``.

    ``recorded``: its format 1 digest (``None`` when one is needed but absent,
    ``""`` when none is needed).
    """
    try:
        data = location.read_bytes(key)
        _, meta = particles.parse(data)
    except Exception as exc:
        return f"cannot be read ({type(exc).__name__}: {exc})"
    why = _entry_differs(meta, expected)
    if why:
        return why
    if recorded is None:
        return "no digest was recorded for it (not published by this store's protocol)"
    if recorded and digests.digest(data) != recorded:
        return "its content does not match the digest recorded when it was published"
    return None


# -- packed objects ------------------------------------------------------------------------


@dataclass
class _Packed:
    """What the packed objects hold: problems by block key, intact packed particles, shard rows."""

    problems: dict[str, list[tuple[str, list[str]]]] = field(default_factory=dict)
    vouched: set[str] = field(default_factory=set)
    rows: dict[str, set[int]] = field(default_factory=dict)


def _check_packed(
    location: Location, rule: CompletionRule, expected: dict[str, _Expected]
) -> _Packed:
    """Check every particle block file whole and every shard's index; see the module docstring."""
    found = _Packed()
    folders = [layout.PARTICLES] + ([layout.ERROR_PARTICLES] if rule.error_run else [])
    tasks = [
        dask.delayed(_check_particle_block)(location, folder, block, expected)
        for folder in folders
        for block in layout.blocks_in(location.list_names(folder))
    ]
    held: dict[str, set[str]] = {}
    for key, problems, ids in dask.compute(*tasks):
        if problems:
            found.problems[key] = [(problem, [key]) for problem in problems]
        held.setdefault(key.split("/", 1)[0], set()).update(ids)
    # Chunks are vouched for by the simulation's (not its transport-error) particles.
    found.vouched = held.get(layout.PARTICLES, set())
    for name in rule.footprints:
        rows = found.rows.setdefault(name, set())
        for block in packing.shard_blocks(location, name):
            key = layout.shard_key(name, block)
            try:
                index = packing.parse_index(location.read_range(key, -packing.INDEX_BYTES), key)
            except FileNotFoundError:
                continue
            except ValueError as exc:
                found.problems[key] = [(str(exc), [key])]
                continue
            rows.update(block * layout.BLOCK_ROWS + np.flatnonzero(index[:, 0] != packing.ABSENT))
        for block in layout.blocks_in(location.list_names(layout.empty_folder(name))):
            key = layout.empty_block_key(name, block)
            try:
                json.loads(location.read_bytes(key))
            except FileNotFoundError:
                continue
            except ValueError as exc:
                found.problems[key] = [(f"{key}: does not parse ({exc})", [key])]
    return found


def _check_particle_block(
    location: Location, folder: str, block: int, expected: dict[str, _Expected]
) -> tuple[str, list[str], set[str]]:
    """``(key, problems, ids of intact entries)`` of one particle block file."""
    key = layout.block_key(folder, block)
    try:
        parquet = packing.open_block(location, folder, block)
        parquet.read()  # every page, its CRC checked
        entries = packing.block_entries(parquet)
    except FileNotFoundError:
        return key, [], set()
    except Exception as exc:
        return key, [f"cannot be read ({type(exc).__name__}: {exc})"], set()
    problems, ids = [], set()
    for sim_id, entry in entries.items():
        want = expected.get(sim_id)
        if want is None or layout.block_of(want.row) != block:
            problems.append(f"holds {sim_id!r}, which no registry entry puts in this block")
            continue
        why = _entry_differs(entry, want)
        if why:
            problems.append(f"{sim_id}: {why}")
            continue
        ids.add(sim_id)
    return key, problems, ids if not problems else set()


def _entry_differs(meta: dict, expected: _Expected) -> str | None:
    """Why a particle footer's entry is not ``expected``'s, or ``None``."""
    try:
        found = _Expected(
            meta["sim_id"],
            int(meta["row"]),
            particles.receptor(meta),
            meta["met"],
            meta["scene_id"],
        )
    except Exception as exc:
        return f"its footer holds no registry entry ({type(exc).__name__}: {exc})"
    for field_name in ("sim_id", "row", "receptor", "met", "scene_id"):
        if getattr(found, field_name) != getattr(expected, field_name):
            return (
                f"its footer's {field_name} ({getattr(found, field_name)}) is not the "
                f"registry's ({getattr(expected, field_name)})"
            )
    return None


# -- keys nobody holds ---------------------------------------------------------------------


def _stray(
    location: Location, rule: CompletionRule, sim_ids: set[str], rows: set[int]
) -> list[tuple[str, str]]:
    """Keys of simulations nobody registers: chunks, empty markers, transport-error particles.

    Listed after the registry was read; anything a registrant added since is kept
    (the registry is read again before anything is called stray).
    """
    chunks = [
        (name, row) for name in rule.footprints for row in chunk_rows_of(location, name)
        if row not in rows
    ]  # fmt: skip
    markers = [
        (name, sim_id)
        for name in rule.footprints
        for sim_id in layout.strip_suffix(
            location.list_names(layout.empty_folder(name)), layout.EMPTY_SUFFIX
        )
        if sim_id not in sim_ids
    ]
    errors = [
        sim_id
        for sim_id in layout.strip_suffix(
            location.list_names(layout.ERROR_PARTICLES), layout.PARQUET_SUFFIX
        )
        if sim_id not in sim_ids
    ]
    if not (chunks or markers or errors):
        return []
    try:
        newer = registry.read(location)
    except StoreError:
        newer = None  # unreadable commits remain: nothing newer can be told apart
    if newer is not None:
        rows = rows | set(newer.rows.tolist())
        sim_ids = sim_ids | set(newer.sim_ids)
    found = [
        (layout.chunk_key(name, row), "a chunk at a row no registered simulation holds")
        for name, row in chunks
        if row not in rows
    ]
    found += [
        (layout.empty_key(name, sim_id), "an empty marker of an unregistered simulation")
        for name, sim_id in markers
        if sim_id not in sim_ids
    ]
    found += [
        (layout.error_particles_key(sim_id), "error particles of an unregistered simulation")
        for sim_id in errors
        if sim_id not in sim_ids
    ]
    return found
