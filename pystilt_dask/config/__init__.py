"""Project configuration: the science settings of a STILT project, validated by pydantic.

A project's ``config.yaml`` maps one to one onto :class:`ModelConfig`. Unknown keys
are rejected with a did-you-mean hint; relative paths resolve against the
directory of the config file. Deployment settings (scratch, caches) are not here:
they live in ``dask.config`` under ``stilt`` (see :mod:`pystilt_dask.defaults`).
"""

from .project import (
    DEFAULT_VARSIWANT,
    HNF_VARIABLES,
    KNOWN_VARSIWANT,
    MAX_CELLS,
    MAX_FOOTPRINT_BYTES,
    MAX_HOURS,
    MAX_PARTICLES,
    MAX_REALIZATIONS,
    MAX_YAML_VALUES,
    WIND_ERROR_FIELDS,
    ZI_ERROR_FIELDS,
    AdaptConfig,
    CropConfig,
    ExecutionConfig,
    FootprintConfig,
    HysplitConfig,
    MetConfig,
    MetEntry,
    ModelConfig,
    NestConfig,
    VariantConfig,
    load_yaml,
    variant_footprints,
)

__all__ = [
    "DEFAULT_VARSIWANT",
    "HNF_VARIABLES",
    "KNOWN_VARSIWANT",
    "MAX_CELLS",
    "MAX_FOOTPRINT_BYTES",
    "MAX_HOURS",
    "MAX_PARTICLES",
    "MAX_REALIZATIONS",
    "MAX_YAML_VALUES",
    "WIND_ERROR_FIELDS",
    "ZI_ERROR_FIELDS",
    "AdaptConfig",
    "CropConfig",
    "ExecutionConfig",
    "FootprintConfig",
    "HysplitConfig",
    "MetConfig",
    "MetEntry",
    "ModelConfig",
    "NestConfig",
    "VariantConfig",
    "load_yaml",
    "variant_footprints",
]
