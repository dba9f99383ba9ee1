"""Check that met files cover a run and are intact, before HYSPLIT runs.

HYSPLIT stops silently (exit 0, "Complete Hysplit") when the meteorology runs
out, and truncated particle tables look like valid results, so coverage in time
and space is verified here first, from the ARL headers. HYSPLIT does not compare
the checksums ARL index records carry, so bytes damaged inside a record's packed
data give a completed but different result; the checksums of the time steps a run
reads are therefore compared here too.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path

import arlmet
import pandas as pd

from ..errors import MeteorologyError
from .files import Selection, missing_message, series_of
from .headers import READ_LOCK, MetFileInfo, read_info

__all__ = [
    "EDGE",
    "MetFileInfo",
    "check_coverage",
    "check_selection",
    "inside",
    "read_info",
    "verify_checksums",
]

#: Grid cells HYSPLIT needs between a release point and the met grid's edge.
EDGE = 2
#: Time steps whose checksums are remembered (about 100 bytes each).
CHECKSUM_CACHE_SIZE = 8192
# (path, size, mtime_ns, time) -> None when intact, else the damage found. Filled
# under READ_LOCK, so each time step of each met file is read once per process.
_CHECKSUMS: OrderedDict[tuple[Path, int, int, pd.Timestamp], str | None] = OrderedDict()


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
    with READ_LOCK:
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
    """Verify that the files of one archive hold every step a run needs, intact, around its points.

    As :func:`check_selection` for the files given (all of them read).

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
        As :func:`check_selection`.
    """
    infos = [read_info(path) for path in files]
    selection = Selection(name, tuple(series_of(infos, window)))
    check_selection([selection], window, points)


def check_selection(
    selections: Sequence[Selection],
    window: tuple[pd.Timestamp, pd.Timestamp],
    points: Iterable[tuple[float, float, float]],
) -> None:
    """Verify that the met a run reads holds every step it needs, intact, around its points.

    Every archive must hold every time step of the run window on each of its
    grids (a nest's outer grid is read wherever particles leave the inner one);
    every release point must lie inside one of the grids, at least :data:`EDGE`
    cells from its edge; the records of the needed steps must pass their checksums
    (:func:`verify_checksums`), only those steps, since a run reads no others.

    Parameters
    ----------
    selections : sequence of Selection
        The files of each archive, as :func:`~pystilt_dask.meteorology.files.select_files`
        chose them, finest grid first.
    window : (Timestamp, Timestamp)
        Earliest and latest instants the run touches.
    points : iterable of (lat, lon, height)
        Release points.

    Raises
    ------
    MeteorologyError
        Naming the archive and its missing time steps, the point outside every
        grid, or the file, time, variable and level whose data fails its checksum.
    """
    for selection in selections:
        if selection.missing:
            raise MeteorologyError(missing_message(selection.name, window, selection.missing))
    grids = [(s.name, series) for s in selections for series in s.series]
    for lat, lon, _ in points:
        if not any(inside(series.grid, lon, lat) for _, series in grids):
            listed = [
                (name, series.grid, series.infos[0].path.name if series.infos else "")
                for name, series in grids
            ]
            raise MeteorologyError(outside_message(lon, lat, listed))
    for _, series in grids:
        needed = set(series.needed)
        for info in series.infos:
            verify_checksums(info.path, [t for t in info.times if t in needed])


def inside(grid: arlmet.Grid, lon, lat):
    """Whether points lie inside ``grid`` at least :data:`EDGE` cells from its edge.

    HYSPLIT refuses release points within two cells of the edge ("all source
    points off all meteo grids"); measured on the shared HRRR crop. Works on
    scalars and arrays alike.
    """
    x, y = grid.fractional_indices(lon, lat)
    return (EDGE <= x) & (x <= grid.nx - 1 - EDGE) & (EDGE <= y) & (y <= grid.ny - 1 - EDGE)


def outside_message(lon: float, lat: float, grids: Sequence[tuple[str, arlmet.Grid, str]]) -> str:
    """The one line saying a release point lies outside every grid of a run's met.

    ``grids`` lists ``(archive name, grid, a file of it)``.
    """
    names = list(dict.fromkeys(name for name, _, _ in grids))
    where = ", ".join(
        f"{file_name or name}: {grid.nx}×{grid.ny}" for name, grid, file_name in grids
    )
    which = f"met {names[0]!r}" if len(names) == 1 else f"every grid of mets {names}"
    return (
        f"receptor ({float(lon)}, {float(lat)}) is outside the domain of {which}, or within "
        f"{EDGE} cells of its edge ({where} grid)"
    )
