"""What footprints are summed onto, besides rectilinear grids: polygons and zones.

A target is either

* a :class:`geopandas.GeoDataFrame` or :class:`geopandas.GeoSeries` of polygons
  (counties, districts, nested grids, :func:`h3_cells`, :func:`windows` around
  point sources), its index the target ids, in any CRS (reprojected onto the
  footprint grid's with pyproj, vertex by vertex);
* zones: an :class:`xarray.DataArray` of labels on the footprint grid or any
  other rectilinear grid (``lat, lon`` or ``y, x`` like the footprint's), each
  label one target, NaN or None in no target. Labels are any non-float dtype
  (integers, strings), or floats carrying CF ``flag_values`` (as regionmask's
  masks do).

Each becomes a :class:`Target`: the ids, the name of the target dimension, and
the sparse weights (the fraction of each footprint cell inside each target,
:mod:`.weights`). Weights depend only on the grid and the target, so they are
built once and kept, for the :data:`CACHE_SIZE` most recent (grid, target)
pairs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from dask.base import tokenize
from scipy import sparse

from . import regrid, weights

#: How many (grid, target) weight matrices are kept.
CACHE_SIZE = 16
_LONGLAT = "+proj=longlat +datum=WGS84 +no_defs"

_cache: OrderedDict[str, Target] = OrderedDict()
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class Target:
    """Targets resolved on one footprint grid.

    Attributes
    ----------
    dim : str
        Name of the target dimension in results.
    ids : pandas.Index
        The target ids, in result order.
    weights : scipy.sparse.csr_array
        ``(footprint cells, targets)``: the fraction of each footprint cell
        (numbered ``y * nx + x``) inside each target.
    """

    dim: str
    ids: pd.Index
    weights: sparse.csr_array


def is_target(target: Any) -> bool:
    """Whether ``target`` is polygons or zones (rather than a rectilinear grid)."""
    return _is_geo(target) or (isinstance(target, xr.DataArray) and _is_labels(target))


def resolve(foot: xr.DataArray, dims: tuple[str, str], target: Any) -> Target:
    """The :class:`Target` of polygons or zones on the grid of ``foot``, cached.

    Raises
    ------
    ValueError
        For no targets, geometries other than polygons, repeated ids, labels on
        a grid without the footprint's coordinates, or a target CRS on a grid
        whose own CRS is unknown.
    """
    y_dim, x_dim = dims
    y = np.asarray(foot[y_dim].values, dtype=np.float64)
    x = np.asarray(foot[x_dim].values, dtype=np.float64)
    crs = grid_crs(foot, dims)
    if _is_geo(target):
        key = tokenize(y, x, crs, _geo_token(target))
    else:
        key = tokenize(y, x, target.values, *(target[d].values for d in target.dims), target.name)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    resolved = _polygons(target, x, y, crs) if _is_geo(target) else _zones(target, dims, (y, x))
    if len(resolved.ids) == 0:
        raise ValueError("there are no targets: no polygons, or no labelled zone")
    with _cache_lock:
        _cache[key] = resolved
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return resolved


def grid_target(
    foot: xr.DataArray, dims: tuple[str, str], grid: xr.DataArray | xr.Dataset | None
) -> Target:
    """A rectilinear grid (default the footprint's own) as a :class:`Target` of its cells.

    Cells are numbered ``y`` then ``x`` and their ids are ``(y, x)`` centres;
    overlaps are those of :mod:`.regrid` (on the sphere for ``lat, lon``).
    """
    foot_axes = {d: np.asarray(foot[d].values, dtype=np.float64) for d in dims}
    axes = foot_axes if grid is None else regrid.target_axes(grid, dims)
    oy, ox = regrid.weights(foot_axes, axes)
    nx, n_target_x = foot_axes[dims[1]].size, axes[dims[1]].size
    matrix = weights.to_csr(
        (oy.src[:, None] * nx + ox.src[None, :]).ravel(),
        (oy.dst[:, None] * n_target_x + ox.dst[None, :]).ravel(),
        (oy.weight[:, None] * ox.weight[None, :]).ravel(),
        foot_axes[dims[0]].size * nx,
        axes[dims[0]].size * n_target_x,
    )
    ids = pd.MultiIndex.from_product([axes[d] for d in dims], names=list(dims))
    return Target("cell", ids, matrix)


def grid_crs(foot: xr.DataArray, dims: tuple[str, str]) -> str | None:
    """The grid CRS: ``footprint_projection``, else longitude/latitude on ``lat, lon``."""
    projection = foot.attrs.get("footprint_projection")
    if projection:
        return str(projection)
    return _LONGLAT if dims == ("lat", "lon") else None


def h3_cells(bounds: Sequence[float], resolution: int) -> Any:
    """The H3 cells of one resolution whose centres lie in a longitude/latitude box.

    Parameters
    ----------
    bounds : sequence of float
        ``(xmin, ymin, xmax, ymax)`` in degrees (e.g. the footprint grid's extent).
    resolution : int
        H3 resolution, 0 (continents) to 15 (square metres); resolution 7 cells
        are about 5 km², 5 about 250 km².

    Returns
    -------
    geopandas.GeoDataFrame
        One hexagon per cell, indexed by the H3 cell id (``cell``), in EPSG:4326.
        Needs ``h3`` and ``geopandas``.
    """
    import geopandas as gpd
    import h3
    import shapely

    xmin, ymin, xmax, ymax = (float(v) for v in bounds)
    box = h3.LatLngPoly([(ymin, xmin), (ymin, xmax), (ymax, xmax), (ymax, xmin)])
    ids = sorted(h3.polygon_to_cells(box, resolution))
    hexagons = [shapely.Polygon([(lng, lat) for lat, lng in h3.cell_to_boundary(c)]) for c in ids]
    return gpd.GeoDataFrame(geometry=hexagons, index=pd.Index(ids, name="cell"), crs="EPSG:4326")


def windows(
    points: Any,
    size: float | tuple[float, float],
    ids: Sequence[Hashable] | None = None,
    crs: Any = "EPSG:4326",
) -> Any:
    """Rectangular windows centred on points, such as known point sources.

    Parameters
    ----------
    points : geopandas.GeoSeries, geopandas.GeoDataFrame or array-like
        Points, or ``(x, y)`` pairs in ``crs``. A GeoSeries or GeoDataFrame
        brings its own CRS and its index (the window ids).
    size : float or (float, float)
        Window width, or ``(width, height)``, in the points' CRS units.
    ids : sequence, optional
        Window ids; default the points' index, else ``"x,y"`` of each point.
    crs : optional
        CRS of ``(x, y)`` pairs (default EPSG:4326, longitude/latitude).

    Returns
    -------
    geopandas.GeoDataFrame
        One box per point, indexed by the ids (named ``source`` unless the
        points' index has a name).
    """
    import geopandas as gpd
    import shapely

    width, height = (size, size) if np.isscalar(size) else size
    if _is_geo(points):
        geometry = points.geometry if isinstance(points, gpd.GeoDataFrame) else points
        xy, crs = shapely.get_coordinates(geometry.values), points.crs
        index = points.index if ids is None else pd.Index(ids)
    else:
        xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        index = pd.Index([f"{a:g},{b:g}" for a, b in xy] if ids is None else ids)
    if index.name is None:
        index = index.rename("source")
    boxes = shapely.box(
        xy[:, 0] - width / 2, xy[:, 1] - height / 2, xy[:, 0] + width / 2, xy[:, 1] + height / 2
    )
    return gpd.GeoDataFrame(geometry=boxes, index=index, crs=crs)


def _is_geo(target: Any) -> bool:
    # geopandas is imported by whoever made the target; never import it here.
    return type(target).__module__.startswith("geopandas") and hasattr(target, "crs")


def _is_labels(labels: xr.DataArray) -> bool:
    return labels.dtype.kind != "f" or "flag_values" in labels.attrs


def _geo_token(target: Any) -> str:
    import shapely

    crs = None if target.crs is None else target.crs.to_wkt()
    return tokenize(shapely.to_wkb(np.asarray(target.geometry.values)), crs, target.index)


def _polygons(target: Any, x: np.ndarray, y: np.ndarray, crs: str | None) -> Target:
    import shapely

    geometry = target.geometry if hasattr(target, "geometry") else target
    if not geometry.index.is_unique:
        repeated = geometry.index[geometry.index.duplicated()].unique()[:5].tolist()
        raise ValueError(f"target ids must be unique; repeated: {repeated}")
    if target.crs is not None:
        if crs is None:
            raise ValueError(
                f"the targets are in {target.crs.name!r} but the footprint grid's CRS is "
                "unknown: set its attrs['footprint_projection'] (a PROJ string)"
            )
        geometry = geometry.to_crs(crs)
    kinds = shapely.get_type_id(geometry.values)
    bad = ~np.isin(kinds, (3, 6)) | shapely.is_empty(geometry.values)  # Polygon, MultiPolygon
    if bad.any():
        first = geometry.index[bad][0]
        raise ValueError(
            f"targets must be non-empty polygons; target {first!r} is "
            f"{geometry.values[bad][0].geom_type}"
        )
    matrix = weights.polygon_weights(np.asarray(geometry.values), x, y)
    return Target(_dim_name(geometry.index.name), pd.Index(geometry.index), matrix)


def _zones(labels: xr.DataArray, dims: tuple[str, str], foot_axes: tuple) -> Target:
    if labels.ndim != 2 or set(labels.dims) != set(dims):
        raise ValueError(
            f"zone labels must be a 2-D DataArray on ({', '.join(dims)}) like the footprint's "
            f"grid, not {labels.dims}"
        )
    labels = labels.transpose(*dims).sortby(list(dims))
    zone_axes = tuple(regrid.target_axes(labels, dims)[d] for d in dims)
    values = labels.values.ravel()
    present = ~pd.isna(values)
    ids, codes = np.unique(values[present], return_inverse=True)
    numbered = np.full(values.size, -1, dtype=np.int64)
    numbered[present] = codes
    matrix = weights.label_weights(numbered.reshape(labels.shape), zone_axes, foot_axes)
    name = labels.name if labels.name is not None else "zone"
    return Target(_dim_name(name), pd.Index(ids, name=name), matrix)


def _dim_name(name: Hashable | None) -> str:
    return "target" if name is None else str(name)
