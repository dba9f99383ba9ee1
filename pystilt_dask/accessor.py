"""The ``foot.stilt`` accessor: maps and analysis of footprints, on any DataArray.

Importing :mod:`pystilt_dask` registers it. Drawing is in :mod:`pystilt_dask.plot`
(matplotlib is imported only to draw); the analysis in :mod:`pystilt_dask.analysis`
(lazy dask reductions straight from the store), imported only when used:
``dask.array`` and ``scipy`` would add half a second to the start of every
``stilt-dask`` command and worker::

    foot = model.footprints["default"].load()  # lazy (simulation, lag, lat, lon)
    foot.stilt.plot(simulation=sim_id)  # one simulation, summed over lag
    enhancement = foot.stilt.convolve(flux)  # lazy (simulation,), ppm
    H = foot.stilt.jacobian(flux_grid, time_bins)  # lazy (simulation, state)

PYSTILT (``import stilt``) registers an accessor of the same name. Imported
before pystilt_dask, its accessor is replaced by ours, which says so once
(:class:`StiltAccessorWarning`) and answers the names it lacks with PYSTILT's
(``foot.stilt.receptor``, ``.config``, ``.grid``, ``.to_netcdf``…), so that
PYSTILT's own code keeps working. Imported after pystilt_dask, PYSTILT's
registration replaces ours (xarray warns, ``AccessorRegistrationWarning``) and
``foot.stilt`` is PYSTILT's alone; :func:`register` takes the name back.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence
from typing import Any, Literal

import pandas as pd
import xarray as xr

__all__ = ["FootprintAccessor", "StiltAccessorWarning", "register"]


class StiltAccessorWarning(UserWarning):
    """pystilt_dask's ``DataArray.stilt`` accessor replaced another package's (PYSTILT's).

    Filter it by its message before pystilt_dask is imported (it is emitted then)::

        warnings.filterwarnings("ignore", message="pystilt_dask's DataArray.stilt")
    """


#: The accessor ours replaced (PYSTILT's), which answers the names ours lacks.
_replaced: type | None = None


class FootprintAccessor:
    """STILT helpers on a footprint :class:`~xarray.DataArray`: ``foot.stilt``.

    Where it replaced another package's ``stilt`` accessor (PYSTILT's), the
    names it lacks are that accessor's, on the same array; where both have a
    name (``plot``, ``enhancement``, ``aggregate`` for PYSTILT's), this one
    answers. See the module's notes for the import order.

    The maps work on the lazy ``foot(simulation, lag, lat, lon)`` of
    :meth:`pystilt_dask.model.Footprint.load` (``y, x`` on projected grids) and
    on the ``foot(time, lat, lon)`` of :func:`pystilt_dask.calc_footprint`; the
    analysis (:meth:`convolve`, :meth:`aggregate`, :meth:`jacobian`) on the
    former, whose ``time(simulation, lag)`` places each layer in absolute time.
    """

    def __init__(self, obj: xr.DataArray) -> None:
        self._obj = obj

    def __getattr__(self, name: str) -> Any:
        # Only names this class lacks get here: the replaced accessor's, if any.
        if _replaced is None or name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        theirs = self.__dict__.get("_theirs")
        if theirs is None:
            # One per array, as xarray keeps one accessor per array: what the
            # replaced accessor caches (PYSTILT parses attributes once) stays cached.
            theirs = self.__dict__["_theirs"] = _replaced(self._obj)
        return getattr(theirs, name)

    def to_map(
        self,
        simulation: Hashable | Sequence[Hashable] | int | None = None,
        lag: int | slice | Sequence[int] | None = None,
        time: Any = None,
        how: Literal["sum", "mean"] = "sum",
    ) -> xr.DataArray:
        """Reduce the footprint to one 2-D map, lazily: :func:`pystilt_dask.plot.to_map`."""
        from .plot import to_map

        return to_map(self._obj, simulation, lag, time, how)

    def plot(self, **kwargs: Any) -> Any:
        """Draw a map of the footprint: :func:`pystilt_dask.plot.footprint_map`.

        Examples
        --------
        >>> ax = foot.stilt.plot(simulation=foot.simulation.values[0])  # doctest: +SKIP
        >>> ax = foot.stilt.plot(lag=slice(-3, -1), how="mean")  # doctest: +SKIP
        """
        from .plot import footprint_map

        return footprint_map(self._obj, **kwargs)

    def convolve(self, flux: xr.DataArray) -> xr.DataArray:
        """The modelled enhancement of every simulation for a flux, lazily.

        Each simulation's hourly layers are placed in absolute time by its
        ``time(simulation, lag)`` coordinate (receptor time + ``lag`` hours, the
        start of the layer), and each meets the flux time step its start falls
        in (steps closed on the left). Nothing is computed until ``.compute()``.

        Parameters
        ----------
        flux : xarray.DataArray
            Surface flux in µmol m⁻² s⁻¹, ``(time, lat, lon)`` or ``(lat, lon)``
            (``y, x`` for a projected footprint; no time dimension: constant in
            time). ``time`` holds the start of each step (UTC), 1 hour or longer;
            a step lasts until the next, the last as long as the one before. On
            the footprint's grid, or on any rectilinear grid with increasing or
            decreasing 1-D coordinates, regridded conservatively: each footprint
            cell meets the area-weighted mean of the flux cells it overlaps
            (areas on the sphere for ``lat, lon``). Footprint cells outside the
            flux grid meet no flux. May be dask-backed (it stays lazy); the
            steps the footprints meet are read whole by every task.

        Returns
        -------
        xarray.DataArray
            ``enhancement(simulation)`` in ppm, lazy, with the receptor
            coordinates; NaN for simulations not computed yet.

        Raises
        ------
        ValueError
            If the flux's dimensions do not match the footprint's grid, its
            steps are shorter than an hour, or they do not cover every layer.

        Examples
        --------
        >>> enhancement = foot.stilt.convolve(flux).compute()  # doctest: +SKIP
        """
        from . import analysis

        return analysis.convolve(self._obj, flux)

    def enhancement(self, flux: xr.DataArray) -> xr.DataArray:
        """Same as :meth:`convolve` (PYSTILT's name)."""
        return self.convolve(flux)

    def aggregate(
        self,
        target: Any = None,
        time_bins: pd.IntervalIndex | None = None,
    ) -> xr.DataArray:
        """Every footprint summed onto coarser cells, polygons or zones and time bins, lazily.

        Footprints are extensive per cell, so each footprint cell is split among
        the targets it overlaps in proportion to area and summed; totals over
        targets and bins are conserved (up to what lies outside the targets or
        the bins, which is dropped). Grid cells that are unions of footprint
        cells take whole footprint cells. The weights (the fraction of each
        footprint cell inside each target) are built once per grid and target
        and cached.

        Parameters
        ----------
        target : optional
            What to sum onto (default: the footprint's own grid):

            - a rectilinear grid: anything with 1-D coordinates of cell centres
              named like the footprint's (``lat, lon`` or ``y, x``), e.g. a
              flux or ``xr.Dataset(coords=...)``; cell edges are half-way
              between centres, areas on the sphere for ``lat, lon``;
            - polygons: a :class:`geopandas.GeoDataFrame` or
              :class:`~geopandas.GeoSeries` (counties, districts,
              :func:`~pystilt_dask.analysis.h3_cells`,
              :func:`~pystilt_dask.analysis.windows`), indexed by target id, in
              any CRS (reprojected onto the footprint grid's);
            - zones: a DataArray of labels on the footprint grid or another
              rectilinear grid with its coordinates; integers or strings (or
              floats with CF ``flag_values``), NaN or None in no zone.

            Polygon and zone areas are measured in the footprint grid's own
            coordinates (planar in degrees on ``lat, lon``), as PYSTILT does.
        time_bins : pandas.IntervalIndex, optional
            Sorted, disjoint time bins closed on the left (e.g.
            ``pd.interval_range(start, end, freq="6h", closed="left")``); a
            layer belongs to the bin its start falls in. Default: one bin
            holding every layer.

        Returns
        -------
        xarray.DataArray
            Lazy, in the footprint's units; NaN for simulations not computed
            yet. On a grid ``foot(simulation, time, lat, lon)`` (``time`` each
            bin's start, ``time_end`` its excluded end); on polygons or zones
            ``foot(simulation, time_bin, <target>)`` (``time_bin``,
            ``time_bin_end``), the target dimension named after the index (the
            labels' name for zones; ``target`` when unnamed), the ids its
            coordinate.

        Raises
        ------
        ValueError
            If the grid lacks the footprint's 1-D coordinates, targets are not
            polygons or repeat an id, or the bins are not sorted, disjoint and
            closed on the left.
        TypeError
            If ``time_bins`` is not a :class:`pandas.IntervalIndex`.

        Examples
        --------
        >>> counties = geopandas.read_file("counties.shp").set_index("GEOID")  # doctest: +SKIP
        >>> agg = foot.stilt.aggregate(counties, bins)  # doctest: +SKIP
        """
        from . import analysis

        return analysis.aggregate(self._obj, target, time_bins)

    def jacobian(
        self,
        target: Any = None,
        time_bins: pd.IntervalIndex | None = None,
        sparse: bool = False,
    ) -> Any:
        """The Jacobian H of the enhancements with respect to a flux on ``target``, lazily.

        :meth:`aggregate` as a 2-D matrix: ``H @ x`` is the enhancement of the
        flux ``x`` on the targets and ``time_bins``, flattened in state order
        (time bin, then target: ``y`` then ``x`` on a grid).

        Parameters
        ----------
        target, time_bins
            As for :meth:`aggregate`.
        sparse : bool, default False
            Return a :class:`~pystilt_dask.analysis.SparseJacobian`: blocks of
            simulations as ``scipy.sparse`` matrices, never dense, with lazy
            ``H @ x`` and ``H.T @ y``, written in parallel with
            ``H.to_parquet(url)``. For many observations or state elements.

        Returns
        -------
        xarray.DataArray or SparseJacobian
            Dense: ``H(simulation, state)`` backed by a 2-D dask array (blocks of
            simulations, every state element), so ``H.to_dataset().to_zarr(url)``
            writes it without holding it in memory; its state elements labelled
            by ``state_time`` and ``state_lat``, ``state_lon`` (grids) or
            ``state_<target>`` (polygons, zones).
        """
        from . import analysis

        return analysis.jacobian(self._obj, target, time_bins, sparse=sparse)


def register() -> None:
    """Register (again) :class:`FootprintAccessor` as ``DataArray.stilt``.

    Done when pystilt_dask is imported; call it after importing PYSTILT's ``stilt``
    package, whose own ``stilt`` accessor replaces ours. An accessor of another
    package found in its place is kept to answer the names ours lacks.

    Warns
    -----
    StiltAccessorWarning
        The first time it replaces a given package's accessor, naming what still
        answers through ours and what ours shadows.
    """
    global _replaced
    current = getattr(xr.DataArray, "stilt", None)  # the accessor class, when registered
    if isinstance(current, type) and current not in (FootprintAccessor, _replaced):
        _replaced = current
        warnings.warn(_replacement_note(current), StiltAccessorWarning, stacklevel=2)
    with warnings.catch_warnings():
        # Replacing PYSTILT's accessor (or our own, again) is the point here.
        warnings.simplefilter("ignore", xr.core.extensions.AccessorRegistrationWarning)
        xr.register_dataarray_accessor("stilt")(FootprintAccessor)


def _replacement_note(theirs: type) -> str:
    names = {name for name in dir(theirs) if not name.startswith("_")}
    ours = {name for name in dir(FootprintAccessor) if not name.startswith("_")}
    where = f"{theirs.__module__}.{theirs.__qualname__}"
    return (
        f"pystilt_dask's DataArray.stilt accessor replaces {where}: its "
        f"{', '.join(sorted(names - ours)) or 'nothing'} still answer through foot.stilt; "
        f"for its own {', '.join(sorted(names & ours)) or 'nothing'} use {where}(foot)"
    )


register()
