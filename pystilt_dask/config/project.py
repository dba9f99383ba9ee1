"""The whole configuration of a STILT project, :class:`ModelConfig` (``config.yaml``).

Its sections live beside it, one module each; reading a file (YAML with its
limits, paths anchored at the file's folder) is :meth:`ModelConfig.from_yaml`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from ..errors import ConfigError
from ..fingerprint import transport_changes
from .describe import describe
from .execution import ExecutionConfig
from .footprints import FootprintConfig, check_footprints
from .hysplit import HysplitConfig
from .loading import load_yaml
from .met import MetConfig, MetEntry, NestConfig
from .paths import anchor, anchor_footprint, default_receptors
from .sections import Section
from .variants import VariantConfig, check_variant, variant_footprints, variant_hysplit


class ModelConfig(Section):
    """The whole configuration of a STILT project (``config.yaml``).

    Parameters
    ----------
    receptors : str or None
        Path or URL of the receptor table (CSV or Parquet), relative to the config
        file; ``None`` means ``receptors.csv`` beside it.
    mets : dict of MetConfig or NestConfig
        Named meteorology archives, and nests of them; simulations use the first
        unless told otherwise.
    hysplit : HysplitConfig
        Transport settings.
    footprints : dict of FootprintConfig
        Named footprint grids (may be empty: particles only).
    execution : ExecutionConfig
        Default execution settings.
    profiles : dict of ExecutionConfig
        Named alternative execution settings, chosen with ``--profile``.
    variants : dict of VariantConfig
        Named transport variants run beside the plain settings (see :class:`VariantConfig`).
    output : str
        Project store (path or fsspec URL), relative to the config file.
    storage_options : dict
        fsspec options for a remote ``output`` (e.g. ``endpoint_url``, ``profile``);
        credentials are better left to fsspec's usual environment and config files.

    Examples
    --------
    >>> cfg = ModelConfig.from_yaml("config.yaml")  # doctest: +SKIP
    >>> cfg.hysplit.numpar  # doctest: +SKIP
    1000
    """

    receptors: str | None = None
    mets: dict[str, MetEntry]
    hysplit: HysplitConfig = Field(default_factory=HysplitConfig)
    footprints: dict[str, FootprintConfig] = Field(default_factory=dict)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    profiles: dict[str, ExecutionConfig] = Field(default_factory=dict)
    variants: dict[str, VariantConfig] = Field(default_factory=dict)
    output: str = "output"
    storage_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("mets")
    @classmethod
    def _some_met(
        cls, value: dict[str, MetConfig | NestConfig]
    ) -> dict[str, MetConfig | NestConfig]:
        if not value:
            raise ValueError("mets needs at least one meteorology archive")
        for name, entry in value.items():
            if not isinstance(entry, NestConfig):
                continue
            for member in entry.nest:
                if not isinstance(value.get(member), MetConfig):
                    what = "a nest" if member in value else "not in mets"
                    raise ValueError(
                        f"nest {name!r} lists {member!r}, which is {what}: a nest lists archives"
                    )
            if len(set(entry.nest)) < len(entry.nest):
                raise ValueError(f"nest {name!r} lists an archive twice")
        return value

    @field_validator("variants")
    @classmethod
    def _valid_variants(
        cls, value: dict[str, VariantConfig], info: ValidationInfo
    ) -> dict[str, VariantConfig]:
        for name, variant in value.items():
            check_variant(name, variant, info.data)
        return value

    def variant(self, name: str | None) -> ModelConfig:
        """The settings variant ``name`` runs with (``None``: the plain ones), without variants.

        Raises
        ------
        ConfigError
            When there is no such variant.
        """
        if name is None:
            return self.model_copy(update={"variants": {}})
        if name not in self.variants:
            known = ", ".join(self.variants) or "none configured"
            raise ConfigError(f"no variant {name!r} ({known})")
        variant = self.variants[name]
        try:
            hysplit = variant_hysplit(self.hysplit, variant, name)
        except ValueError as exc:
            raise ConfigError(f"variants.{name}: {exc}") from None
        footprints = variant_footprints({"footprints": self.footprints}, variant)
        return self.model_copy(
            update={"hysplit": hysplit, "footprints": footprints, "variants": {}}
        )

    def archives(self, met: str) -> list[tuple[str, MetConfig]]:
        """The archives met ``met`` reads, as ``(name, MetConfig)``, finest grid first.

        Raises
        ------
        ConfigError
            When ``mets`` has no entry ``met``.
        """
        entry = self.mets.get(met)
        if entry is None:
            raise ConfigError(f"unknown met {met!r} (config has {', '.join(self.mets)})")
        if isinstance(entry, NestConfig):
            return [(name, self.mets[name]) for name in entry.nest]
        return [(met, entry)]

    @model_validator(mode="after")
    def _footprints_fit(self) -> ModelConfig:
        check_footprints(self.footprints, self.hysplit, "footprint")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> ModelConfig:
        """Read and validate a config file, resolving relative paths against its folder.

        Raises
        ------
        ConfigError
            With one line per invalid field, naming it.
        """
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        data = load_yaml(text, str(path)) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of settings")
        return cls.from_dict(data, base=path.parent)

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: str | Path | None = None) -> ModelConfig:
        """Validate a mapping; relative paths resolve against ``base`` when given."""
        try:
            config = cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(describe(exc)) from None
        return config.resolve_paths(base) if base is not None else config

    def resolve_paths(self, base: str | Path) -> ModelConfig:
        """Return a copy whose relative paths are anchored at ``base``."""
        base = Path(base).resolve()
        mets = {
            name: met.model_copy(update={"directory": anchor(met.directory, base)})
            if isinstance(met, MetConfig)
            else met
            for name, met in self.mets.items()
        }
        footprints = {name: anchor_footprint(fp, base) for name, fp in self.footprints.items()}
        variants = {
            name: variant.model_copy(
                update={
                    "footprints": {
                        fp_name: anchor_footprint(fp, base)
                        for fp_name, fp in variant.footprints.items()
                    }
                }
            )
            if variant.footprints
            else variant
            for name, variant in self.variants.items()
        }
        return self.model_copy(
            update={
                "footprints": footprints,
                "variants": variants,
                "receptors": anchor(self.receptors, base)
                if self.receptors
                else default_receptors(base),
                "output": anchor(self.output, base),
                "mets": mets,
            }
        )

    def to_yaml(self, path: str | Path | None = None) -> str:
        """Serialise to YAML (and write it to ``path`` when given); round-trips exactly."""
        text = yaml.safe_dump(self.model_dump(mode="json", exclude_defaults=True), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    def result_changes(self, other: ModelConfig) -> list[str]:
        """The result-changing settings in which ``other`` differs, as ``"field: a → b"``.

        Run-control settings (:data:`RUN_CONTROL`, execution, profiles, storage
        options, paths) may differ; a footprint's settings (grid and transforms)
        are checked per footprint name by the store (see :mod:`pystilt_dask.fingerprint`).
        """
        changes = transport_changes(self.hysplit, other.hysplit)
        for name in set(self.variants) & set(other.variants):
            before, after = self.variant(name).hysplit, other.variant(name).hysplit
            changes += [f"variants.{name}.{c}" for c in transport_changes(before, after)]
        return changes

    def execution_for(self, profile: str | None) -> ExecutionConfig:
        """Return the execution settings of a named profile (``None``: the default)."""
        if profile is None:
            return self.execution
        if profile not in self.profiles:
            known = ", ".join(self.profiles) or "none defined"
            raise ConfigError(f"unknown execution profile {profile!r} (profiles: {known})")
        return self.profiles[profile]
