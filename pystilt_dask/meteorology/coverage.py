"""Check from ARL headers that met files cover a run, before HYSPLIT runs.

HYSPLIT stops silently (exit 0, "Complete Hysplit") when the meteorology runs
out, and truncated particle tables look like valid results, so coverage in time
and space is verified here first.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import arlmet
import numpy as np
import pandas as pd

from ..errors import MeteorologyError

#: Grid cells HYSPLIT needs between a release point and the met grid's edge.
EDGE = 2
# Worker threads that start together would otherwise each parse the same headers.
_READ_LOCK = threading.Lock()


@dataclass(frozen=True)
class MetFileInfo:
    """What the header of one ARL file says."""

    path: Path
    times: tuple[pd.Timestamp, ...]
    grid: arlmet.Grid


def read_info(path: Path) -> MetFileInfo:
    """Read (and cache per path, size and mtime) the header facts of one ARL file.

    Raises
    ------
    MeteorologyError
        When the file is not readable ARL or arlmet finds damage in it.
    """
    stat = path.stat()
    with _READ_LOCK:
        return _read_info(path, stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=512)
def _read_info(path: Path, size: int, mtime_ns: int) -> MetFileInfo:
    try:
        with arlmet.File(path) as met:
            problems = met.check()
            info = MetFileInfo(path, tuple(met.times), met.grid)
    except Exception as exc:  # arlmet raises several types for a bad file
        raise MeteorologyError(f"met file {path} is not readable ARL: {exc}") from None
    if problems:
        raise MeteorologyError(f"met file {path} is damaged: {problems[0]}")
    return info


def check_coverage(
    files: Sequence[Path],
    window: tuple[pd.Timestamp, pd.Timestamp],
    points: Iterable[tuple[float, float, float]],
    name: str = "met",
) -> None:
    """Verify that ``files`` hold every met time a run needs, around every release point.

    Parameters
    ----------
    files : sequence of Path
        The met files of the run.
    window : (Timestamp, Timestamp)
        Earliest and latest instants the run touches.
    points : iterable of (lat, lon, height)
        Release points.
    name : str
        Name of the met archive, for messages.

    Raises
    ------
    MeteorologyError
        Naming the missing met times, or the point outside the met domain.
    """
    infos = [read_info(path) for path in files]
    times = sorted({t for info in infos for t in info.times})
    step = min(np.diff(times)) if len(times) > 1 else pd.Timedelta(hours=1)
    first, last = window
    needed = pd.date_range(first.floor(step), last.ceil(step), freq=step)
    missing = needed.difference(pd.DatetimeIndex(times))
    if len(missing):
        shown = ", ".join(t.strftime("%Y-%m-%d %H:%M") for t in missing[:6])
        more = f" and {len(missing) - 6} more" if len(missing) > 6 else ""
        raise MeteorologyError(
            f"met {name!r} does not cover the run {first:%Y-%m-%d %H:%M}–{last:%Y-%m-%d %H:%M}: "
            f"no data for {shown}{more}"
        )
    for lat, lon, _ in points:
        for info in infos:
            x, y = info.grid.fractional_indices(lon, lat)
            nx, ny = info.grid.nx, info.grid.ny
            # HYSPLIT refuses release points within two cells of the grid edge
            # ("all source points off all meteo grids"); measured on the shared HRRR crop.
            if not (EDGE <= x <= nx - 1 - EDGE and EDGE <= y <= ny - 1 - EDGE):
                raise MeteorologyError(
                    f"receptor ({lon}, {lat}) is outside the domain of met {name!r}, or within "
                    f"{EDGE} cells of its edge ({info.path.name}: {nx}×{ny} grid)"
                )
