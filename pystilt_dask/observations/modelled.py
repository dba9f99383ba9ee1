"""Modelled observations for a run: one row per sounding or tower measurement, lazily.

A modelled column (Wu et al. 2018, GMD 11, 4843) is

    enhancement + background + Σ_l w_l (1 − A_l) x_prior,l

with the enhancement and background weighted by the footprint's transforms
(``pressure_weighting`` and ``averaging_kernel``: their stored footprints already
carry them) and the last sum, the prior where the retrieval is not sensitive,
from the soundings' kernels (:func:`.modelled_column`). Over a receptor that
stops below the top of the atmosphere, the particles' background covers its
levels only; the field at the sounding adds the rest of the column,
``Σ_l f_l w_l A_l field_l`` with ``f_l`` the part of level ``l``'s layer above
the receptor's top (pressures from heights in the standard atmosphere, as
:func:`.pressure_altitudes` converts).

A tower's modelled value is its enhancement plus its background.

Everything here is lazy: the enhancement is ``foot.stilt.convolve(flux)`` of the
stored footprints, the background :func:`pystilt_dask.background.background`,
and the terms from the soundings are computed in blocks when asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from ..analysis import convolve
from ..background import background
from ..errors import ConfigError
from ..fields import Held, field_axes, sample
from ..receptors import receptor_rows
from .columns import modelled_column
from .placement import GRAVITY, LAPSE_RATE, R_DRY, SEA_LEVEL_TEMPERATURE

if TYPE_CHECKING:
    from ..model import Model

__all__ = ["modelled_columns", "modelled_points"]

#: Soundings per task for the terms computed from the soundings' kernels.
BLOCK = 4096
#: Columns of a table of soundings the terms are computed from.
_LEVEL_COLUMNS = ("ak", "ak_pressure", "apriori")


def modelled_columns(
    model: Model,
    soundings: pd.DataFrame,
    flux: xr.DataArray,
    *,
    receptors: pd.DataFrame,
    background: xr.DataArray | None = None,
    footprint: str | None = None,
) -> xr.Dataset:
    """The modelled column of every sounding, beside the observed one, lazily.

    Parameters
    ----------
    model : Model
        The project the soundings' receptors were registered and run in.
    soundings : pandas.DataFrame
        The soundings (a reader's table, :data:`SOUNDING_SCHEMA`), each with a
        receptor in ``receptors``: ``sounding_id``, ``time``, ``longitude``,
        ``latitude``, ``surface_altitude``, ``surface_pressure``, ``value``, and
        for the prior and the levels above the receptor ``ak``, ``ak_pressure``,
        ``apriori`` with ``pressure_weight`` (OCO) or, for a layer product
        (TROPOMI), ``pressure_levels`` one longer than ``ak``.
    flux : xarray.DataArray
        Surface flux on the footprint's grid, ``(time, lat, lon)`` or ``(lat,
        lon)``, as ``foot.stilt.convolve`` takes it. A footprint in ppm per
        (µmol m⁻² s⁻¹) times a flux in µmol m⁻² s⁻¹ gives ppm; for soundings in
        ppb (TROPOMI CH4) give the flux in nmol m⁻² s⁻¹.
    receptors : pandas.DataFrame
        The receptor table :func:`receptors_from_soundings` returned for these
        soundings (``sim_id``, ``sounding_id``, ``top`` or ``altitude``,
        ``altitude_ref``): it maps each sounding to its simulation.
    background : xarray.DataArray, optional
        A mole-fraction field (CarbonTracker, CAMS, ...) as
        :func:`pystilt_dask.background.background` takes it. Without one the
        result has no background, modelled column or residual.
    footprint : str, optional
        The footprint whose transforms weight the column; default: the
        project's only footprint.

    Returns
    -------
    xarray.Dataset
        Along ``sounding_id`` (the soundings' order), backed by dask: nothing is
        read until computed. Coordinate ``simulation`` (each sounding's
        simulation id); variables ``enhancement``, ``prior``
        (``Σ w (1 − A) x_prior``; 0 without kernels), ``observed`` (``value``)
        and, with a field, ``background_endpoints`` (the particles' background,
        PYSTILT's ``sim.background(field).value``), ``background_above``
        (``Σ f w A field``: the field at the sounding over the part ``f`` of
        each kernel level's layer above the receptor's top; 0 without
        kernels), ``background`` (their sum),
        ``modelled`` (``enhancement + background + prior``) and ``residual``
        (``observed − modelled``). Simulations not run yet give NaN.
        ``soundings.join(result.to_dataframe(), on="sounding_id")`` puts them
        beside the soundings.

    Raises
    ------
    ValueError
        If a sounding has no receptor or several, a simulation is not
        registered in ``model``, a column is missing, the field's vertical
        dimension is neither ``pres`` nor ``zagl``, or the flux does not cover
        the footprints.
    ConfigError
        If ``footprint`` is not configured (or there is not exactly one and
        none is named).
    """
    _require(soundings, ("sounding_id", "time", "longitude", "latitude", "value"), "soundings")
    ids = soundings["sounding_id"].astype(str).to_numpy(dtype=object)
    if len(set(ids)) != len(ids):
        raise ValueError("soundings: sounding_id repeats; give each sounding once")
    sim_of, top_of = _receptor_columns(receptors)
    missing = [i for i in ids if i not in sim_of]
    if missing:
        raise ValueError(
            f"soundings without a receptor in receptors: {_shown(missing)} (pass the "
            "soundings the receptors were made from)"
        )
    sim_ids = np.array([sim_of[i] for i in ids], dtype=object)
    top_agl = np.array([top_of[i] for i in ids], dtype=np.float64)
    kernels = all(c in soundings.columns for c in _LEVEL_COLUMNS)
    if kernels:
        _require(soundings, ("surface_pressure", "surface_altitude"), "soundings")
        top_agl -= np.where(_msl(receptors, ids), soundings["surface_altitude"].to_numpy(), 0.0)
    name = _footprint_name(model, footprint)
    where, chunks = _positions(model, sim_ids), _chunks(len(ids))
    enhancement = _enhancement(model, name, where, flux, chunks)
    held = None
    if background is not None:
        axes = field_axes(background)
        if kernels and axes.vertical not in (None, "pres", "zagl"):
            raise ValueError(
                f"the background field's vertical dimension {axes.vertical!r} cannot be "
                "matched to the kernel levels above the receptor: name it pres (hPa) or zagl (m)"
            )
        held = Held(background)
    prior, above = _level_terms(soundings, top_agl, held, kernels, chunks)
    data: dict[str, Any] = {"enhancement": enhancement, "prior": prior}
    if background is not None:
        endpoints = _background(model, background, name, where, chunks)
        data["background_endpoints"] = endpoints
        data["background_above"] = above
        data["background"] = endpoints + above
        # the sums in modelled_column's order: (enhancement + background) + prior
        data["modelled"] = enhancement + data["background"] + prior
    observed = soundings["value"].to_numpy(dtype=np.float64)
    data["observed"] = da.from_array(observed, chunks=chunks)
    if "modelled" in data:
        data["residual"] = data["observed"] - data["modelled"]
    coords = {"sounding_id": ("sounding_id", ids), "simulation": ("sounding_id", sim_ids)}
    units = _units(soundings)
    return xr.Dataset(
        {k: ("sounding_id", v, _attrs(k, units)) for k, v in data.items()},
        coords=coords,
        attrs={"footprint": name},
    )


def modelled_points(
    model: Model,
    observations: pd.DataFrame,
    flux: xr.DataArray,
    *,
    background: xr.DataArray | None = None,
    footprint: str | None = None,
) -> xr.Dataset:
    """The modelled value of every point observation (towers), beside the observed one, lazily.

    Parameters
    ----------
    model : Model
        The project the observations' receptors were registered and run in.
    observations : pandas.DataFrame
        A receptor table (``time``, ``longitude``, ``latitude``, ``altitude``,
        as :func:`~pystilt_dask.receptors.read_receptors` reads it) with the
        measured mole fraction in ``value``; other columns are ignored. Each
        row's simulation is the receptor its fields make.
    flux : xarray.DataArray
        Surface flux on the footprint's grid, as :func:`modelled_columns` takes it.
    background : xarray.DataArray, optional
        A mole-fraction field sampled at the particles' endpoints
        (:func:`pystilt_dask.background.background`); without one the result
        has no background, modelled value or residual.
    footprint : str, optional
        The footprint to convolve (its transforms also weight the background);
        default: the project's only footprint.

    Returns
    -------
    xarray.Dataset
        Along ``observation`` (the table's index: ``observations.join(
        result.to_dataframe())`` puts them beside the table), backed by dask.
        Coordinate ``simulation``; variables ``enhancement``, ``observed``
        and, with a field, ``background``, ``modelled`` (``enhancement +
        background``) and ``residual`` (``observed − modelled``).

    Raises
    ------
    ValueError
        If ``value`` is missing, a simulation is not registered in ``model``,
        or the flux does not cover the footprints.
    ReceptorError
        Naming a row whose receptor is invalid.
    ConfigError
        If ``footprint`` is not configured.
    """
    _require(observations, ("value",), "observations")
    sim_ids = np.empty(len(observations), dtype=object)
    for rows, receptor in receptor_rows(observations, source="observations"):
        sim_ids[np.asarray(rows) - 1] = receptor.sim_id
    name = _footprint_name(model, footprint)
    where, chunks = _positions(model, sim_ids), _chunks(len(sim_ids))
    enhancement = _enhancement(model, name, where, flux, chunks)
    data: dict[str, Any] = {"enhancement": enhancement}
    if background is not None:
        data["background"] = _background(model, background, name, where, chunks)
        data["modelled"] = enhancement + data["background"]
    data["observed"] = da.from_array(observations["value"].to_numpy(np.float64), chunks=chunks)
    if "modelled" in data:
        data["residual"] = data["observed"] - data["modelled"]
    coords = {
        "observation": ("observation", observations.index.to_numpy()),
        "simulation": ("observation", sim_ids),
    }
    return xr.Dataset(
        {k: ("observation", v, _attrs(k, None)) for k, v in data.items()},
        coords=coords,
        attrs={"footprint": name},
    )


def _chunks(n: int) -> tuple[int, ...]:
    if n == 0:
        raise ValueError("no observations given")
    return tuple(min(BLOCK, n - start) for start in range(0, n, BLOCK))


def _enhancement(
    model: Model, name: str, where: np.ndarray, flux: xr.DataArray, chunks: tuple[int, ...]
) -> da.Array:
    """Each row's enhancement: the stored footprints of its simulation convolved with ``flux``."""
    unique, inverse = np.unique(where, return_inverse=True)
    foot = model.footprints[name].load().isel(simulation=unique)
    # analysis.convolve rather than the accessor, which an import of PYSTILT replaces
    return convolve(foot, flux).data[inverse].rechunk((chunks,))


def _background(
    model: Model, field: xr.DataArray, name: str, where: np.ndarray, chunks: tuple[int, ...]
) -> da.Array:
    """Each row's background at its particles' endpoints (only the batches holding them run)."""
    return background(model, field, name).data[where].rechunk((chunks,))


def _positions(model: Model, sim_ids: np.ndarray) -> np.ndarray:
    """Each id's position among the registered simulations (the order of ``load()``)."""
    registered = pd.Index(model.registry().table["sim_id"].astype(str))
    where = registered.get_indexer(pd.Index(sim_ids.astype(str)))
    if (where < 0).any():
        unknown = sorted(set(sim_ids[where < 0].tolist()))
        raise ValueError(
            f"simulations not registered in {model.location.root}: {_shown(unknown)} "
            "(register the receptors and run them first)"
        )
    return where


def _level_terms(
    soundings: pd.DataFrame,
    top_agl: np.ndarray,
    held: Held | None,
    kernels: bool,
    chunks: tuple[int, ...],
) -> tuple[da.Array, da.Array]:
    """The prior term and the field above the receptor of each sounding, lazily, in blocks."""
    if not kernels:
        zeros = da.zeros(len(soundings), chunks=(chunks,))
        return zeros, zeros
    columns = ["time", "longitude", "latitude", "surface_pressure", "surface_altitude"]
    columns += [
        *_LEVEL_COLUMNS,
        *(c for c in ("pressure_weight", "pressure_levels") if c in soundings),
    ]
    table = soundings[columns].reset_index(drop=True)
    blocks, start = [], 0
    for size in chunks:
        part = table.iloc[start : start + size]
        task = dask.delayed(_block_terms, pure=True)(part, top_agl[start : start + size], held)
        blocks.append(da.from_delayed(task, shape=(2, size), dtype=np.float64))
        start += size
    both = da.concatenate(blocks, axis=1)
    return both[0], both[1]


def _block_terms(part: pd.DataFrame, top_agl: np.ndarray, held: Held | None) -> np.ndarray:
    """``[prior, above]`` of each sounding of ``part`` (``above`` NaN without a field)."""
    n = len(part)
    out = np.full((2, n), np.nan)
    p_top = _top_pressure(
        part["surface_pressure"].to_numpy(np.float64),
        part["surface_altitude"].to_numpy(np.float64),
        top_agl,
    )
    levels, weights = [], []
    for i, row in enumerate(part.itertuples(index=False)):
        ak = np.asarray(row.ak, dtype=np.float64).ravel()
        w = _pressure_weights(row, ak.size)
        out[0, i] = modelled_column(0.0, 0.0, ak=ak, pressure_weight=w, prior=row.apriori)
        p = np.asarray(row.ak_pressure, dtype=np.float64).ravel()
        levels.append(p)
        weights.append(w * ak * _share_above(row, p, p_top[i]))
    if held is None or n == 0:
        return out
    sizes = np.array([p.size for p in levels])
    p, weight = np.concatenate(levels), np.concatenate(weights)
    above = weight != 0
    height = _height_above_ground(
        p,
        np.repeat(part["surface_pressure"].to_numpy(np.float64), sizes),
        np.repeat(part["surface_altitude"].to_numpy(np.float64), sizes),
    )
    points = pd.DataFrame(
        {
            "long": np.repeat(part["longitude"].to_numpy(np.float64), sizes),
            "lati": np.repeat(part["latitude"].to_numpy(np.float64), sizes),
            "time": 0.0,
            "pres": p,
            "zagl": height,
        }
    )[above]
    times = np.repeat(pd.to_datetime(part["time"]).to_numpy("datetime64[ns]"), sizes)[above]
    values = sample(held.field, points, times)
    row = np.repeat(np.arange(n), sizes)[above]
    out[1] = np.bincount(row, weights=weight[above] * values, minlength=n)
    return out


def _share_above(row: Any, p: np.ndarray, p_top: float) -> np.ndarray:
    """The part of each kernel level's layer above pressure ``p_top``.

    A layer product's layers are its ``pressure_levels``; on levels (OCO, GGG)
    a level's layer reaches halfway to its neighbours, and no further than the
    first and last levels.
    """
    edges = getattr(row, "pressure_levels", None)
    edges = None if edges is None or _missing(edges) else np.asarray(edges, np.float64).ravel()
    if edges is not None and edges.size == p.size + 1:
        lower, upper = edges[:-1], edges[1:]
    else:
        middle = (p[:-1] + p[1:]) / 2.0
        lower, upper = np.concatenate((p[:1], middle)), np.concatenate((middle, p[-1:]))
    thickness = lower - upper
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.clip((np.minimum(lower, p_top) - upper) / thickness, 0.0, 1.0)
    return np.where(thickness > 0, share, p < p_top)


def _top_pressure(p_surface: np.ndarray, z_surface: np.ndarray, top_agl: np.ndarray) -> np.ndarray:
    """Pressure ``top_agl`` metres above the surface in the standard atmosphere
    (the inverse of :func:`.pressure_altitudes`)."""
    t_surface = SEA_LEVEL_TEMPERATURE - LAPSE_RATE * z_surface
    ratio = np.clip(1.0 - LAPSE_RATE * np.maximum(top_agl, 0.0) / t_surface, 0.0, None)
    return p_surface * ratio ** (GRAVITY / (R_DRY * LAPSE_RATE))


def _pressure_weights(row: Any, n_levels: int) -> np.ndarray:
    """A sounding's pressure weights on its kernel's levels."""
    weights = getattr(row, "pressure_weight", None)
    if weights is not None and not _missing(weights):
        return np.asarray(weights, dtype=np.float64).ravel()
    edges = getattr(row, "pressure_levels", None)
    if edges is not None and not _missing(edges):
        p = np.asarray(edges, dtype=np.float64).ravel()
        if p.size == n_levels + 1:  # a layer product: each layer's share of the column
            return -np.diff(p) / (p[0] - p[-1])
    raise ValueError(
        "soundings: the prior term needs pressure weights on the kernel's levels; add a "
        "pressure_weight column (for a layer product, pressure_levels one longer than ak)"
    )


def _height_above_ground(p: np.ndarray, p_surface: np.ndarray, z_surface: np.ndarray) -> np.ndarray:
    """Height above ground of pressure ``p`` in the standard atmosphere (as
    :func:`.pressure_altitudes` converts), negative below the surface."""
    t_surface = SEA_LEVEL_TEMPERATURE - LAPSE_RATE * z_surface
    exponent = R_DRY * LAPSE_RATE / GRAVITY
    return t_surface / LAPSE_RATE * (1.0 - (p / p_surface) ** exponent)


def _receptor_columns(receptors: pd.DataFrame) -> tuple[dict[str, str], dict[str, float]]:
    """Each sounding's simulation id and the height of its receptor's top (as the table
    gives it: above ground, or above sea level for ``altitude_ref`` msl)."""
    _require(receptors, ("sim_id", "sounding_id"), "receptors")
    if "top" not in receptors.columns and "altitude" not in receptors.columns:
        raise ValueError("receptors: needs top (columns) or altitude (points along a slant)")
    table = receptors.assign(sounding_id=receptors["sounding_id"].astype(str))
    pairs = table[["sounding_id", "sim_id"]].drop_duplicates()
    repeated = pairs["sounding_id"][pairs["sounding_id"].duplicated()].tolist()
    if repeated:
        raise ValueError(f"receptors: soundings with several simulations: {_shown(repeated)}")
    heights = pd.Series(np.nan, index=table.index)
    for column in ("altitude", "top"):
        if column in table.columns:
            heights = heights.fillna(pd.to_numeric(table[column]))
    tops = heights.groupby(table["sounding_id"]).max()
    return dict(zip(pairs["sounding_id"], pairs["sim_id"], strict=True)), tops.to_dict()


def _msl(receptors: pd.DataFrame, ids: np.ndarray) -> np.ndarray:
    """Whether each sounding's receptor heights are above sea level."""
    if "altitude_ref" not in receptors.columns:
        return np.zeros(len(ids), dtype=bool)
    ref = receptors.groupby(receptors["sounding_id"].astype(str))["altitude_ref"].first()
    return ref.reindex(ids).eq("msl").to_numpy()


def _footprint_name(model: Model, footprint: str | None) -> str:
    names = list(model.config.footprints)
    if footprint is None:
        if len(names) != 1:
            raise ConfigError(
                f"name the footprint to use: the project has {', '.join(names) or 'none'}"
            )
        return names[0]
    if footprint not in names:
        raise ConfigError(f"no footprint named {footprint!r} ({', '.join(names) or 'none'})")
    return footprint


def _require(table: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what}: missing columns {missing}")


def _missing(value: Any) -> bool:
    return np.ndim(value) == 0 and pd.isna(value)


def _shown(values: list, shown: int = 5) -> str:
    head = ", ".join(map(str, values[:shown]))
    return head + (f" and {len(values) - shown} more" if len(values) > shown else "")


def _units(soundings: pd.DataFrame) -> str | None:
    if "units" not in soundings.columns or soundings.empty:
        return None
    units = soundings["units"].dropna().unique()
    return str(units[0]) if len(units) == 1 else None


_LONG_NAMES = {
    "enhancement": "enhancement (footprint, with its transforms, times flux)",
    "prior": "prior where the retrieval is not sensitive, sum of w (1 - A) x_prior",
    "background_endpoints": "background at the particles' endpoints, weighted",
    "background_above": "background field above the receptor, sum of w A x",
    "background": "background",
    "modelled": "modelled value",
    "observed": "observed value",
    "residual": "observed minus modelled",
}


def _attrs(name: str, units: str | None) -> dict[str, str]:
    attrs = {"long_name": _LONG_NAMES[name]}
    if units is not None:
        attrs["units"] = units
    return attrs
