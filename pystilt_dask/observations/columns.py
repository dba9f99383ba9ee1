"""The column a retrieval would report for modelled air (X-STILT, Wu et al. 2018, GMD 11, 4843)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def modelled_column(
    enhancement: float,
    background: float,
    *,
    ak: ArrayLike | None = None,
    pressure_weight: ArrayLike | None = None,
    prior: ArrayLike | None = None,
) -> float:
    """``enhancement + background + Σ_l w_l (1 − A_l) x_prior,l``.

    The enhancement and background must already carry the kernel and pressure
    weights (a footprint with the ``pressure_weighting`` and ``averaging_kernel``
    transforms); the sum adds the prior where the retrieval is not sensitive.

    Parameters
    ----------
    enhancement : float
        Weighted column enhancement, in the units of ``prior`` (a flux in
        µmol m⁻² s⁻¹ through a footprint in ppm per µmol m⁻² s⁻¹ gives ppm).
    background : float
        Weighted background over the receptor's levels (add the field above the
        receptor's top first).
    ak : array-like, optional
        Column averaging kernel on the retrieval's levels (the soundings' ``ak``).
    pressure_weight : array-like, optional
        Each level's share of the column's dry air, summing to 1; for
        ``pressure_levels`` ``p`` from the surface, ``-np.diff(p) / (p[0] - p[-1])``.
    prior : array-like, optional
        Prior profile on the same levels (the soundings' ``apriori``).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If only some of ``ak``, ``pressure_weight`` and ``prior`` are given, or
        their lengths differ.
    """
    given = [x is not None for x in (ak, pressure_weight, prior)]
    total = float(enhancement) + float(background)
    if not any(given):
        return total
    if not all(given):
        raise ValueError("modelled_column needs all of ak, pressure_weight and prior, or none")
    a, w, x = (np.asarray(v, dtype=np.float64).ravel() for v in (ak, pressure_weight, prior))
    if not a.size == w.size == x.size:
        raise ValueError(
            f"ak ({a.size}), pressure_weight ({w.size}) and prior ({x.size}) differ in length"
        )
    return total + float(np.sum(w * (1.0 - a) * x))
