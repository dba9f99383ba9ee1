"""Plots of footprints and particle tracks (needs ``matplotlib``: the ``plot`` extra).

Importing :mod:`pystilt_dask` registers the ``stilt`` accessor on every
:class:`xarray.DataArray`; matplotlib is imported only when something is drawn,
so the package itself never needs it::

    foot = model.footprints["default"].load()  # lazy (simulation, lag, lat, lon)
    foot.stilt.plot(simulation=sim_id)  # one simulation, summed over lag
    foot.stilt.plot(how="mean")  # the mean of every simulation

    from pystilt_dask.plot import tracks

    tracks(model.trajectories.load(sim_id))  # particle paths coloured by time

Coastlines are drawn when `cartopy <https://scitools.org.uk/cartopy>`_ is
importable (it is never required) and its Natural Earth coastlines (1:50m) are
already on disk, so a plot never waits for, or fails on, a download; pass
``coastlines=True`` to have cartopy download them when missing.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Hashable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["footprint_map", "to_map", "tracks"]

_TIME_DIMS = ("lag", "time")
_SPATIAL = (("lat", "lon"), ("y", "x"))
_EMPTY_TEXT = "empty footprint: no surface influence on this grid"
_COASTLINE_SCALE = "50m"


def to_map(
    foot: xr.DataArray,
    simulation: Hashable | Sequence[Hashable] | int | None = None,
    lag: int | slice | Sequence[int] | None = None,
    time: Any = None,
    how: Literal["sum", "mean"] = "sum",
) -> xr.DataArray:
    """Reduce the footprint to one 2-D map, lazily (nothing is computed): ``foot.stilt.to_map``.

    Parameters
    ----------
    foot : xarray.DataArray
        The lazy ``foot(simulation, lag, lat, lon)`` of
        :meth:`pystilt_dask.model.Footprint.load` (``y, x`` on projected grids),
        or the ``foot(time, lat, lon)`` of :func:`pystilt_dask.calc_footprint`.
    simulation : str, int, sequence of str, or None
        Simulation id(s) to select (an ``int`` selects by position);
        ``None`` keeps every simulation. Ignored when the array has no
        ``simulation`` dimension.
    lag : int, slice or sequence of int, optional
        Hourly layers to keep, by their ``lag`` label in hours (negative for
        backward runs; a ``slice`` is inclusive at both ends, as in
        :meth:`xarray.DataArray.sel`). Default: every layer.
    time : datetime-like or slice, optional
        Layers whose start time (the ``time`` coordinate) equals this, or
        lies within this inclusive slice. Combines with ``lag``.
    how : {"sum", "mean"}
        How several simulations are combined after each is summed over its
        layers: the ``sum`` of their maps, or their ``mean``. Simulations not
        yet computed (NaN) are left out of either.

    Returns
    -------
    xarray.DataArray
        ``(lat, lon)`` (or ``(y, x)``), summed over the selected layers: the
        time-integrated footprint, in the footprint's units (the response to
        a constant flux of 1 µmol m⁻² s⁻¹ over the selected hours). Cells
        without influence are 0; NaN only where nothing selected is computed.

    Raises
    ------
    ValueError
        If the array is not a footprint (no ``lat/lon`` or ``y/x``
        dimensions), ``how`` is unknown or the selection is empty.
    """
    if how not in ("sum", "mean"):
        raise ValueError(f"how must be 'sum' or 'mean', not {how!r}")
    foot = _select(foot, simulation, lag, time)
    layers = [d for d in _TIME_DIMS if d in foot.dims]
    if layers:
        foot = foot.sum(layers, min_count=1, keep_attrs=True)
    if "simulation" in foot.dims:
        if how == "sum":
            foot = foot.sum("simulation", min_count=1, keep_attrs=True)
        else:
            foot = foot.mean("simulation", keep_attrs=True)
    extra = [d for d in foot.dims if d not in _spatial_dims(foot)]
    if extra:
        raise ValueError(f"cannot reduce dimensions {extra} to a map; select them first")
    return foot


def footprint_map(
    foot: xr.DataArray,
    simulation: Hashable | Sequence[Hashable] | int | None = None,
    lag: int | slice | Sequence[int] | None = None,
    time: Any = None,
    how: Literal["sum", "mean"] = "sum",
    ax: Any = None,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str | Any = "viridis",
    receptor: bool = True,
    coastlines: bool | None = None,
    colorbar: bool = True,
    title: str | None = None,
    **kwargs: Any,
) -> Any:
    """Draw a map of the footprint on a log colour scale, the receptor marked.

    The map is :func:`to_map` of the same selection: each simulation summed
    over the selected layers (default: all of them), several simulations
    combined by ``how``. Computes only that selection.

    Parameters
    ----------
    foot : xarray.DataArray
        A footprint, as for :func:`to_map`.
    simulation, lag, time, how
        The selection, as in :func:`to_map`. With one simulation in the
        array, that one is drawn.
    ax : matplotlib.axes.Axes, optional
        Where to draw; default: a new figure (a cartopy ``GeoAxes`` when
        coastlines are drawn).
    vmin, vmax : float, optional
        Colour range (:class:`~matplotlib.colors.LogNorm`, positive values
        only). Default: the largest value, and the smallest positive value
        but at most six decades below it.
    cmap : str or matplotlib.colors.Colormap
        Colour map; cells without influence (zero) are left transparent.
    receptor : bool
        Mark each selected receptor (a star at ``receptor_longitude``,
        ``receptor_latitude``; the ``receptor_*`` attributes of a
        :func:`~pystilt_dask.calc_footprint` result), labelled ``"receptor"``.
    coastlines : bool, optional
        ``None`` (default): draw them when cartopy is importable, the grid is
        longitude/latitude and cartopy's Natural Earth coastlines (1:50m) are
        on disk; ``True``: draw them (needs cartopy, which downloads the
        coastlines when missing); ``False``: never.
    colorbar : bool
        Add a colour bar labelled with the footprint's ``long_name`` and ``units``
        (the axes are labelled from the grid coordinates' ``standard_name``, or
        ``long_name`` on projected grids, and ``units``).
    title : str, optional
        Default: the simulation id, or what was combined, and the layers.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.pcolormesh`.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn on: a :class:`~matplotlib.collections.QuadMesh` of the
        map, and a ``"receptor"`` line per marked receptor.

    Raises
    ------
    ValueError
        If nothing selected has been computed (every value NaN).

    Notes
    -----
    An **empty footprint** (all zeros: the particles never came near the
    surface on this grid, a ``complete-empty`` simulation) is not an error:
    the plot is valid but empty, with the grid's extent, the receptor marked,
    the text ``"empty footprint: no surface influence on this grid"`` in the
    middle, and no colour mesh or colour bar (a log scale has nothing to
    show). Test for it with ``ax.collections`` being empty.

    Examples
    --------
    >>> foot = model.footprints["default"].load()  # doctest: +SKIP
    >>> ax = foot.stilt.plot(simulation=foot.simulation.values[0])  # doctest: +SKIP
    >>> ax = foot.stilt.plot(lag=slice(-3, -1), how="mean")  # doctest: +SKIP
    """
    field = to_map(foot, simulation, lag, time, how).compute()
    values = np.asarray(field.values, dtype=np.float64)
    if np.isnan(values).all():
        raise ValueError(
            "nothing to plot: the selected footprints are all NaN (simulations not "
            "computed yet; run them first, or select complete ones)"
        )
    y_dim, x_dim = field.dims
    longlat = (y_dim, x_dim) == ("lat", "lon")
    ax, transform = _axes(ax, coastlines, longlat)
    x, y = field[x_dim].values, field[y_dim].values
    positive = values > 0
    mesh = None
    if positive.any():
        from matplotlib.colors import LogNorm

        top = float(values[positive].max()) if vmax is None else vmax
        bottom = max(float(values[positive].min()), top * 1e-6) if vmin is None else vmin
        norm = LogNorm(vmin=bottom, vmax=max(top, bottom))
        masked = np.ma.masked_where(~positive, values)
        geo = {} if transform is None else {"transform": transform}
        mesh = ax.pcolormesh(x, y, masked, norm=norm, cmap=cmap, shading="nearest", **geo, **kwargs)
    else:
        ax.text(
            0.5, 0.5, _EMPTY_TEXT, transform=ax.transAxes, ha="center", va="center",
            wrap=True,
        )  # fmt: skip
    dx = (x[1] - x[0]) / 2 if len(x) > 1 else 0.5
    dy = (y[1] - y[0]) / 2 if len(y) > 1 else 0.5
    extent = (x[0] - dx, x[-1] + dx, y[0] - dy, y[-1] + dy)
    if transform is None:
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
    else:
        ax.set_extent(extent, crs=transform)
    if receptor:
        points = _receptors(foot, simulation, (y_dim, x_dim))
        if points is not None:
            _mark(ax, *points, transform)
    if mesh is not None and colorbar:
        ax.figure.colorbar(mesh, ax=ax, label=_label(foot, "footprint"))
    ax.set_xlabel(_label(field[x_dim], x_dim, prefer_standard_name=longlat))
    ax.set_ylabel(_label(field[y_dim], y_dim, prefer_standard_name=longlat))
    if longlat and transform is None:
        ax.set_aspect(1 / np.cos(np.deg2rad(np.mean(y))))
    ax.set_title(_title(foot, simulation, lag, time, how) if title is None else title)
    return ax


def tracks(
    particles: pd.DataFrame,
    ax: Any = None,
    color: Literal["time", "zagl"] = "time",
    n_particles: int | None = None,
    receptor: Any = True,
    cmap: str | Any | None = None,
    coastlines: bool | None = None,
    colorbar: bool = True,
    linewidth: float = 0.6,
    alpha: float = 0.8,
) -> Any:
    """Draw particle paths (longitude, latitude), coloured by time or height.

    Parameters
    ----------
    particles : pandas.DataFrame
        R-STILT particle columns, as :meth:`pystilt_dask.model.Trajectories.load`
        or :func:`pystilt_dask.run_trajectory` return them: ``indx`` (particle),
        ``time`` (minutes from the receptor time, negative backward), ``long``,
        ``lati`` and, for ``color="zagl"``, ``zagl`` (m above ground).
    ax : matplotlib.axes.Axes, optional
        Where to draw; default: a new figure (a cartopy ``GeoAxes`` when
        coastlines are drawn).
    color : {"time", "zagl"}
        Colour each segment by its time in hours relative to the receptor time,
        or by its height above ground in metres.
    n_particles : int, optional
        Draw only the particles with the ``n_particles`` smallest ``indx``
        (a quick look at a large release). Default: all.
    receptor : bool, (float, float) or receptor
        Mark the receptor with a star labelled ``"receptor"``: ``True`` (default)
        at the particles' mean position at their first output step (within
        metres of the release), a ``(longitude, latitude)`` pair, an object with
        ``longitude`` and ``latitude`` (a :class:`~pystilt_dask.PointReceptor`),
        or ``False``/``None`` for no marker.
    cmap : str or matplotlib.colors.Colormap, optional
        Default ``"plasma"`` for time, ``"viridis"`` for height.
    coastlines : bool, optional
        As in :func:`footprint_map`.
    colorbar : bool
        Add a colour bar labelled with the quantity and its units.
    linewidth, alpha : float
        Line style of the paths.

    Returns
    -------
    matplotlib.axes.Axes
        With one :class:`~matplotlib.collections.LineCollection` of every path's
        segments.

    Raises
    ------
    ValueError
        If a needed column is missing, ``color`` is unknown, or there are no
        particles.

    Examples
    --------
    >>> from pystilt_dask.plot import tracks  # doctest: +SKIP
    >>> ax = tracks(model.trajectories.load(sim_id), color="zagl")  # doctest: +SKIP
    """
    from matplotlib.collections import LineCollection

    quantities = {"time": "time relative to receptor [h]", "zagl": "height above ground [m]"}
    if color not in quantities:
        raise ValueError(f"color must be 'time' or 'zagl', not {color!r}")
    needed = ["indx", "time", "long", "lati"] + (["zagl"] if color == "zagl" else [])
    missing = [c for c in needed if c not in particles.columns]
    if missing:
        raise ValueError(f"particles lack column(s) {missing} (R-STILT particle columns)")
    table = particles[needed].sort_values(["indx", "time"], kind="stable")
    if n_particles is not None:
        keep = np.sort(table["indx"].unique())[:n_particles]
        table = table[table["indx"].isin(keep)]
    if table.empty:
        raise ValueError("no particles to draw")
    ax, transform = _axes(ax, coastlines, longlat=True)
    xy = table[["long", "lati"]].to_numpy(np.float64)
    value = table["time"].to_numpy(np.float64) / 60 if color == "time" else table["zagl"].to_numpy()
    same = table["indx"].to_numpy()[1:] == table["indx"].to_numpy()[:-1]
    segments = np.stack([xy[:-1], xy[1:]], axis=1)[same]
    shade = ((value[:-1] + value[1:]) / 2)[same]
    lines = LineCollection(
        segments,
        array=shade,
        cmap=cmap or ("plasma" if color == "time" else "viridis"),
        linewidths=linewidth,
        alpha=alpha,
        **({} if transform is None else {"transform": transform}),
    )
    ax.add_collection(lines)
    lon, lat = xy[:, 0], xy[:, 1]
    pad_x = max(0.05 * np.ptp(lon), 0.01)
    pad_y = max(0.05 * np.ptp(lat), 0.01)
    if transform is None:
        ax.set_xlim(lon.min() - pad_x, lon.max() + pad_x)
        ax.set_ylim(lat.min() - pad_y, lat.max() + pad_y)
        ax.set_aspect(1 / np.cos(np.deg2rad(lat.mean())))
    else:
        extent = (lon.min() - pad_x, lon.max() + pad_x, lat.min() - pad_y, lat.max() + pad_y)
        ax.set_extent(extent, crs=transform)
    point = _release_point(table, receptor)
    if point is not None:
        _mark(ax, [point[0]], [point[1]], transform)
    if colorbar:
        ax.figure.colorbar(lines, ax=ax, label=quantities[color])
    ax.set_xlabel("longitude [degrees_east]")
    ax.set_ylabel("latitude [degrees_north]")
    n = table["indx"].nunique()
    ax.set_title(f"{n} particle{'s' if n != 1 else ''}, coloured by {color}")
    return ax


def _spatial_dims(foot: xr.DataArray) -> tuple[str, str]:
    for dims in _SPATIAL:
        if all(d in foot.dims for d in dims):
            return dims
    raise ValueError(
        f"not a footprint: expected (lat, lon) or (y, x) dimensions, got {tuple(foot.dims)}"
    )


def _select(
    foot: xr.DataArray,
    simulation: Hashable | Sequence[Hashable] | int | None,
    lag: int | slice | Sequence[int] | None,
    time: Any,
) -> xr.DataArray:
    _spatial_dims(foot)
    if simulation is not None and "simulation" in foot.dims:
        if isinstance(simulation, int | np.integer):
            foot = foot.isel(simulation=[int(simulation)])
        elif isinstance(simulation, str) or not isinstance(simulation, Sequence | np.ndarray):
            foot = foot.sel(simulation=[simulation])
        else:
            foot = foot.sel(simulation=list(simulation))
    if lag is not None:
        if "lag" not in foot.dims:
            raise ValueError("lag selects layers of stored footprints; this one has no lag")
        foot = foot.sel(lag=lag if isinstance(lag, slice | Sequence | np.ndarray) else [lag])
    if time is not None:
        if "time" in foot.dims:  # a calc_footprint result
            foot = foot.sel(time=time if isinstance(time, slice) else [time])
        else:  # time(simulation, lag): keep the layers that start in the selection
            start = foot["time"]
            if isinstance(time, slice):
                keep = xr.ones_like(start, dtype=bool)
                if time.start is not None:
                    keep &= start >= np.datetime64(pd.Timestamp(time.start), "ns")
                if time.stop is not None:
                    keep &= start <= np.datetime64(pd.Timestamp(time.stop), "ns")
            else:
                keep = start == np.datetime64(pd.Timestamp(time), "ns")
            if not bool(keep.any()):
                raise ValueError(f"no footprint layer starts at the selected time {time!r}")
            # Layers outside the selection count as no influence; NaN (not computed) stays.
            foot = foot.where(keep | foot.isnull(), 0)
    if any(foot.sizes[d] == 0 for d in foot.dims):
        raise ValueError("the selection is empty")
    return foot


def _axes(ax: Any, coastlines: bool | None, longlat: bool) -> tuple[Any, Any]:
    """The axes to draw on, and the cartopy transform of the data (or None)."""
    if coastlines and not longlat:
        raise ValueError("coastlines are drawn on longitude/latitude grids only")
    have_cartopy = importlib.util.find_spec("cartopy") is not None
    if coastlines and not have_cartopy:
        raise ImportError("coastlines=True needs cartopy (pip install cartopy)")
    is_geo = ax is not None and hasattr(ax, "projection") and hasattr(ax, "coastlines")
    wanted = coastlines or (coastlines is None and have_cartopy and _coastlines_on_disk())
    draw = longlat and bool(wanted) and (ax is None or is_geo)
    if coastlines and ax is not None and not is_geo:
        raise ValueError("coastlines need a cartopy GeoAxes; pass ax=None or such an axes")
    if ax is None:
        import matplotlib.pyplot as plt

        if draw:
            import cartopy.crs as ccrs

            _, ax = plt.subplots(subplot_kw={"projection": ccrs.PlateCarree()})
        else:
            _, ax = plt.subplots()
    if not (draw or is_geo):
        return ax, None
    import cartopy.crs as ccrs

    if draw:
        ax.coastlines(resolution=_COASTLINE_SCALE, linewidth=0.6)
    return ax, ccrs.PlateCarree()


def _coastlines_on_disk() -> bool:
    """Whether cartopy has its Natural Earth coastlines without downloading them."""
    try:
        from cartopy import config
        from cartopy.io import Downloader

        spec = ("shapefiles", "natural_earth", _COASTLINE_SCALE, "physical", "coastline")
        fields = {"category": "physical", "name": "coastline", "resolution": _COASTLINE_SCALE}
        downloader = Downloader.from_config(spec)
        paths = (
            downloader.pre_downloaded_path({"config": config, **fields}),
            downloader.target_path({"config": config, **fields}),
        )
    except Exception:  # any cartopy that does not look like this: no coastlines
        return False
    return any(path is not None and path.exists() for path in paths)


def _receptors(
    foot: xr.DataArray, simulation: Any, dims: tuple[str, str]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Unique receptor positions of the selection, in grid units."""
    if "receptor_longitude" in foot.coords and "receptor_latitude" in foot.coords:
        chosen = _select(foot, simulation, None, None)
        lon = np.atleast_1d(chosen["receptor_longitude"].values).astype(np.float64)
        lat = np.atleast_1d(chosen["receptor_latitude"].values).astype(np.float64)
    elif "receptor_longitude" in foot.attrs and "receptor_latitude" in foot.attrs:
        lon = np.atleast_1d(np.asarray(foot.attrs["receptor_longitude"], dtype=np.float64))
        lat = np.atleast_1d(np.asarray(foot.attrs["receptor_latitude"], dtype=np.float64))
    else:
        return None
    ok = np.isfinite(lon) & np.isfinite(lat)
    lon, lat = lon[ok], lat[ok]
    if dims == ("y", "x"):
        crs = foot["crs"].attrs if "crs" in foot.coords else {}
        source = crs.get("crs_wkt") or crs.get("proj4")
        if source is None:
            return None
        from pyproj import CRS, Transformer

        target = CRS.from_user_input(source)
        to_grid = Transformer.from_crs(target.geodetic_crs, target, always_xy=True)
        lon, lat = (np.asarray(v, dtype=np.float64) for v in to_grid.transform(lon, lat))
    if lon.size == 0:
        return None
    unique = np.unique(np.stack([lon, lat], axis=1), axis=0)
    return unique[:, 0], unique[:, 1]


def _release_point(table: pd.DataFrame, receptor: Any) -> tuple[float, float] | None:
    if receptor is None or receptor is False:
        return None
    if receptor is True:
        first = table[table["time"].abs() == table["time"].abs().min()]
        return float(first["long"].mean()), float(first["lati"].mean())
    if hasattr(receptor, "longitude") and hasattr(receptor, "latitude"):
        return float(receptor.longitude), float(receptor.latitude)
    lon, lat = receptor
    return float(lon), float(lat)


def _mark(ax: Any, x: Sequence[float], y: Sequence[float], transform: Any) -> None:
    ax.plot(
        x, y, linestyle="none", marker="*", markersize=14, color="red",
        markeredgecolor="white", markeredgewidth=0.8, label="receptor", zorder=5,
        **({} if transform is None else {"transform": transform}),
    )  # fmt: skip


def _label(obj: xr.DataArray, fallback: str, prefer_standard_name: bool = False) -> str:
    names = ("standard_name", "long_name") if prefer_standard_name else ("long_name",)
    name = next((obj.attrs[k] for k in names if obj.attrs.get(k)), None) or obj.name or fallback
    units = obj.attrs.get("units")
    return f"{name} [{units}]" if units else str(name)


def _title(foot: xr.DataArray, simulation: Any, lag: Any, time: Any, how: str) -> str:
    if "simulation" in foot.dims:
        ids = _select(foot, simulation, None, None)["simulation"].values
        head = str(ids[0]) if len(ids) == 1 else f"{how} of {len(ids)} simulations"
    else:
        head = str(foot.attrs.get("receptor_sim_id", "footprint"))
    if lag is None and time is None:
        return f"{head}, all layers"
    parts = []
    if lag is not None:
        parts.append(f"lag {lag.start}..{lag.stop} h" if isinstance(lag, slice) else f"lag {lag} h")
    if time is not None:
        parts.append(
            f"time {time.start}..{time.stop}" if isinstance(time, slice) else f"time {time}"
        )
    return f"{head}, " + ", ".join(parts)
