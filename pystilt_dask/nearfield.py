"""Release heights and the hyper-near-field plume dilution correction (``hnf_plume``).

Close to the receptor the plume from the release point is thinner than the
``veght`` mixing depth HYSPLIT divides by, so ``foot`` is recomputed with a
plume depth that grows with the turbulence each particle meets, following
R-STILT's ``calc_plume_dilution``: per row

    sigma = samt * sqrt(2) * sigw * sqrt(tlgr*tau + tlgr**2 * exp(-tau/tlgr) - 1),  tau = 60|time|

(R-STILT's "- 1", not Taylor's "- tlgr**2"), the plume depth is the release
height plus the running sum of sigma along the particle's track, and where it is
below the mixing depth ``foot = 0.02897 * samt * 60 / (plume * dens)``.

Two deliberate departures from R-STILT, both as HYSPLIT and PYSTILT do:
``veght > 1`` is a depth in metres (R multiplies it by ``mlht``, uataq/stilt#142),
and the running sum walks outward from the release (by ``|time|``) in forward
runs too (R sums from the far end there). Backward runs are unaffected.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numba import njit

from .receptors import ColumnReceptor, MultiPointReceptor, PointReceptor

#: Molar mass of dry air, kg/mol (the constant HYSPLIT-STILT and R-STILT use).
MOLAR_MASS_AIR = 0.02897


@njit(nogil=True, cache=True)
def _dilute(indx, elapsed_s, samt, sigw, tlgr, mlht, dens, release, veght, foot, out):
    """Write hnf-corrected ``foot`` into ``out``, walking rows in the given order.

    Each particle's rows must come in order of elapsed time (HYSPLIT writes them
    so); the plume spread is summed per particle. The operations keep R-STILT's
    evaluation order, so results match it bit for bit. Returns False (and stops)
    when a particle's elapsed time goes backwards.
    """
    n_particles = int(indx.max()) + 1 if indx.size else 0
    spread = np.zeros(n_particles)
    last = np.full(n_particles, -1.0)
    for i in range(indx.size):
        p = int(indx[i])
        tau = elapsed_s[i]
        if tau < last[p]:
            return False
        last[p] = tau
        t = tlgr[i]
        growth = np.sqrt(t * tau + t * t * np.exp(-tau / t) - 1.0)
        spread[p] += samt[i] * np.sqrt(2.0) * sigw[i] * growth
        plume = release[i] + spread[p]
        depth = veght if veght > 1.0 else veght * mlht[i]
        if plume < depth:
            out[i] = MOLAR_MASS_AIR / (plume * dens[i]) * samt[i] * 60.0
        else:
            out[i] = foot[i]
    return True


def release_heights(particles: pd.DataFrame, receptor) -> np.ndarray:
    """Return each row's release height (m above ground).

    Point: the receptor altitude. Column: the centre of the particle's slab,
    ``(indx - 0.5) * (top - bottom) / numpar + bottom`` with ``numpar = max(indx)``
    (R-STILT's ``xhgt``). Multipoint: the altitude of the particle's release point;
    HYSPLIT numbers particles in equal consecutive blocks, one per point in order
    (checked against the particles' first positions in ``tests/test_trajectory.py``).
    """
    if isinstance(receptor, PointReceptor):
        return np.full(len(particles), receptor.altitude)
    indx = particles["indx"].to_numpy()
    if isinstance(receptor, ColumnReceptor):
        numpar = indx.max()
        return (indx - 0.5) * (receptor.top - receptor.bottom) / numpar + receptor.bottom
    if isinstance(receptor, MultiPointReceptor):
        # HYSPLIT releases equal, consecutive blocks of indx from each point in order.
        n_points = len(receptor.altitudes)
        point = np.minimum((indx.astype(np.int64) - 1) * n_points // int(indx.max()), n_points - 1)
        return np.asarray(receptor.altitudes)[point]
    raise TypeError(f"unknown receptor type {type(receptor).__name__}")


def apply_hnf_plume(particles: pd.DataFrame, release: np.ndarray, veght: float) -> pd.DataFrame:
    """Return ``particles`` with ``foot`` corrected, the original in ``foot_no_hnf_dilution``.

    Parameters
    ----------
    particles : pandas.DataFrame
        Needs ``time, indx, foot, samt, sigw, tlgr, mlht, dens``.
    release : numpy.ndarray
        Release height of every row (:func:`release_heights`).
    veght : float
        Mixing depth: a fraction of ``mlht`` when <= 1, metres above ground when larger.
    """
    elapsed = np.abs(particles["time"].to_numpy()) * 60.0
    columns = [
        particles[name].to_numpy() for name in ("indx", "samt", "sigw", "tlgr", "mlht", "dens")
    ]
    release = np.asarray(release, dtype=np.float64)
    foot = particles["foot"].to_numpy()
    corrected = np.empty(len(particles))
    if not _dilute(columns[0], elapsed, *columns[1:], release, float(veght), foot, corrected):
        # Not in HYSPLIT's order (e.g. a re-sorted table): walk it sorted by elapsed time.
        order = np.argsort(elapsed, kind="stable")
        moved = [c[order] for c in columns]
        _dilute(moved[0], elapsed[order], *moved[1:], release[order], float(veght), foot[order],
                corrected)  # fmt: skip
        corrected[order] = corrected.copy()
    # Copy-on-write makes this shallow copy cheap; only the new columns are allocated.
    out = particles.copy(deep=False)
    out["foot_no_hnf_dilution"] = foot
    out["foot"] = corrected
    return out
