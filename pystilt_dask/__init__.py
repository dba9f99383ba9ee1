"""pystilt_dask: STILT (HYSPLIT-STILT particles, R-STILT footprints) on any Dask cluster."""

from . import (
    accessor,  # noqa: F401  (registers the `foot.stilt` accessor)
    defaults,  # noqa: F401  (registers the `stilt` dask.config namespace first)
)
from .config import ExecutionConfig, FootprintConfig, HysplitConfig, MetConfig, ModelConfig
from .footprint import calc_footprint, is_empty, to_rstilt_netcdf
from .model import Model
from .receptors import (
    ColumnReceptor,
    MultiPointReceptor,
    PointReceptor,
    ReceptorsMerged,
    read_receptors,
)
from .trajectory import run_trajectory

__all__ = [
    "ColumnReceptor",
    "ExecutionConfig",
    "FootprintConfig",
    "HysplitConfig",
    "MetConfig",
    "Model",
    "ModelConfig",
    "MultiPointReceptor",
    "PointReceptor",
    "ReceptorsMerged",
    "calc_footprint",
    "is_empty",
    "read_receptors",
    "run_trajectory",
    "to_rstilt_netcdf",
]
