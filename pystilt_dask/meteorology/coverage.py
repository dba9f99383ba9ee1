"""Check that met files cover a run and are intact, before HYSPLIT runs.

HYSPLIT stops silently (exit 0, "Complete Hysplit") when the meteorology runs
out, and truncated particle tables look like valid results, so coverage in time
and space is verified here first, from the ARL headers. HYSPLIT does not compare
the checksums ARL index records carry, so bytes damaged inside a record's packed
data give a completed but different result; the checksums of the time steps a run
reads are therefore compared here too.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
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
#: Time steps whose checksums are remembered (about 100 bytes each).
CHECKSUM_CACHE_SIZE = 8192
# (path, size, mtime_ns, time) -> None when intact, else the damage found. Filled
# under _READ_LOCK, so each time step of each met file is read once per process.
_CHECKSUMS: OrderedDict[tuple[Path, int, int, pd.Timestamp], str | None] = OrderedDict()


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


def verify_checksums(path: Path, times: Iterable[pd.Timestamp]) -> None:
    """Compare the packed data of ``times`` in one ARL file with its stored checksums.

    Every data record of each time step (``DIF*`` records included) is summed as
    ARL does and compared with the checksum its index record stores. A stored 0
    means none was recorded (NOAA's GDAS and NAM12 do so for forecast fields), so
    such a record cannot be checked and passes. Results are cached per path, size,
    modification time and time step, so repeated runs on the same met pay once.

    Parameters
    ----------
    path : Path
        An ARL file that :func:`read_info` accepts.
    times : iterable of Timestamp
        The time steps to check; all must be in the file.

    Raises
    ------
    MeteorologyError
        Naming the file, the time step, the variable and the level of the first
        record whose packed data does not match its checksum.
    """
    steps = list(dict.fromkeys(times))
    stat = path.stat()
    file_key = (path, stat.st_size, stat.st_mtime_ns)
    with _READ_LOCK:
        found: dict[pd.Timestamp, str | None] = {}
        for time in steps:
            key = (*file_key, time)
            if key in _CHECKSUMS:
                _CHECKSUMS.move_to_end(key)  # recently used last: the oldest is evicted
                found[time] = _CHECKSUMS[key]
        todo = [time for time in steps if time not in found]
        if todo:
            fresh = _checksum_problems(path, todo)
            found.update(fresh)
            for time, problem in fresh.items():
                _CHECKSUMS[(*file_key, time)] = problem
            while len(_CHECKSUMS) > CHECKSUM_CACHE_SIZE:
                _CHECKSUMS.popitem(last=False)
    problem = next((found[time] for time in steps if found[time] is not None), None)
    if problem is not None:
        raise MeteorologyError(f"met file {path} is damaged: {problem}")


def _checksum_problems(path: Path, times: Sequence[pd.Timestamp]) -> dict[pd.Timestamp, str | None]:
    """Check ``times`` of one file; one open for them all, since opening costs a scan."""
    found: dict[pd.Timestamp, str | None] = {}
    try:
        with arlmet.File(path) as met:
            for time in times:
                bad = [
                    record
                    for parent in met[time].records
                    for record in (parent, *parent.diffs)
                    if not record.verify_checksum()
                ]
                found[time] = None
                if bad:
                    more = f" (and {len(bad) - 1} more records)" if len(bad) > 1 else ""
                    found[time] = (
                        f"{time:%Y-%m-%d %H:%M} {bad[0].variable} level {bad[0].level} "
                        f"fails its checksum{more}"
                    )
    except Exception as exc:  # arlmet raises several types for a bad file
        raise MeteorologyError(f"met file {path} is not readable ARL: {exc}") from None
    return found


def check_coverage(
    files: Sequence[Path],
    window: tuple[pd.Timestamp, pd.Timestamp],
    points: Iterable[tuple[float, float, float]],
    name: str = "met",
) -> None:
    """Verify that ``files`` hold every met time a run needs, intact, around every release point.

    The coverage and the domain come from the headers; then the records of the
    time steps the run reads are compared with their checksums
    (:func:`verify_checksums`), only those time steps, since a run reads no others.

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
        Naming the missing met times, the point outside the met domain, or the
        file, time, variable and level whose data fails its checksum.
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
    wanted = set(needed)
    for info in infos:
        verify_checksums(info.path, [t for t in info.times if t in wanted])
