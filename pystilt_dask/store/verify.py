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
  of simulations nobody registered, are stray.

With ``repair``, in one pass: commits are restored from their copies or
checkpoints; damaged and stray keys are removed, chunks first, so the next
``run`` recomputes exactly those (reusing intact particles); then entries only a
checkpoint, a copy or a particle file holds are committed again. Entries nothing
holds are **lost**: named (or counted), never dropped silently, and
:attr:`VerifyReport.lost_anything` is true. Missing copies of readable commits
are written in every case.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dask
import numpy as np

from ..config import ModelConfig
from ..errors import StoreError
from ..receptors import Receptor
from . import chunks, digests, footprints, layout, particles, registry
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


def verify(location: Location, config: ModelConfig, repair: bool = False) -> VerifyReport:
    """Check every key in the project store; see the module docstring.

    The checks of simulations run as dask tasks on the current scheduler (a
    distributed client when one is active), ``BATCH`` simulations each.
    """
    report = VerifyReport(repaired=repair)
    rule = CompletionRule.from_config(config)
    found = recover(location, config, repair)
    report.registry, report.lost, report.unnamed = found.problems, found.lost, found.unnamed

    entries = found.current.entries.to_pylist() + [record for record, _ in found.restore]
    n_rows = 1 + max([int(e["row"]) for e in entries], default=-1)
    batches = [entries[i : i + BATCH] for i in range(0, len(entries), BATCH)]
    checks = [dask.delayed(_check_batch)(location, rule, n_rows, b) for b in batches]
    removals: list[str] = []
    for problems in dask.compute(*checks):
        for sim_id, items in problems.items():
            report.damaged.setdefault(sim_id, []).extend(text for text, _ in items)
            removals += [key for _, keys in items for key in keys]
    report.checked = len(entries)
    for record, source in found.restore[: found.listed]:
        held = "restored from" if repair else "held by"
        report.damaged.setdefault(record["sim_id"], []).insert(
            0, f"its registry entry is lost ({held} {source})"
        )
    held = ({e["sim_id"] for e in entries}, {int(e["row"]) for e in entries})
    stray = _stray(location, rule, *held)
    report.stray = [f"{key}: {why}" for key, why in stray]

    if repair:
        removals += [key for key, _ in stray]
        for key in sorted(set(removals), key=lambda k: "/foot/" not in k):
            location.delete(key)  # completion chunks first, like invalidate
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
    location: Location, rule: CompletionRule, n_rows: int, entries: list[dict]
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
        problems = _check_simulation(location, rule, readers, legacy, expected)
        if problems:
            found[expected.sim_id] = problems
    return found


def _check_simulation(
    location: Location,
    rule: CompletionRule,
    readers: dict[str, chunks.ChunkReader],
    legacy: bool,
    expected: _Expected,
) -> list[tuple[str, list[str]]]:
    sim_id, row = expected.sim_id, expected.row
    problems: list[tuple[str, list[str]]] = []
    recorded = digests.read(location, sim_id) if legacy else {}
    vouched = True
    parts = [(PARTICLES, layout.particles_key(sim_id))]
    if rule.error_run:
        parts.append((ERROR_PARTICLES, layout.error_particles_key(sim_id)))
    for component, key in parts:
        if not location.exists(key):
            vouched = vouched and component != PARTICLES
            continue
        why = _check_particles(location, key, expected, recorded.get(component) if legacy else "")
        if why:
            problems.append((f"{key}: {why}", [key]))
            vouched = vouched and component != PARTICLES
    for name, read in readers.items():
        key = layout.chunk_key(name, row)
        marker = layout.empty_key(name, sim_id)
        if not location.exists(key):
            continue
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
        if location.exists(marker) and np.any(values):
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
    if recorded is None:
        return "no digest was recorded for it (not published by this store's protocol)"
    if recorded and digests.digest(data) != recorded:
        return "its content does not match the digest recorded when it was published"
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
