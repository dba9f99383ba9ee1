"""Project configuration: the science settings of a STILT project, validated by pydantic.

A project's ``config.yaml`` maps one to one onto :class:`ModelConfig`. Unknown keys
are rejected with a did-you-mean hint; relative paths resolve against the
directory of the config file. Deployment settings (scratch, caches) are not here:
they live in ``dask.config`` under ``stilt`` (see :mod:`pystilt_dask.defaults`).

One module a concern: the sections (``met``, ``hysplit``, ``footprints``,
``variants``, ``execution``) on their base (``sections``), the whole
(``project``), reading a file (``loading``, ``paths``) and its errors
(``describe``). Every name is imported from here.
"""

from .execution import AdaptConfig, CropConfig, ExecutionConfig
from .footprints import MAX_CELLS, MAX_FOOTPRINT_BYTES, FootprintConfig
from .hysplit import (
    DEFAULT_VARSIWANT,
    HNF_VARIABLES,
    KNOWN_VARSIWANT,
    MAX_HOURS,
    MAX_PARTICLES,
    MAX_REALIZATIONS,
    WIND_ERROR_FIELDS,
    ZI_ERROR_FIELDS,
    HysplitConfig,
)
from .loading import MAX_YAML_VALUES, load_yaml
from .met import MetConfig, MetEntry, NestConfig
from .project import ModelConfig
from .variants import VariantConfig, variant_footprints

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
