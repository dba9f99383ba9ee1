"""Find damaged results by reading them back, and repair what can be repaired.

:func:`verify` reads every registry commit and every completion key of every
registered simulation: particle files must parse, footprint chunks must decode,
and each must match the digest recorded when it was published (a chunk moved
under another simulation's row fails that too). Particle files of simulations
the registry does not hold name registry entries that were lost.

With ``repair``, damaged completion keys are removed (so the next ``run``
recomputes exactly those, reusing whatever is intact), unreadable registry
commits are removed, and lost entries are committed again from the registry
entry each particle file carries, at their original row when it is free (their
registration time becomes the time of the repair).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import dask
import pyarrow.parquet as pq

from ..config import ModelConfig
from ..errors import StoreError
from ..receptors import ColumnReceptor, MultiPointReceptor, PointReceptor
from . import footprints, layout, particles, registry
from .completion import ERROR_PARTICLES, PARTICLES, CompletionRule
from .paths import Location
from .publish import digest, read_digests
from .registry import Registry

_KINDS = {"point": PointReceptor, "column": ColumnReceptor, "multipoint": MultiPointReceptor}
#: Simulations checked per task.
BATCH = 64


@dataclass
class VerifyReport:
    """What :func:`verify` found (and, with ``repair``, did).

    Attributes
    ----------
    damaged : dict
        Problems per simulation id: damaged or unverifiable completion keys, lost
        registry entries.
    commits : list of str
        Problems with registry commits.
    checked : int
        Registered simulations checked.
    repaired : bool
        Whether the problems were repaired.
    """

    damaged: dict[str, list[str]] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)
    checked: int = 0
    repaired: bool = False

    @property
    def ok(self) -> bool:
        """Whether nothing is damaged."""
        return not self.damaged and not self.commits

    def summary(self) -> str:
        """One line per problem, then a count."""
        lines = [*self.commits]
        for sim_id, problems in self.damaged.items():
            lines += [f"{sim_id}: {problem}" for problem in problems]
        action = "repaired" if self.repaired else "damaged"
        lines.append(
            f"checked {self.checked} simulations: {len(self.damaged)} {action}"
            + (f", {len(self.commits)} registry commits {action}" if self.commits else "")
        )
        return "\n".join(lines)


def verify(location: Location, config: ModelConfig, repair: bool = False) -> VerifyReport:
    """Check every result in the project store; see the module docstring.

    The checks run as dask tasks on the current scheduler (a distributed client
    when one is active), ``BATCH`` simulations each.
    """
    report = VerifyReport(repaired=repair)
    current = registry.read(location, only=_readable_commits(location, report, repair))
    rule = CompletionRule.from_config(config)
    stored = layout.strip_suffix(location.list_names(layout.PARTICLES), layout.PARQUET_SUFFIX)
    lost = sorted(set(stored) - set(current.sim_ids))
    for sim_id in lost:
        report.damaged[sim_id] = ["its registry entry is lost (its particles are stored)"]
    entries = list(zip(current.sim_ids, current.rows.tolist(), strict=True))
    batches = [entries[i : i + BATCH] for i in range(0, len(entries), BATCH)]
    checks = [dask.delayed(_check)(location, rule, current.next_row, b) for b in batches]
    for found in dask.compute(*checks):
        for sim_id, problems in found.items():
            report.damaged.setdefault(sim_id, []).extend(p for p, _ in problems)
            if repair:
                for _, key in sorted(problems, key=lambda item: "/foot/" not in item[1]):
                    location.delete(key)  # completion chunks first, like invalidate
    report.checked = len(current)
    if repair and lost:
        _restore(location, config, current, lost)
    return report


def _readable_commits(location: Location, report: VerifyReport, repair: bool) -> list[int]:
    good = []
    for version in registry.versions(location):
        try:
            registry.read_commit(location, version)
            good.append(version)
        except StoreError as exc:
            report.commits.append(str(exc).split("; run")[0])
            if repair:
                location.delete(layout.registry_key(version))
    return good


def _check(
    location: Location, rule: CompletionRule, n_rows: int, entries: list[tuple[str, int]]
) -> dict[str, list[tuple[str, str]]]:
    """Problems of each simulation in ``entries``, with the key to remove for each."""
    found: dict[str, list[tuple[str, str]]] = {}
    arrays = {
        name: footprints.foot_array(location, name, n_rows, read_only=True)
        for name in rule.footprints
        if location.exists(f"{layout.foot_array(name)}/zarr.json")
    }
    for sim_id, row in entries:
        digests = None
        for component, key in rule.keys(sim_id, row).items():
            if not location.exists(key):
                continue
            if digests is None:
                digests = read_digests(location, sim_id)
            problem = _check_key(location, arrays, component, key, row, digests.get(component))
            if problem:
                found.setdefault(sim_id, []).append((f"{key}: {problem}", key))
    return found


def _check_key(location, arrays, component, key, row, recorded) -> str | None:
    try:
        if component in (PARTICLES, ERROR_PARTICLES):
            data = location.read_bytes(key)
            pq.read_table(io.BytesIO(data))
            content = data
        else:
            name = component.split(":", 1)[1]
            content = arrays[name][row : row + 1][0]
    except Exception as exc:
        return f"cannot be read ({type(exc).__name__}: {exc})"
    if recorded is None:
        return "no digest was recorded for it (not published by this store's protocol)"
    if digest(content) != recorded:
        return "its content does not match the digest recorded when it was published"
    return None


def _restore(location: Location, config: ModelConfig, current: Registry, lost: list[str]) -> None:
    """Commit the lost entries again, from their particle files, at their rows when free.

    An entry whose row another simulation took moves past every row in use,
    including rows that only a chunk occupies, so it never lands on someone's chunk.
    """
    metas = {sim_id: particles.metadata(location, layout.particles_key(sim_id)) for sim_id in lost}
    taken = set(current.rows.tolist())
    keep = {sim_id for sim_id, meta in metas.items() if int(meta["row"]) not in taken}
    chunk_rows = [
        int(match.group(1))
        for name in config.footprints
        for key in location.list_names(layout.foot_array(name))
        if (match := layout.CHUNK_RE.match(key))
    ]
    next_row = 1 + max(
        [current.next_row - 1, *chunk_rows, *(int(m["row"]) for m in metas.values())]
    )
    restored = []
    for sim_id, meta in metas.items():
        fields = json.loads(meta["receptor"])
        receptor = _KINDS[fields["kind"]].model_validate(fields)
        row = int(meta["row"])
        if sim_id not in keep:
            row, next_row = next_row, next_row + 1
        restored.append(
            registry.record(
                receptor,
                row,
                meta["met"],
                list(config.footprints),
                meta["scene_id"] or None,
                datetime.now(UTC),
                sim_id,  # the id it was registered under (an older scheme's, perhaps)
            )
        )
    while not registry.commit(location, restored):
        pass  # a registrant took the version: commit as the next one
