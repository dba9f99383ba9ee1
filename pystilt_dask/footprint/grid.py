"""The footprint grid: cell edges and centres, longitude wrapping and projection.

Everything here follows R-STILT's ``calc_footprint`` (see ``docs/footprint.md``):
cells are the whole ``res``-sized steps from the lower bound (``seq(min, max, by)``
with its last element dropped), bins are half-open ``[edge, edge + res)``, and a
projected grid covers the projection of only its two corners.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from . import crs

if TYPE_CHECKING:  # config imports this package
    from ..config import FootprintConfig

# R's ``seq(from, to, by)`` keeps the last step when (to - from) / by is within
# this much of an integer; the grid inherits that fuzz.
_SEQ_FUZZ = 1e-10

# Cell centres are rounded so a grid built from decimal bounds has decimal
# labels (40.6125, not 40.612500000000004) that match labels made elsewhere.
_COORD_DECIMALS = 10


def cell_count(minimum: float, maximum: float, resolution: float) -> int:
    """Return the number of whole cells R-STILT fits between two bounds.

    Parameters
    ----------
    minimum, maximum : float
        Grid bounds in grid units.
    resolution : float
        Cell size in grid units.

    Returns
    -------
    int
        ``floor((maximum - minimum) / resolution + 1e-10)``, the length of
        ``head(seq(minimum, maximum, by = resolution), -1)`` in R.
    """
    return int(math.floor((maximum - minimum) / resolution + _SEQ_FUZZ))


def wrap_longitude(lon: np.ndarray | float) -> np.ndarray | float:
    """Map longitudes to [-180, 180) as R-STILT does (``(x %% 360 + 540) %% 360 - 180``)."""
    return (np.mod(np.mod(lon, 360.0) + 540.0, 360.0)) - 180.0


def _wrap_antimeridian(lon: np.ndarray | float) -> np.ndarray | float:
    # R-STILT: wrap to [-180, 180), then shift the western half up by 360.
    wrapped = wrap_longitude(lon)
    return np.where(wrapped < 0, wrapped + 360.0, wrapped)


@dataclass(frozen=True)
class Grid:
    """A footprint grid in its own units (degrees, or projection metres).

    Use :meth:`from_config`; the attributes are R-STILT's grid quantities after
    longitude wrapping and projection of the bounds.

    Attributes
    ----------
    xmin, xmax, ymin, ymax : float
        Bounds in grid units.
    xres, yres : float
        Cell size in grid units.
    projection : str
        CRS of the grid (see :mod:`pystilt_dask.footprint.crs`).
    is_longlat : bool
        Whether the grid is geographic.
    crosses_antimeridian : bool
        Whether longitudes are handled in [0, 360) (a longlat grid across 180°).
    """

    xmin: float
    xmax: float
    ymin: float
    ymax: float
    xres: float
    yres: float
    projection: str
    is_longlat: bool
    crosses_antimeridian: bool = False

    @classmethod
    def from_config(cls, config: FootprintConfig) -> Grid:
        """Build the grid of a footprint configuration (cached per process).

        Longlat bounds spanning the globe become -180..180; bounds crossing the
        antimeridian (``xmax < xmin`` or ``xmax > 180``) move to [0, 360).
        Projected bounds are the extremes of the two projected corners
        ``(xmin, ymin)`` and ``(xmax, ymax)``, as in R-STILT.
        """
        xres = float(config.xres)
        yres = float(config.yres or config.xres)
        bounds = (config.xmin, config.xmax, config.ymin, config.ymax)
        return _grid(*bounds, xres, yres, config.projection)

    @property
    def nx(self) -> int:
        """Number of cells along x (longitude)."""
        return cell_count(self.xmin, self.xmax, self.xres)

    @property
    def ny(self) -> int:
        """Number of cells along y (latitude)."""
        return cell_count(self.ymin, self.ymax, self.yres)

    @property
    def dims(self) -> tuple[str, str]:
        """Horizontal dimension names, ``(y, x)`` order: ``("lat", "lon")`` or ``("y", "x")``."""
        return ("lat", "lon") if self.is_longlat else ("y", "x")

    @property
    def x_centres(self) -> np.ndarray:
        """Cell-centre x coordinates, ascending."""
        edges = self.xmin + np.arange(self.nx) * self.xres
        return np.round(edges + self.xres / 2, _COORD_DECIMALS)

    @property
    def y_centres(self) -> np.ndarray:
        """Cell-centre y coordinates, ascending."""
        edges = self.ymin + np.arange(self.ny) * self.yres
        return np.round(edges + self.yres / 2, _COORD_DECIMALS)

    def wrap_longitudes(self, lon: np.ndarray) -> np.ndarray:
        """Move particle longitudes to [0, 360) when the grid crosses the antimeridian."""
        return _wrap_antimeridian(lon) if self.crosses_antimeridian else lon

    def project(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return particle positions in grid units (projected unless the grid is longlat)."""
        if self.is_longlat:
            return lon, lat
        x, y = crs.to_projection(self.projection).transform(lon, lat)
        return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)

    @cached_property
    def coordinate_attrs(self) -> dict[str, dict[str, str]]:
        """CF attributes of the horizontal coordinates, by dimension name."""
        if self.is_longlat:
            return {
                "lon": {
                    "standard_name": "longitude",
                    "long_name": "longitude at cell center",
                    "units": "degrees_east",
                    "axis": "X",
                },
                "lat": {
                    "standard_name": "latitude",
                    "long_name": "latitude at cell center",
                    "units": "degrees_north",
                    "axis": "Y",
                },
            }
        units = crs.cf_units(self.projection)
        return {
            "x": {
                "standard_name": "projection_x_coordinate",
                "long_name": "x coordinate of projection at cell center",
                "units": units,
                "axis": "X",
            },
            "y": {
                "standard_name": "projection_y_coordinate",
                "long_name": "y coordinate of projection at cell center",
                "units": units,
                "axis": "Y",
            },
        }

    def grid_mapping_attrs(self) -> dict[str, Any]:
        """CF grid-mapping attributes of the grid's CRS (for a ``crs`` variable)."""
        grid_crs = crs.parse(self.projection)
        attrs = {k: v for k, v in grid_crs.to_cf().items() if not isinstance(v, dict | list)}
        attrs["crs_wkt"] = grid_crs.to_wkt()
        attrs["proj4"] = self.projection
        return attrs


