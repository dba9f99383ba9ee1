"""X-STILT column weighting: each particle's share of a column, from its release.

A column footprint is a sum over the particles released through the column.
X-STILT weights each by the air mass its release height stands for (pressure
weighting) and by the retrieval's sensitivity there (the averaging kernel).
These functions compute the weights per row of an R-STILT particle table
(``indx``, ``time``, ``zagl``, ``pres``); :mod:`.transforms` applies them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import ConfigError


def first_rows(particles: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each particle's row nearest the release, and every row's particle number.

    Returns
    -------
    rows : numpy.ndarray
        Position of each particle's row with the smallest ``|time|`` (the first
        such row on ties), particles in ascending ``indx``.
    codes : numpy.ndarray
        For every row, the position of its particle in ``rows``.
    """
    indx = particles["indx"].to_numpy()
    order = np.argsort(np.abs(particles["time"].to_numpy(dtype=np.float64)), kind="stable")
    ids, first = np.unique(indx[order], return_index=True)
    return order[first], np.searchsorted(ids, indx)


def release_values(particles: pd.DataFrame, column: str) -> np.ndarray:
    """Every row's value of ``column`` at its particle's release (the row nearest it).

    Pressure, for example, changes along a trajectory; a column weight is decided
    by where the particle started.

    Raises
    ------
    ConfigError
        If the table has no such column (``hysplit.varsiwant`` lacks it).
    """
    if column not in particles.columns:
        raise ConfigError(f"particle table has no {column!r} column (add it to hysplit.varsiwant)")
    rows, codes = first_rows(particles)
    return particles[column].to_numpy(dtype=np.float64)[rows][codes]


def pressure_weights(
    particles: pd.DataFrame, release: np.ndarray, surface_pressure: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's release pressure and X-STILT pressure weight.

    ``ln p = b + a z`` is fitted to the particles' first ``(zagl, pres)``, which
    smooths the turbulence of the first time step and gives the surface pressure
    ``exp(b)`` unless one is given. Each distinct release height stands for a
    slab: its edges lie halfway between neighbouring release pressures, the
    ground closes the bottom one and the top one reaches as far above its
    release as below. A slab's weight ``Δp / p_sfc`` is shared evenly by the
    particles released in it, so the weights sum to ``(p_sfc - p_top) / p_sfc``.

    Parameters
    ----------
    particles : pandas.DataFrame
        Particle table with ``indx``, ``time``, ``zagl`` (m) and ``pres`` (hPa).
    release : numpy.ndarray
        Release height of every row, m above ground
        (:func:`pystilt_dask.nearfield.release_heights`).
    surface_pressure : float, optional
        Pressure at the bottom of the column, hPa.

    Returns
    -------
    xpres, pwf : numpy.ndarray
        Per row: the particle's release pressure (hPa) and its weight.

    Raises
    ------
    ConfigError
        If a column is missing or the particles share one release height (the
        transform is configured for a receptor that is not a column).
    ValueError
        If pressure does not fall with height.
    """
    for column in ("pres", "zagl"):
        if column not in particles.columns:
            raise ConfigError(f"pressure_weighting needs the particle variable {column!r}")
    rows, codes = first_rows(particles)
    pres = particles["pres"].to_numpy(dtype=np.float64)[rows]
    zagl = particles["zagl"].to_numpy(dtype=np.float64)[rows]
    z_release = np.asarray(release, dtype=np.float64)[rows]
    heights, level = np.unique(z_release, return_inverse=True)
    if heights.size < 2 or np.unique(zagl).size < 2:
        raise ConfigError(
            "pressure_weighting needs particles released over a range of heights "
            "(a column or multipoint receptor)"
        )
    slope, intercept = np.polyfit(zagl, np.log(pres), 1)
    if slope >= 0:
        raise ValueError("pressure_weighting: the particles' pressure does not fall with height")
    p_sfc = float(surface_pressure) if surface_pressure is not None else float(np.exp(intercept))
    xpres = p_sfc * np.exp(slope * z_release)
    centres = p_sfc * np.exp(slope * heights)
    mids = (centres[:-1] + centres[1:]) / 2.0
    lower = np.concatenate(([p_sfc], mids))
    upper = np.concatenate((mids, [2.0 * centres[-1] - mids[-1]]))
    slab = (lower - upper) / p_sfc
    pwf = slab[level] / np.bincount(level)[level]
    return xpres[codes], pwf[codes]


def kernel_weights(coordinate: np.ndarray, levels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The averaging kernel at each coordinate: linear between levels, constant outside."""
    order = np.argsort(levels, kind="stable")
    return np.interp(coordinate, levels[order], values[order])
