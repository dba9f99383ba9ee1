"""A footprint grid's coordinate reference system, read by pyproj in one place.

Config validation, the grid and the netCDF writer ask these functions, so every
spelling pyproj accepts (``EPSG:4326``, ``+proj=longlat``, ``OGC:CRS84``, WKT, …)
is classified the same way everywhere. Results are cached per projection string:
parsing a CRS and building a transformer cost milliseconds, and a process grids
many footprints on few grids.
"""

from __future__ import annotations

from functools import lru_cache

from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

# UDUNITS symbols (what CF readers expect) for the axis units pyproj names.
_CF_UNITS = {"metre": "m", "kilometre": "km"}


@lru_cache(maxsize=64)
def parse(projection: str) -> CRS:
    """Return the pyproj CRS of a projection string.

    Parameters
    ----------
    projection : str
        Anything :meth:`pyproj.CRS.from_user_input` reads: a PROJ string, an
        authority code such as ``"EPSG:32612"`` or WKT.

    Returns
    -------
    pyproj.CRS

    Raises
    ------
    ValueError
        If pyproj cannot read it, or it is neither geographic nor projected
        (a footprint grid needs horizontal x/y axes).
    """
    try:
        crs = CRS.from_user_input(projection)
    except CRSError as exc:
        raise ValueError(
            f"projection {projection!r} is not a CRS pyproj can read ({exc})"
        ) from None
    if not (crs.is_geographic or crs.is_projected):
        raise ValueError(f"projection {projection!r} is neither geographic nor projected")
    return crs


def is_geographic(projection: str) -> bool:
    """Whether a projection is geographic (longitude/latitude grid cells).

    Parameters
    ----------
    projection : str
        A projection string, as for :func:`parse`.

    Returns
    -------
    bool
        ``pyproj.CRS.from_user_input(projection).is_geographic``.
    """
    return parse(projection).is_geographic


def axis_units(projection: str) -> str:
    """The unit of a projection's horizontal axes, as pyproj names it.

    Parameters
    ----------
    projection : str
        A projection string, as for :func:`parse`.

    Returns
    -------
    str
        pyproj's unit name of the first axis, e.g. ``"degree"`` or ``"metre"``.
    """
    return parse(projection).axis_info[0].unit_name


def cf_units(projection: str) -> str:
    """The CF ``units`` attribute of a projected grid's x/y coordinates (``"m"`` for metres).

    Geographic grids use ``degrees_east``/``degrees_north``, which callers set per axis.
    """
    unit = axis_units(projection)
    return _CF_UNITS.get(unit, unit)


@lru_cache(maxsize=64)
def to_projection(projection: str) -> Transformer:
    """The transformer from longitude/latitude to a projected grid's x/y.

    Longitude and latitude are taken on the projection's own datum, as R's
    ``proj4::project`` reads them: no datum shift (identical to ``EPSG:4326`` for
    WGS84 grids). Axis order is always x (easting, longitude) first.
    """
    crs = parse(projection)
    return Transformer.from_crs(crs.geodetic_crs, crs, always_xy=True)
