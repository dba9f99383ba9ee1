"""Conservative overlap weights between rectilinear grids.

Footprints are extensive per cell (a cell's value is its whole influence), so
on a coarser grid they are summed; fluxes are intensive, so on the footprint
grid they are area-weighted means. Both come from one set of weights: the
fraction of each footprint cell that lies in each target cell. On rectilinear
grids the fraction factors by axis. On a longitude/latitude grid a cell's area
is proportional to its longitude span times the span of the sine of its
latitude, so latitude fractions are taken in ``sin(lat)``; projected ``y, x``
fractions are plain lengths. Cell edges are half-way between centres (the
outer edges half a cell beyond the outer centres), so any rectilinear target
works, including irregular ones; target cells that are unions of footprint
cells get weights of exactly 0 or 1. Parts of footprint cells outside the
target grid are dropped.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import xarray as xr


class Overlap(NamedTuple):
    """Per axis: source cell ``src[k]`` has the fraction ``weight[k]`` of itself in ``dst[k]``."""

    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray


def edges(centres: np.ndarray, dim: str) -> np.ndarray:
    """Cell edges of increasing cell ``centres``.

    Raises
    ------
    ValueError
        If the centres do not strictly increase.
    """
    centres = np.asarray(centres, dtype=np.float64)
    if centres.ndim != 1 or centres.size == 0:
        raise ValueError(f"grid coordinate {dim!r} must be 1-D and not empty")
    if centres.size == 1:
        raise ValueError(f"grid coordinate {dim!r} has one cell: its width is unknown")
    if (np.diff(centres) <= 0).any():
        raise ValueError(f"grid coordinate {dim!r} must strictly increase")
    middle = (centres[1:] + centres[:-1]) / 2
    first = centres[0] - (middle[0] - centres[0])
    last = centres[-1] + (centres[-1] - middle[-1])
    return np.concatenate([[first], middle, [last]])


def overlap(src_edges: np.ndarray, dst_edges: np.ndarray, dim: str) -> Overlap:
    """Fractions of each source cell inside each target cell along one axis."""
    if dim == "lat":
        src_edges, dst_edges = (np.sin(np.deg2rad(e)) for e in (src_edges, dst_edges))
    cuts = np.union1d(src_edges, dst_edges)
    lo = max(src_edges[0], dst_edges[0])
    hi = min(src_edges[-1], dst_edges[-1])
    cuts = cuts[(cuts >= lo) & (cuts <= hi)]
    # Edges that differ by rounding only (the same edge computed two ways) are one.
    tolerance = 1e-9 * min(np.diff(src_edges).min(), np.diff(dst_edges).min())
    cuts = cuts[np.concatenate([[True], np.diff(cuts) > tolerance])]
    middle = (cuts[1:] + cuts[:-1]) / 2
    src = np.searchsorted(src_edges, middle, side="right") - 1
    dst = np.searchsorted(dst_edges, middle, side="right") - 1
    weight = np.diff(cuts) / np.diff(src_edges)[src]
    # A whole cell is exactly whole (its edges came from centres, with rounding).
    weight[np.abs(weight - 1) < 1e-9] = 1.0
    keep = weight > 0
    return Overlap(src[keep].astype(np.int64), dst[keep].astype(np.int64), weight[keep])


def same_axis(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two axes have the same cell centres (to a millionth of a cell)."""
    if a.shape != b.shape:
        return False
    step = np.min(np.diff(a)) if a.size > 1 else 1.0
    return bool(np.allclose(a, b, rtol=0, atol=1e-6 * step))


def target_axes(target: xr.DataArray | xr.Dataset, dims: tuple[str, str]) -> dict[str, np.ndarray]:
    """The target grid's increasing cell centres along the footprint's ``dims``.

    Raises
    ------
    ValueError
        If the target lacks 1-D coordinates named like the footprint's grid.
    """
    axes = {}
    for dim in dims:
        if dim not in target.coords or target[dim].ndim != 1:
            raise ValueError(
                f"the target grid needs a 1-D coordinate {dim!r} of cell centres, like the "
                f"footprint's ({', '.join(dims)}); curvilinear grids are not supported"
            )
        axes[dim] = np.sort(np.asarray(target[dim].values, dtype=np.float64))
    return axes


def weights(
    foot_axes: dict[str, np.ndarray], target: dict[str, np.ndarray]
) -> tuple[Overlap, Overlap]:
    """The ``(y, x)`` overlaps of the footprint grid's cells with the target's."""
    y_dim, x_dim = foot_axes
    return tuple(overlap(edges(foot_axes[d], d), edges(target[d], d), d) for d in (y_dim, x_dim))  # type: ignore[return-value]
