"""R-STILT's early-time sub-minute interpolation of particle tracks (§1.3).

Near the receptor, particles may cross more than a grid cell per one-minute
output step, which would leave a trail of isolated cells. R-STILT then inserts
positions every 0.1 min to 10 min, every 0.2 min to 20 min and every 0.5 min to
100 min, interpolated linearly between a particle's output rows, and rescales
``foot`` so each of the three windows keeps its total.
"""

from __future__ import annotations

import warnings

import numpy as np

from .kernels import early_step_medians

# Interpolation schedule in tenths of a minute: 0-10 by 0.1, 10.2-20 by 0.2 and
# 20.5-100 by 0.5 (311 times). Integer tenths keep whole minutes exact, so a
# scheduled time equal to an output row's time joins it instead of duplicating it.
_SCHEDULE_TENTHS = np.concatenate(
    [np.arange(0, 101), np.arange(102, 201, 2), np.arange(205, 1001, 5)]
)
# Windows lo < |time| <= hi (minutes) whose foot totals are preserved.
_WINDOWS = ((-np.inf, 10.0), (10.0, 20.0), (20.0, 100.0))
_EARLY_MINUTES = 100


def needs_interpolation(
    pid: np.ndarray, time: np.ndarray, lon: np.ndarray, lat: np.ndarray, xres: float, yres: float
) -> bool:
    """Whether particles move more than a cell per step in their first 100 minutes.

    Per particle, take the median of ``|diff(lon)|`` and of ``|diff(lat)|`` over
    its rows with ``|time| < 100`` in table order; interpolate when the median
    over particles exceeds ``xres`` or ``yres``. The comparison is in degrees
    whatever the grid, so it effectively never fires on projected (metre) grids,
    as in R-STILT.
    """
    n_particles = int(pid.max()) + 1 if pid.size else 0
    med_x, med_y = np.empty(n_particles), np.empty(n_particles)
    early_step_medians(pid, lon, lat, n_particles, _EARLY_MINUTES, time, med_x, med_y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: no particle has 2 steps
        dx, dy = np.nanmedian(med_x), np.nanmedian(med_y)
    return bool(dx > xres or dy > yres)


def interpolate_early(
    pid: np.ndarray,
    time: np.ndarray,
    lon: np.ndarray,
    lat: np.ndarray,
    foot: np.ndarray,
    time_sign: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Insert the scheduled sub-minute rows and rescale ``foot`` per window.

    Scheduled times are joined onto every particle; those between a particle's
    first and last output row get ``lon``, ``lat`` and ``foot`` interpolated
    linearly in time (R's ``approx``), the others are dropped (no
    extrapolation, so times before the first row at -1 min vanish). Times are
    rounded to 0.1 min, then ``foot`` in each window of ``|time|`` ([0, 10],
    (10, 20], (20, 100]) is scaled to the window's total before interpolation.
    Rows with a missing value are dropped, as R's ``na.omit`` drops them.

    Returns
    -------
    (pid, time, lon, lat, foot) : tuple of numpy.ndarray
        The new table, ordered by particle and ascending time.
    """
    abs_time = np.abs(time)
    totals = [np.nansum(foot[(abs_time > lo) & (abs_time <= hi)]) for lo, hi in _WINDOWS]

    schedule = _SCHEDULE_TENTHS / 10.0 * time_sign
    n_particles = int(pid.max()) + 1
    first = np.full(n_particles, np.inf)
    last = np.full(n_particles, -np.inf)
    np.minimum.at(first, pid, time)
    np.maximum.at(last, pid, time)
    inside = (schedule >= first[:, None]) & (schedule <= last[:, None])
    new_pid, which = np.nonzero(inside)

    all_pid = np.concatenate([pid, new_pid])
    all_time = np.concatenate([time, schedule[which]])
    inserted = np.concatenate([np.zeros(pid.size, bool), np.ones(new_pid.size, bool)])
    # Original rows sort before an inserted row at the same (particle, time),
    # which is then a join match, not a new row.
    order = np.lexsort((inserted, all_time, all_pid))
    all_pid, all_time, inserted = all_pid[order], all_time[order], inserted[order]
    source = order  # index into the original arrays for original rows
    duplicate = np.zeros(order.size, dtype=bool)
    duplicate[1:] = inserted[1:] & (all_pid[1:] == all_pid[:-1]) & (all_time[1:] == all_time[:-1])
    keep = ~duplicate
    all_pid, all_time, inserted, source = (a[keep] for a in (all_pid, all_time, inserted, source))

    # Nearest original row before and after each position (same particle is
    # guaranteed: inserted times lie within the particle's own time range).
    positions = np.arange(all_pid.size)
    below = np.maximum.accumulate(np.where(inserted, -1, positions))
    above = np.minimum.accumulate(np.where(inserted, all_pid.size, positions)[::-1])[::-1]
    lo_src, hi_src = source[below[inserted]], source[above[inserted]]
    t_lo, t_hi = time[lo_src], time[hi_src]
    fraction = (all_time[inserted] - t_lo) / (t_hi - t_lo)

    def column(values: np.ndarray) -> np.ndarray:
        out = np.empty(all_pid.size, dtype=np.float64)
        out[~inserted] = values[source[~inserted]]
        lo, hi = values[lo_src], values[hi_src]
        out[inserted] = lo + (hi - lo) * fraction
        return out

    new_lon, new_lat, new_foot = column(lon), column(lat), column(foot)
    new_time = np.round(all_time, 1)
    complete = ~(np.isnan(new_time) | np.isnan(new_lon) | np.isnan(new_lat) | np.isnan(new_foot))
    all_pid, new_time, new_lon, new_lat, new_foot = (
        a[complete] for a in (all_pid, new_time, new_lon, new_lat, new_foot)
    )

    abs_time = np.abs(new_time)
    for (lo, hi), total in zip(_WINDOWS, totals, strict=True):
        window = (abs_time > lo) & (abs_time <= hi)
        current = new_foot[window].sum()
        if current > 0:
            new_foot[window] = new_foot[window] / (current / total)
    return all_pid, new_time, new_lon, new_lat, new_foot
