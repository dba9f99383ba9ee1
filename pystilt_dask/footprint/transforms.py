"""Transforms: reweight the particles' ``foot`` before a footprint is gridded.

A footprint's ``transforms`` in ``config.yaml`` are applied in list order to the
particle table, each to the previous one's result, with PYSTILT's spelling::

    footprints:
      xco2:
        ...
        transforms:
          - kind: pressure_weighting
          - kind: averaging_kernel
            levels: [0, 1000, 3000]
            values: [1.0, 0.95, 0.8]

Built-in kinds are ``averaging_kernel``, ``pressure_weighting`` (X-STILT column
weighting, :mod:`.column`) and ``first_order_lifetime``. Any other ``kind`` is the
import path (``package.module.Class``) of your own transform: a pydantic model,
validated from the entry's other keys, with

    apply(particles: pandas.DataFrame, receptor: Receptor) -> pandas.DataFrame

returning the table with ``foot`` reweighted (other columns may be added; the
input must not be modified). The particle table has R-STILT's column names
(``time`` in minutes since release, ``indx``, ``long``, ``lati``, ``zagl``,
``foot`` and whatever else ``hysplit.varsiwant`` holds).
"""

from __future__ import annotations

import difflib
import importlib
from functools import lru_cache
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    Tag,
    model_serializer,
    model_validator,
)
from typing_extensions import TypeAliasType

from ..errors import ConfigError
from ..nearfield import release_heights
from . import column

if TYPE_CHECKING:
    from ..receptors import Receptor

#: Columns of a per-receptor averaging-kernel table.
KERNEL_TABLE_COLUMNS = ("receptor", "level", "value")


