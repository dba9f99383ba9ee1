"""Registering a model's receptors: the checks, the commit, the stored configuration, the sync.

What :meth:`Model.register <pystilt_dask.model.Model.register>` and
:meth:`Model.sync <pystilt_dask.model.Model.sync>` do; the commit itself is
:func:`pystilt_dask.store.registry.register`.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from . import ensemble
from .config import ModelConfig, load_yaml
from .errors import ConfigError
from .receptors import Receptor, ReceptorFrame, read_receptor_frame, receptor_frame
from .receptors.table import table_bytes
from .store import layout, registry
from .store.paths import Location
from .store.registry import Registry

#: Receptors as a model is given them: objects, a table, or the path of a table.
ReceptorsLike = Sequence[Receptor] | pd.DataFrame | str | Path


def register(
    location: Location,
    config: ModelConfig,
    given: ReceptorsLike | None,
    scene_id: str | None,
    met: str | None,
) -> tuple[list[str], Registry]:
    """Register the receptors not registered yet: the new ids and the registry synced to.

    ``given``: the receptors a model was given (``None``: ``config.receptors``).
    """
    met = met or next(iter(config.mets))
    if met not in config.mets:
        raise ConfigError(f"unknown met {met!r} (config has {', '.join(config.mets)})")
    path = table_path(given, config)
    digest = known = None
    if path:
        # The table's bytes are read once, digested and parsed: the commit records
        # the digest of exactly the bytes it registered, even if the file changes.
        data = table_bytes(path)
        with ThreadPoolExecutor(1) as pool:
            # hashlib releases the GIL: the digest is taken beside the registry read
            # and, when no commit recorded any table, beside the parse.
            digesting = pool.submit(registry.table_digest, data, path)
            known = registry.read(location)
            if known.tables and known.holds_table(digesting.result()):
                store_config(location, config)  # a commit registered this very table
                return [], sync(location, config, known)
            receptors = read_receptor_frame(path, data=data)
            digest = digesting.result()
    else:
        receptors = frame(given, config)
    check_heights(receptors, config.hysplit.z_top)
    store_config(location, config)
    new, committed = registry.register(
        location, receptors, met, list(config.footprints), scene_id, digest, known
    )
    return new, sync(location, config, committed)


def unregistered(config: ModelConfig, given: ReceptorsLike | None, known: Registry) -> int:
    """How many of the receptors (as :func:`register` takes them) ``known`` does not hold."""
    path = table_path(given, config)
    if path and known.holds_table(table_digest(path)):
        return 0  # a commit registered this very table: every receptor of it is registered
    return len(known.pending(frame(given, config)))


def frame(given: ReceptorsLike | None, config: ModelConfig) -> ReceptorFrame:
    """The receptors as columns (``given``, else the table ``config.receptors`` names)."""
    if given is None:
        if not config.receptors:
            raise ConfigError("no receptors given and config.receptors is not set")
        return read_receptor_frame(config.receptors)
    if isinstance(given, str | Path):
        return read_receptor_frame(given)
    if isinstance(given, pd.DataFrame):
        return receptor_frame(given)
    return ReceptorFrame.from_receptors(given)


def table_path(given: ReceptorsLike | None, config: ModelConfig) -> str | None:
    """The receptor table the receptors come from, if they come from one."""
    if given is None:
        return str(config.receptors) if config.receptors else None
    return str(given) if isinstance(given, str | Path) else None


def sync(location: Location, config: ModelConfig, known: Registry | None = None) -> Registry:
    """Make every footprint group describe the registry; see :meth:`.Model.sync`.

    Repeated until no registrant committed meanwhile. Returns the registry synced to.
    """
    current = registry.read(location, since=known)
    while True:
        ensemble.sync(location, config, current)
        newest = registry.versions(location)
        if not newest or newest[-1] == current.version:
            return current
        current = registry.read(location, since=current)


def store_config(location: Location, config: ModelConfig) -> None:
    """Store ``config.yaml``, refusing settings that would change existing results."""
    text = config.to_yaml().encode()
    try:
        stored = location.read_bytes(layout.CONFIG)
    except FileNotFoundError:
        stored = None
    if stored == text:
        return  # nothing new to write: a read-only store stays usable
    if stored is not None:
        changes = _parse_config(stored, location).result_changes(config)
        if changes:
            raise ConfigError(
                f"{location.root} was made with other settings that change results "
                f"({'; '.join(changes)}); use a new project for them"
            )
    location.write_bytes(layout.CONFIG, text)


def stored_config(location: Location) -> ModelConfig | None:
    """The configuration stored in the project, or ``None`` where there is none."""
    try:
        text = location.read_bytes(layout.CONFIG)
    except FileNotFoundError:
        return None
    return _parse_config(text, location)


def table_digest(path: str) -> str:
    """The registry's digest of the receptor table at ``path`` (local or fsspec URL)."""
    return registry.table_digest(table_bytes(path), path)


def check_heights(receptors: ReceptorFrame, z_top: float) -> None:
    """Refuse receptors released at or above HYSPLIT's model top (it would stop at once)."""
    high = np.flatnonzero(receptors.max_heights() >= z_top)
    if len(high):
        shown = receptors.table["sim_id"].take(high[:3]).to_pylist()
        more = f" and {len(high) - 3} more" if len(high) > 3 else ""
        raise ConfigError(
            f"receptors released at or above hysplit.z_top ({z_top:g} m above ground): "
            f"{', '.join(repr(i) for i in shown)}{more} ({len(high)} in all); "
            "raise z_top or lower them"
        )


def _parse_config(text: bytes, location: Location) -> ModelConfig:
    return ModelConfig.from_dict(load_yaml(text.decode(), location.url(layout.CONFIG)) or {})
