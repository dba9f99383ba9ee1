"""Realizations and variants: the result prefixes of a project, and what each runs with.

A project's results are addressed by *result prefix* (docs/store.md, Format 2):
``""`` (the plain run), ``realizations/<k>/``, ``variants/<name>/`` and
``variants/<name>/realizations/<k>/``, each in front of ``particles/``,
``footprints/``, ``logs/``, ``failures/`` and its claims. A :class:`Member` is one
of them: the variant and realization it holds and the settings it runs with
(realization ``k`` with ``seed + k``). The registry stays at the root, so every
member has the same simulations at the same rows.

Realization 0 of the plain settings is the root: a project made an ensemble keeps
what it holds. A member whose transport settings equal an earlier member's (a
variant that changes only footprints) reads and writes that member's particles
(:meth:`Location.child <pystilt_dask.store.paths.Location.child>`), and its tasks
run after that member's (see :mod:`pystilt_dask.execution.run`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
import xarray as xr

from .config import ModelConfig
from .errors import ConfigError
from .fingerprint import transport_settings
from .store import footprints
from .store.completion import STATES, CompletionRule
from .store.paths import Location
from .store.registry import Registry
from .store.status import Status, status

#: The folders of the result prefixes.
VARIANTS = "variants"
REALIZATIONS = "realizations"


def prefix_of(variant: str | None, realization: int) -> str:
    """The result prefix of ``variant``'s realization ``realization`` (``""``: the root)."""
    prefix = f"{VARIANTS}/{variant}/" if variant is not None else ""
    return prefix + (f"{REALIZATIONS}/{realization}/" if realization else "")


@dataclass(frozen=True)
class Member:
    """One result prefix: a realization of the plain settings or of a variant.

    Attributes
    ----------
    variant : str or None
        The variant (``None``: the plain settings).
    realization : int
        The realization, run with ``seed + realization``.
    config : ModelConfig
        The settings it runs with: the variant's, that realization's seed, no variants.
    shares : str or None
        The prefix of the earlier member whose particles it uses, or ``None``.
    """

    variant: str | None
    realization: int
    config: ModelConfig
    shares: str | None = None

    @property
    def prefix(self) -> str:
        """Its result prefix."""
        return prefix_of(self.variant, self.realization)

    @property
    def rule(self) -> CompletionRule:
        """The keys that make its simulations complete (under its prefix)."""
        return CompletionRule.from_config(self.config)

    def location(self, root: Location) -> Location:
        """Where its results are, under the project ``root``."""
        return root.child(self.prefix, self.shares)

    def label(self) -> str:
        """How messages name it: ``plain``, ``realization 2``, ``variant wide, realization 1``."""
        parts = [f"variant {self.variant}"] if self.variant is not None else []
        if self.realization or not parts:
            parts.append(f"realization {self.realization}" if self.realization else "plain")
        return ", ".join(parts)


def members(config: ModelConfig) -> list[Member]:
    """Every member of a configuration: the plain realizations, then each variant's.

    The root (plain, realization 0) comes first, and a member that shares
    particles always comes after the member it shares them with.
    """
    out: list[Member] = []
    owners: dict[str, str] = {}
    for variant in (None, *config.variants):
        settings = config.variant(variant)
        for k in range(settings.hysplit.realizations):
            own = settings.model_copy(update={"hysplit": settings.hysplit.realization(k)})
            prefix = prefix_of(variant, k)
            transport = json.dumps(transport_settings(own.hysplit), sort_keys=True)
            owner = owners.setdefault(transport, prefix)
            out.append(Member(variant, k, own, None if owner == prefix else owner))
    return out


def find(config: ModelConfig, variant: str | None = None, realization: int = 0) -> Member:
    """The member holding ``variant``'s realization ``realization``.

    Raises
    ------
    ConfigError
        When the configuration has no such variant or realization.
    """
    settings = config.variant(variant)  # names an unknown variant
    n = settings.hysplit.realizations
    if not 0 <= realization < n:
        where = f"variant {variant!r}" if variant is not None else "the project"
        raise ConfigError(f"realization {realization} is not one of {where}'s 0..{n - 1}")
    return next(m for m in members(config) if m.variant == variant and m.realization == realization)


def sync(root: Location, config: ModelConfig, registry: Registry) -> None:
    """Make every member's footprint groups describe ``registry`` (see :func:`footprints.sync`)."""
    footprints.sync([(m.location(root), m.config) for m in members(config)], registry)


def counts(root: Location, config: ModelConfig, registry: Registry) -> pd.DataFrame:
    """Simulations per state of every member: one row per variant and realization.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``(variant, realization)`` (``variant`` empty for the plain
        settings), a column per :class:`~pystilt_dask.store.State`, and ``prefix``.
    """
    rows = []
    for member in members(config):
        found = status(member.location(root), registry, member.rule).counts()
        rows.append(
            {
                "variant": member.variant or "",
                "realization": member.realization,
                **{state.value: found[state.value] for state in STATES},
                "prefix": member.prefix,
            }
        )
    return pd.DataFrame(rows).set_index(["variant", "realization"])


def member_status(root: Location, member: Member, registry: Registry) -> Status:
    """Every simulation's state in one member."""
    return status(member.location(root), registry, member.rule)


def open_footprints(
    root: Location,
    config: ModelConfig,
    name: str,
    registry: Registry,
    variant: str | None = None,
    realization: int | None = None,
) -> xr.DataArray:
    """Footprint ``name`` of a variant, lazily; with a ``realization`` axis for an ensemble.

    Parameters
    ----------
    realization : int, optional
        One realization only (no ``realization`` axis); default: every one, with
        the axis when there are several.

    Raises
    ------
    KeyError
        When the variant has no footprint ``name``.
    """
    from .store.lazy import open_footprint  # dask.array: only for analysis

    settings = config.variant(variant)
    if name not in settings.footprints:
        known = ", ".join(settings.footprints) or "none configured"
        which = f"variant {variant!r}" if variant is not None else "the project"
        raise KeyError(f"{which} has no footprint named {name!r} ({known})")
    fp_config = settings.footprints[name]
    if realization is not None:
        member = find(config, variant, realization)
        return open_footprint(member.location(root), name, registry, fp_config)
    chosen = [m for m in members(config) if m.variant == variant]
    opened = [open_footprint(m.location(root), name, registry, fp_config) for m in chosen]
    if len(opened) == 1:
        return opened[0]
    index = pd.Index([m.realization for m in chosen], name="realization")
    return xr.concat(opened, dim=index, coords="minimal", compat="override", join="override")
