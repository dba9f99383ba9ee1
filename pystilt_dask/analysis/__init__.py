"""Footprints times fluxes, at scale: enhancements, aggregation and the Jacobian.

Everything here is lazy, straight from the zarr store: numba kernels reduce a
block of footprints (:mod:`.kernels`), dask maps them over the stored chunks
and groups the results into blocks of simulations (:mod:`.blocks`), and xarray
labels the result. Targets besides rectilinear grids (polygons, H3 cells,
windows, zones) are in :mod:`.targets`; sparse Jacobians in :mod:`.sparse`;
particle-level enhancements (no gridding) in :mod:`.enhancement`.
Use it through the accessor, ``foot.stilt.convolve(flux)``,
``foot.stilt.aggregate(target, bins)`` and ``foot.stilt.jacobian(target, bins)``,
on ``foot = model.footprints[name].load()``.
"""

from .aggregate import aggregate, jacobian
from .convolve import convolve
from .enhancement import enhancement_from_particles, particle_enhancement
from .sparse import SparseJacobian, read_jacobian, sparse_jacobian
from .table import enhancement_table, open_flux
from .targets import h3_cells, windows

__all__ = [
    "SparseJacobian",
    "aggregate",
    "convolve",
    "enhancement_from_particles",
    "enhancement_table",
    "h3_cells",
    "jacobian",
    "open_flux",
    "particle_enhancement",
    "read_jacobian",
    "sparse_jacobian",
    "windows",
]
