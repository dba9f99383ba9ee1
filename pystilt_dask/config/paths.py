"""Relative paths of a config, anchored at the folder of its file."""

from __future__ import annotations

from pathlib import Path

from ..footprint.transforms import AveragingKernel, Transform
from .footprints import FootprintConfig


def default_receptors(base: Path) -> str | None:
    """``receptors.csv`` in ``base`` when there is one, else ``None``."""
    # A project registered from another table has none, and runs what its store holds.
    default = base / "receptors.csv"
    return str(default) if default.is_file() else None


def anchor_footprint(footprint: FootprintConfig, base: Path) -> FootprintConfig:
    """``footprint`` with its transforms' tables anchored at ``base``."""
    transforms = tuple(_anchor_table(t, base) for t in footprint.transforms)
    return footprint.model_copy(update={"transforms": transforms})


def _anchor_table(transform: Transform, base: Path) -> Transform:
    if isinstance(transform, AveragingKernel) and transform.table is not None:
        return transform.model_copy(update={"table": anchor(transform.table, base)})
    return transform


def anchor(path: str, base: Path) -> str:
    """``path`` under ``base`` unless it is absolute or a URL."""
    if "://" in path or Path(path).is_absolute():
        return path
    return str(base / path)
