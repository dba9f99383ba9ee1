"""pystilt_dask: STILT (HYSPLIT-STILT particles, R-STILT footprints) on any Dask cluster."""

from . import defaults  # noqa: F401  (registers the `stilt` dask.config namespace first)
from .config import ExecutionConfig, FootprintConfig, HysplitConfig, MetConfig, ModelConfig
from .receptors import ColumnReceptor, MultiPointReceptor, PointReceptor, read_receptors

__all__ = [
    "ColumnReceptor",
    "ExecutionConfig",
    "FootprintConfig",
    "HysplitConfig",
    "MetConfig",
    "ModelConfig",
    "MultiPointReceptor",
    "PointReceptor",
    "read_receptors",
]