class _Builtin(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_serializer(mode="wrap")
    def _with_kind(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # ``kind`` says which transform an entry is: kept even where defaults are
        # left out (``ModelConfig.to_yaml``).
        return {"kind": self.kind, **handler(self)}


class AveragingKernel(_Builtin):
    """Weight ``foot`` by a retrieval's averaging kernel at each particle's release.

    Give the kernel inline (``levels`` and ``values``) or as a ``table`` with one
    kernel per receptor. The kernel is interpolated linearly to each particle's
    release value of ``coordinate`` and held at its end values outside the levels.

    Parameters
    ----------
    levels, values : tuple of float, optional
        The kernel: its value at each level (m above ground, or hPa).
    table : str, optional
        CSV or Parquet file (path or fsspec URL, relative to the config file) with
        columns ``receptor`` (simulation id), ``level`` and ``value``. It is read
        once per process.
    coordinate : {"release_height", "pres"}
        What the levels are: release height (m above ground) or release pressure
        (hPa, needs ``pres`` in ``hysplit.varsiwant``).
    """

    kind: Literal["averaging_kernel"] = "averaging_kernel"
    levels: tuple[float, ...] | None = None
    values: tuple[float, ...] | None = None
    table: str | None = None
    coordinate: Literal["release_height", "pres"] = "release_height"

    @model_validator(mode="after")
    def _inline_or_table(self) -> AveragingKernel:
        inline = self.levels is not None or self.values is not None
        if self.table is not None:
            if inline:
                raise ValueError("averaging_kernel takes levels and values, or a table, not both")
            return self
        if not self.levels or not self.values:
            raise ValueError("averaging_kernel needs levels and values, or a table")
        if len(self.levels) != len(self.values):
            raise ValueError(
                f"averaging_kernel has {len(self.levels)} levels but {len(self.values)} values"
            )
        return self

    def kernel(self, receptor: Receptor) -> tuple[np.ndarray, np.ndarray]:
        """The ``(levels, values)`` that apply to ``receptor``."""
        if self.table is None:
            return np.asarray(self.levels, dtype=float), np.asarray(self.values, dtype=float)
        kernels = _kernel_table(self.table)
        if receptor.sim_id not in kernels:
            raise ConfigError(
                f"averaging_kernel table {self.table} has no kernel for receptor {receptor.sim_id}"
            )
        return kernels[receptor.sim_id]

    def apply(self, particles: pd.DataFrame, receptor: Receptor) -> pd.DataFrame:
        """Return the particles with ``foot`` times the kernel, and an ``ak_weight`` column."""
        levels, values = self.kernel(receptor)
        if self.coordinate == "pres":
            where = column.release_values(particles, "pres")
        else:
            where = release_heights(particles, receptor)
        weight = column.kernel_weights(where, levels, values)
        return _reweighted(particles, weight, ak_weight=weight)


class PressureWeighting(_Builtin):
    """X-STILT pressure weighting of a column: each particle's share of its air mass.

    ``foot`` is multiplied by the particle's weight times the number of particles
    (the footprint divides by it), so the weighted footprint does not change with
    ``numpar``. See :func:`.column.pressure_weights`. Needs ``pres`` and ``zagl`` in
    ``hysplit.varsiwant``, and a column or multipoint receptor. Adds ``xpres``
    (release pressure, hPa) and ``pwf`` columns.

    Parameters
    ----------
    surface_pressure : float, optional
        Pressure at the bottom of the column, hPa; by default fitted to the particles.
    """

    kind: Literal["pressure_weighting"] = "pressure_weighting"
    surface_pressure: float | None = Field(None, gt=0)

    def apply(self, particles: pd.DataFrame, receptor: Receptor) -> pd.DataFrame:
        """Return the particles with ``foot`` pressure-weighted."""
        release = release_heights(particles, receptor)
        xpres, pwf = column.pressure_weights(particles, release, self.surface_pressure)
        n_particles = particles["indx"].nunique()
        return _reweighted(particles, pwf * n_particles, xpres=xpres, pwf=pwf)


class FirstOrderLifetime(_Builtin):
    """Decay ``foot`` with the particle's age: ``foot · exp(-|time| / 60 / lifetime_hours)``.

    Parameters
    ----------
    lifetime_hours : float
        The species' e-folding lifetime, hours.
    """

    kind: Literal["first_order_lifetime"] = "first_order_lifetime"
    lifetime_hours: float = Field(gt=0)

    def apply(self, particles: pd.DataFrame, receptor: Receptor) -> pd.DataFrame:
        """Return the particles with ``foot`` decayed by age."""
        age_hours = np.abs(particles["time"].to_numpy(dtype=np.float64)) / 60.0
        return _reweighted(particles, np.exp(-age_hours / self.lifetime_hours))


BUILTIN_KINDS = ("averaging_kernel", "pressure_weighting", "first_order_lifetime")


class CustomTransform(BaseModel):
    """A transform of your own, named by import path in ``kind``.

    The entry's other keys validate the named class (a pydantic model with
    ``apply(particles, receptor)``, see the module docstring); the class is
    imported when the config is read, so a typo fails there.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: str
    _transform: Any = PrivateAttr()

    @model_validator(mode="after")
    def _load(self) -> CustomTransform:
        module_name, _, name = self.kind.rpartition(".")
        if not module_name:
            close = difflib.get_close_matches(self.kind, BUILTIN_KINDS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"unknown transform kind {self.kind!r}: built-in kinds are "
                f"{', '.join(BUILTIN_KINDS)}, others are an import path "
                f"(package.module.Class){hint}"
            )
        try:
            cls = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"transform {self.kind!r} cannot be imported: {exc}") from None
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or not callable(
            getattr(cls, "apply", None)
        ):
            raise ValueError(
                f"transform {self.kind!r} must be a pydantic model with apply(particles, receptor)"
            )
        self._transform = cls.model_validate(self.model_extra or {})
        return self

    def apply(self, particles: pd.DataFrame, receptor: Receptor) -> pd.DataFrame:
        """Return what the named transform's ``apply`` returns."""
        out = self._transform.apply(particles, receptor)
        if not isinstance(out, pd.DataFrame) or "foot" not in out.columns:
            raise TypeError(f"transform {self.kind!r} must return the particle table with 'foot'")
        return out


def _kind(value: Any) -> str:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return kind if kind in BUILTIN_KINDS else "custom"


#: One entry of a footprint's ``transforms``: a built-in, or your own by import path.
Transform = TypeAliasType(
    "Transform",
    Annotated[
        Annotated[AveragingKernel, Tag("averaging_kernel")]
        | Annotated[PressureWeighting, Tag("pressure_weighting")]
        | Annotated[FirstOrderLifetime, Tag("first_order_lifetime")]
        | Annotated[CustomTransform, Tag("custom")],
        Discriminator(_kind),
    ],
)


def apply_transforms(
    particles: pd.DataFrame, transforms: tuple[Transform, ...], receptor: Receptor
) -> pd.DataFrame:
    """Apply ``transforms`` in order; the particles themselves when there are none.

    Parameters
    ----------
    particles : pandas.DataFrame
        Particle table with R-STILT's column names.
    transforms : tuple of Transform
        A footprint's ``transforms``.
    receptor : Receptor
        The receptor the particles were released from.

    Returns
    -------
    pandas.DataFrame
        A new table (the input is not modified).
    """
    for transform in transforms:
        particles = transform.apply(particles, receptor)
    return particles


def _reweighted(particles: pd.DataFrame, weight: np.ndarray, **columns: np.ndarray) -> pd.DataFrame:
    # Copy-on-write makes the shallow copy cheap: only the new columns are allocated.
    out = particles.copy(deep=False)
    for name, values in columns.items():
        out[name] = values
    out["foot"] = particles["foot"].to_numpy(dtype=np.float64) * weight
    return out


@lru_cache(maxsize=8)
def _kernel_table(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    suffix = PurePosixPath(path.split("?")[0]).suffix.lower()
    table = pd.read_parquet(path) if suffix in (".parquet", ".pq") else pd.read_csv(path)
    missing = [c for c in KERNEL_TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise ConfigError(
            f"averaging_kernel table {path} lacks columns {missing}; "
            f"needs {list(KERNEL_TABLE_COLUMNS)}"
        )
    return {
        str(receptor): (
            group["level"].to_numpy(dtype=float),
            group["value"].to_numpy(dtype=float),
        )
        for receptor, group in table.groupby("receptor", sort=False)
    }
