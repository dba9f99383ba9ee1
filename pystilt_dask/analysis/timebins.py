"""Footprint layers on an absolute time axis.

A stored footprint's layers are relative to each simulation's receptor time
(``lag``); ``time(simulation, lag)`` is the absolute start of each hourly layer.
A layer belongs to the time bin (or flux step) its start falls in: bins are
closed on the left, as in PYSTILT, so a layer starting 12:30 meets the 12:00 step
of an hourly flux. Only the small ``time`` coordinate is read, never footprints.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_HOUR = np.timedelta64(1, "h")


def bin_edges(time_bins: pd.IntervalIndex) -> tuple[np.ndarray, np.ndarray]:
    """Left and right edges (``datetime64[ns]``) of sorted, disjoint, left-closed bins.

    Raises
    ------
    TypeError
        If ``time_bins`` is not a :class:`pandas.IntervalIndex`.
    ValueError
        If the bins are not closed on the left, overlap or are not sorted.
    """
    if not isinstance(time_bins, pd.IntervalIndex):
        raise TypeError(
            f"time_bins must be a pandas.IntervalIndex, not {type(time_bins).__name__} "
            "(e.g. pd.interval_range(start, end, freq='6h', closed='left'))"
        )
    if time_bins.closed != "left":
        raise ValueError(
            f"time_bins must be closed on the left, not {time_bins.closed!r}: a layer "
            "belongs to the bin its start falls in"
        )
    left = _naive_ns(time_bins.left)
    right = _naive_ns(time_bins.right)
    if len(left) == 0:
        raise ValueError("time_bins is empty")
    if (np.diff(left) <= np.timedelta64(0)).any() or (left[1:] < right[:-1]).any():
        raise ValueError("time_bins must be sorted and must not overlap")
    return left, right


def flux_steps(time: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges of a flux's time steps: each starts at its ``time`` and runs to the next.

    The last step is as long as the one before it.

    Raises
    ------
    ValueError
        With fewer than two steps, steps not increasing, or steps shorter than an hour.
    """
    start = _naive_ns(time)
    if start.size < 2:
        raise ValueError(
            "a flux with a time dimension needs at least two time steps (their spacing "
            "is the step length); drop the time dimension for a constant flux"
        )
    length = np.diff(start)
    if (length <= np.timedelta64(0)).any():
        raise ValueError("the flux's time coordinate must increase")
    if (length < _HOUR).any():
        raise ValueError(
            "flux time steps must be 1 hour or longer (footprint layers are hourly); "
            "average the flux to hourly steps first"
        )
    return start, np.append(start[1:], start[-1] + length[-1])


def layer_bins(layer_start: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The bin each layer start falls in (``int64``, shaped like ``layer_start``), -1 if none."""
    start = _naive_ns(layer_start)
    index = np.searchsorted(left, start, side="right") - 1
    inside = (index >= 0) & (start < right[np.clip(index, 0, len(left) - 1)])
    return np.where(inside, index, -1).astype(np.int64)


def _naive_ns(values) -> np.ndarray:
    """Times as naive UTC ``datetime64[ns]`` (a timezone-aware index is converted)."""
    if isinstance(values, pd.DatetimeIndex):
        if values.tz is not None:
            values = values.tz_convert("UTC").tz_localize(None)
        return values.to_numpy("datetime64[ns]")
    return np.asarray(values).astype("datetime64[ns]")
