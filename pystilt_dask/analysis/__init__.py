"""Footprints times fluxes, at scale: enhancements, aggregation and the Jacobian.

Everything here is lazy, straight from the zarr store: numba kernels reduce a
block of footprints (:mod:`.kernels`), dask maps them over the stored chunks
and groups the results into blocks of simulations (:mod:`.blocks`), and xarray
labels the result.
Use it through the accessor, ``foot.stilt.convolve(flux)``,
``foot.stilt.aggregate(grid, bins)`` and ``foot.stilt.jacobian(grid, bins)``,
on ``foot = model.footprints[name].load()``.
"""

from .aggregate import aggregate, jacobian, to_sparse
from .convolve import convolve
from .table import enhancement_table, open_flux

__all__ = ["aggregate", "convolve", "enhancement_table", "jacobian", "open_flux", "to_sparse"]