# Every footprint of a project shares its grid: build it (and its projection of
# the bounds) once per process, not once per simulation.
@lru_cache(maxsize=32)
def _grid(
    xmin: float, xmax: float, ymin: float, ymax: float, xres: float, yres: float, projection: str
) -> Grid:
    config_bounds = (xmin, xmax, ymin, ymax)
    is_longlat = crs.is_geographic(projection)
    crosses = False
    if is_longlat:
        if ((180.0 - xmin) - (-180.0 - xmax)) % 360.0 == 0:
            xmin, xmax = -180.0, 180.0
        elif xmax < xmin or xmax > 180.0:
            xmin, xmax = float(_wrap_antimeridian(xmin)), float(_wrap_antimeridian(xmax))
            crosses = True
    else:
        xs, ys = crs.to_projection(projection).transform([xmin, xmax], [ymin, ymax])
        xmin, xmax = float(min(xs)), float(max(xs))
        ymin, ymax = float(min(ys)), float(max(ys))
    grid = Grid(xmin, xmax, ymin, ymax, xres, yres, projection, is_longlat, crosses)
    if grid.nx < 1 or grid.ny < 1:
        x0, x1, y0, y1 = config_bounds
        raise ValueError(
            f"footprint grid {x0}..{x1} x {y0}..{y1} holds no whole {xres} x {yres} cell"
        )
    return grid
