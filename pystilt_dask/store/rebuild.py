"""Repair a project store: clean temporaries, reconcile the manifest, re-derive arrays.

Run it when no writer is active (only files older than ``older_than`` seconds are
treated as stale). It never deletes a result: it removes temporaries (``*.partial``)
of killed writers, empty-markers whose chunk was never written, and failure
records of simulations that have since completed; it re-registers simulations
whose particles exist but whose manifest rows are missing (from the receptor
stored in the particle file), and grows every footprint array to the manifest.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import groupby

import zarr

from ..config import ModelConfig
from ..errors import StoreError
from ..receptors import ColumnReceptor, MultiPointReceptor, PointReceptor, Receptor
from . import footprints, layout, manifest, particles
from .paths import PARTIAL_SUFFIX, Location
from .status import status

_KINDS = {"point": PointReceptor, "column": ColumnReceptor, "multipoint": MultiPointReceptor}


@dataclass
class RebuildReport:
    """What :func:`rebuild` changed."""

    temporaries: list[str] = field(default_factory=list)
    registered: list[str] = field(default_factory=list)
    stale_markers: list[str] = field(default_factory=list)
    cleared_failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line per kind of change."""
        return "\n".join(
            [
                f"removed {len(self.temporaries)} stale temporary files",
                f"re-registered {len(self.registered)} simulations found in the store",
                f"removed {len(self.stale_markers)} empty-markers without a footprint",
                f"removed {len(self.cleared_failures)} failure records of completed simulations",
            ]
        )


def rebuild(location: Location, config: ModelConfig, older_than: float = 3600.0) -> RebuildReport:
    """Reconcile a project store with itself; see the module docstring.

    Parameters
    ----------
    location : Location
        The project.
    config : ModelConfig
        The project configuration.
    older_than : float
        Seconds since their last change after which temporaries and markers are stale.
    """
    report = RebuildReport()
    cutoff = time.time() - older_than
    if location.is_local:
        report.temporaries = _remove_temporaries(location, cutoff)
    report.registered = _reregister(location, config)
    names = list(config.footprints)
    footprints.sync(location, config)
    states = status(location, names, bool(config.hysplit.winderrtf)).table
    rows = {sim_id: row for row, sim_id in enumerate(states.index)}
    for name in names:
        folder = layout.empty_folder(name)
        for sim_id in layout.strip_suffix(location.list_names(folder), layout.EMPTY_SUFFIX):
            key = layout.empty_key(name, sim_id)
            row = rows.get(sim_id)
            has_chunk = row is not None and location.exists(layout.chunk_key(name, row))
            if not has_chunk and (location.modified(key) or 0) < cutoff:
                location.delete(key)
                report.stale_markers.append(key)
    failed = layout.strip_suffix(location.list_names(layout.FAILURES), layout.FAILURE_SUFFIX)
    for sim_id in failed:
        if sim_id in rows and states.at[sim_id, "state"] in ("complete", "complete-empty"):
            location.delete(layout.failure_key(sim_id))
            report.cleared_failures.append(sim_id)
    return report


def _remove_temporaries(location: Location, cutoff: float) -> list[str]:
    removed = []
    for folder, _, files in os.walk(location.root):
        for name in files:
            path = os.path.join(folder, name)
            if name.endswith(PARTIAL_SUFFIX) and os.path.getmtime(path) < cutoff:
                os.unlink(path)
                removed.append(os.path.relpath(path, location.root))
    return sorted(removed)


def _reregister(location: Location, config: ModelConfig) -> list[str]:
    """Append manifest rows for simulations the store knows but the manifest lacks.

    Simulations already present in footprint arrays beyond the manifest's end come
    first, in their array order, so their rows keep pointing at their chunks.
    """
    registered = manifest.read(location, columns=["sim_id"])["sim_id"].tolist()
    in_arrays = _array_ids(location, config.footprints)
    common = min(len(registered), len(in_arrays))
    if registered[:common] != in_arrays[:common]:
        raise StoreError("footprint arrays and manifest disagree on row order; cannot reconcile")
    known = set(registered)
    extra = in_arrays[len(registered) :]
    seen = known | set(extra)
    stored = layout.strip_suffix(location.list_names(layout.PARTICLES), layout.PARQUET_SUFFIX)
    extra += sorted(s for s in stored if s not in seen)
    found: list[tuple[Receptor, str]] = []
    for sim_id in extra:
        try:
            meta = particles.metadata(location, layout.particles_key(sim_id))
        except FileNotFoundError:
            raise StoreError(
                f"simulation {sim_id!r} is in the footprint arrays but neither in the manifest "
                "nor in a particle file; its receptor cannot be recovered"
            ) from None
        fields = json.loads(meta["receptor"])
        found.append((_KINDS[fields["kind"]].model_validate(fields), meta["met"]))
    for met, group in groupby(found, key=lambda item: item[1]):
        manifest.append(location, [r for r, _ in group], met, list(config.footprints))
    return extra


def _array_ids(location: Location, names: Sequence[str]) -> list[str]:
    """The longest ``simulation`` coordinate among the footprint arrays."""
    longest: list[str] = []
    for name in names:
        try:
            group = zarr.open_group(location.zarr_store(layout.footprint_group(name)), mode="r")
        except (FileNotFoundError, zarr.errors.GroupNotFoundError):
            continue
        ids = group["simulation"][:].tolist()
        if len(ids) > len(longest):
            longest = ids
    return longest
