"""pystilt_dask: STILT (HYSPLIT-STILT particles, R-STILT footprints) on any Dask cluster.

Importing the package registers the ``DataArray.stilt`` accessor and the ``stilt``
``dask.config`` namespace, nothing more: its public names are imported on first
use, so that ``stilt-dask`` and worker processes do not pay for numba, zarr and
``distributed`` before a command needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import (
    accessor,  # noqa: F401  (registers the `foot.stilt` accessor)
    defaults,  # noqa: F401  (registers the `stilt` dask.config namespace)
)

if TYPE_CHECKING:
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

#: Each public name and the module that defines it.
_EXPORTS = {
    "ColumnReceptor": ".receptors",
    "ExecutionConfig": ".config",
    "FootprintConfig": ".config",
    "HysplitConfig": ".config",
    "MetConfig": ".config",
    "Model": ".model",
    "ModelConfig": ".config",
    "MultiPointReceptor": ".receptors",
    "PointReceptor": ".receptors",
    "ReceptorsMerged": ".receptors",
    "calc_footprint": ".footprint",
    "is_empty": ".footprint",
    "read_receptors": ".receptors",
    "run_trajectory": ".trajectory",
    "to_rstilt_netcdf": ".footprint",
}

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


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
