"""Choose the met files a run needs, by their names and then their headers.

A met archive is a directory of ARL files whose paths match its ``file_format``
(:mod:`.names`); the time each path names orders the files. Around a run's window
the few files whose names could hold it are opened, and their headers (time
steps and grid, read once per file version and process) decide: for each grid,
the time steps from the last one at or before the window's start to the first one
at or after its end, and the files holding them. So the file period and the time
step may be anything: a release between one file's last step and the next file's
first takes the next file, and a time the archive truly lacks is named.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import arlmet
import numpy as np
import pandas as pd

from ..config import MetConfig
from ..errors import MeteorologyError
from .headers import MetFileInfo, read_info
from .listing import CROP_NAME, MANIFEST_NAME, walk_met_files
from .names import name_pattern
from .remote import RemoteFile, is_remote, list_archive

#: The spacing assumed between the time steps of a grid seen at one time only.
DEFAULT_STEP = pd.Timedelta(hours=1)


def run_window(time: datetime, n_hours: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Return the (earliest, latest) instant a run from ``time`` over ``n_hours`` touches."""
    start = pd.Timestamp(time)
    end = start + pd.Timedelta(hours=n_hours)
    return min(start, end), max(start, end)


@dataclass(frozen=True)
class Series:
    """The files of one grid that a run reads, and the time steps it needs from them.

    Attributes
    ----------
    grid : arlmet.Grid
        The grid the files share.
    infos : tuple of MetFileInfo
        The files holding a needed step (for each step the first file listing it),
        in time order.
    needed : tuple of Timestamp
        Every time step the run reads: from the last step at or before the window's
        start to the first at or after its end, at the grid's time step.
    missing : tuple of Timestamp
        The needed steps no file holds.
    """

    grid: arlmet.Grid
    infos: tuple[MetFileInfo, ...]
    needed: tuple[pd.Timestamp, ...]
    missing: tuple[pd.Timestamp, ...]


@dataclass(frozen=True)
class Selection:
    """The files of one met archive a run needs, one :class:`Series` per grid.

    Attributes
    ----------
    name : str
        The archive's name in ``mets``.
    series : tuple of Series
        One per grid among the candidate files, in the order their first files sort.
    """

    name: str
    series: tuple[Series, ...]

    @property
    def files(self) -> list[Path]:
        """The files to give HYSPLIT, grid by grid, each in time order."""
        return [info.path for series in self.series for info in series.infos]

    @property
    def missing(self) -> list[pd.Timestamp]:
        """The needed time steps some grid lacks, sorted."""
        return sorted({t for series in self.series for t in series.missing})


def missing_message(name: str, window: tuple[pd.Timestamp, pd.Timestamp], missing) -> str:
    """The one line naming the time steps met ``name`` lacks for a run over ``window``."""
    shown = ", ".join(t.strftime("%Y-%m-%d %H:%M") for t in missing[:6])
    more = f" and {len(missing) - 6} more" if len(missing) > 6 else ""
    first, last = window
    return (
        f"met {name!r} does not cover the run {first:%Y-%m-%d %H:%M}–{last:%Y-%m-%d %H:%M}: "
        f"no data for {shown}{more}"
    )


def select_files(
    window: tuple[pd.Timestamp, pd.Timestamp], met: MetConfig, name: str = "met"
) -> Selection:
    """Choose the files of one archive a run over ``window`` needs, from their headers.

    The candidates are the files whose names hold the times around the window: the
    last name time at or before its start, every one inside it and the first after
    its end, and further out while a needed step is still missing and the next
    name time out still holds some. A missing step makes the directory be listed
    afresh once (a file added in a subfolder does not change the top folder).

    Parameters
    ----------
    window : (Timestamp, Timestamp)
        Earliest and latest instants the run touches (:func:`run_window`).
    met : MetConfig
        The archive.
    name : str
        Its name, for messages.

    Returns
    -------
    Selection
        Which may name missing steps: :func:`check_selection` refuses those.

    Raises
    ------
    MeteorologyError
        When the directory is missing, no file matches ``file_format``, or a
        candidate file is not readable ARL.
    """
    directory = met.directory
    if not is_remote(directory) and not Path(directory).is_dir():
        raise MeteorologyError(f"met {name!r}: directory {directory} does not exist")
    index = archive_index(met)
    selection = index.select(window, name) if index.paths else None
    if selection is None or selection.missing:
        fresh = archive_index(met, relist=True)
        if fresh.paths != index.paths:
            selection = fresh.select(window, name) if fresh.paths else None
    if selection is None:
        raise MeteorologyError(
            f"met {name!r}: no file under {directory} matches file_format {met.file_format!r}"
        )
    return selection


def find_met_files(time: datetime, n_hours: int, met: MetConfig, name: str = "met") -> list[Path]:
    """Return the met files of one archive a run from ``time`` over ``n_hours`` reads.

    Raises
    ------
    MeteorologyError
        As :func:`select_files`, and naming the time steps the archive lacks.
    """
    window = run_window(time, n_hours)
    selection = select_files(window, met, name)
    if selection.missing:
        raise MeteorologyError(missing_message(name, window, selection.missing))
    return selection.files


@dataclass(frozen=True, eq=False)
class ArchiveIndex:
    """The files of an archive and the times their names hold, sorted by time then path.

    ``times`` is all ``NaT`` for a ``file_format`` without date fields;
    ``name_times`` are the distinct times, sorted, and ``spacing`` the shortest
    time between two of them (``None`` for fewer than two).
    """

    paths: tuple[Path | RemoteFile, ...]
    times: pd.DatetimeIndex
    name_times: pd.DatetimeIndex
    spacing: pd.Timedelta | None
    #: A remote archive's ``MANIFEST.sha256`` (a local one is read by :mod:`.manifest`).
    manifest: RemoteFile | None = None
    #: A remote archive's ``CROP.json`` (a local one is read by :mod:`.crop`).
    crop: RemoteFile | None = None

    def select(self, window: tuple[pd.Timestamp, pd.Timestamp], name: str) -> Selection:
        """Choose from these files (see :func:`select_files`)."""
        if not len(self.name_times):  # an untimed pattern: every file is a candidate
            infos = [read_info(path) for path in self.paths]
            return Selection(name, tuple(series_of(infos, window, self.spacing)))
        first, last = window
        n = len(self.name_times)
        lo = max(int(self.name_times.searchsorted(first, "right")) - 1, 0)
        hi = min(int(self.name_times.searchsorted(last, "right")), n - 1)
        infos = self.infos(lo, hi)
        # Further out only while a needed end step is missing and the next name
        # time out still holds steps that near the window (names need not be starts).
        left = right = True
        while True:
            series = series_of(infos, window, self.spacing)
            step = max((s.needed[1] - s.needed[0] for s in series if len(s.needed) > 1),
                       default=DEFAULT_STEP)  # fmt: skip
            left &= lo > 0 and any(s.missing and s.missing[0] == s.needed[0] for s in series)
            right &= hi < n - 1 and any(s.missing and s.missing[-1] == s.needed[-1] for s in series)
            if left:
                lo -= 1
                added = self.infos(lo, lo)
                left = any(t >= first - step for info in added for t in info.times)
                infos = added + infos
            if right:
                hi += 1
                added = self.infos(hi, hi)
                right = any(t <= last + step for info in added for t in info.times)
                infos = infos + added
            if not (left or right):
                return Selection(name, tuple(series_of(infos, window, self.spacing)))

    def infos(self, lo: int, hi: int) -> list[MetFileInfo]:
        """Headers of the files whose name times are ``name_times[lo..hi]``."""
        start = self.times.searchsorted(self.name_times[lo], "left")
        stop = self.times.searchsorted(self.name_times[hi], "right")
        return [read_info(path) for path in self.paths[start:stop]]


def series_of(
    infos: Sequence[MetFileInfo],
    window: tuple[pd.Timestamp, pd.Timestamp],
    spacing: pd.Timedelta | None = None,
) -> list[Series]:
    """Group files by grid and find, per grid, the steps a run over ``window`` needs.

    ``spacing`` is the archive's spacing of name times (:attr:`ArchiveIndex.spacing`),
    the time step of files holding one step each.
    """
    return [
        _one_series(grid, members, window, grid_step(members, spacing))
        for grid, members in by_grid(infos).items()
    ]


def by_grid(infos: Sequence[MetFileInfo]) -> dict[arlmet.Grid, list[MetFileInfo]]:
    """``infos`` grouped by grid, in the order each grid first appears."""
    grouped: dict[arlmet.Grid, list[MetFileInfo]] = {}
    for info in infos:
        grouped.setdefault(info.grid, []).append(info)
    return grouped


def grid_step(infos: Sequence[MetFileInfo], spacing: pd.Timedelta | None = None) -> pd.Timedelta:
    """The time step of files on one grid.

    The shortest spacing of steps inside one file; for files of one step each, the
    archive's spacing of name times, since the few files around a run may lack
    one (two files twelve hours apart are not a 12-hourly archive); without names
    either, the shortest spacing between the files' steps.
    """
    inside = [np.diff(np.array(info.times, dtype="datetime64[ns]")) for info in infos]
    inside = [d.min() for d in inside if len(d)]
    if inside:
        return pd.Timedelta(min(inside))
    if spacing is not None:
        return spacing
    times = np.unique(np.array([t for info in infos for t in info.times], dtype="datetime64[ns]"))
    return pd.Timedelta(np.diff(times).min()) if len(times) > 1 else DEFAULT_STEP


def _one_series(
    grid: arlmet.Grid,
    infos: Sequence[MetFileInfo],
    window: tuple[pd.Timestamp, pd.Timestamp],
    step: pd.Timedelta,
) -> Series:
    first, last = window
    available = pd.DatetimeIndex(sorted({t for info in infos for t in info.times}))
    if len(available) == 0:
        return Series(grid, (), (), ())
    # Steps lie on the grid of times `available[0] + k * step`.
    anchor = available[0]
    low = anchor + step * int(np.floor((first - anchor) / step))
    high = anchor + step * int(np.ceil((last - anchor) / step))
    needed = pd.date_range(low, high, freq=step)
    missing = needed.difference(available)
    chosen: list[MetFileInfo] = []
    for time in needed.difference(missing):
        holder = next(info for info in infos if time in info.times)
        if holder not in chosen:
            chosen.append(holder)
    chosen.sort(key=lambda info: (info.times[0], str(info.path)))
    return Series(grid, tuple(chosen), tuple(needed), tuple(missing))


def archive_index(met: MetConfig, relist: bool = False) -> ArchiveIndex:
    """The archive's files and the times their names hold (cached per directory version).

    ``relist`` walks the directory afresh: the cache keys on the top folder's
    modification time, which a file added in a subfolder does not change. A
    remote archive (:mod:`.remote`) is listed once per process, and afresh on ``relist``.
    """
    if is_remote(met.directory):
        files, extras = list_archive(met.directory, met.storage_options, relist)
        return _remote_index(
            files, extras.get(MANIFEST_NAME), extras.get(CROP_NAME), met.file_format
        )
    directory = Path(met.directory)
    if relist:
        _listing.cache_clear()
    return _index(str(directory), directory.stat().st_mtime_ns, met.file_format)


@lru_cache(maxsize=64)
def _index(directory: str, mtime_ns: int, file_format: str) -> ArchiveIndex:
    root = Path(directory).absolute()
    listed = [(path.relative_to(root).as_posix(), path) for path in _listing(directory, mtime_ns)]
    return _sorted_index(listed, file_format)


@lru_cache(maxsize=64)
def _remote_index(
    files: tuple[RemoteFile, ...],
    manifest: RemoteFile | None,
    crop: RemoteFile | None,
    file_format: str,
) -> ArchiveIndex:
    index = _sorted_index([(file.relative, file) for file in files], file_format)
    return replace(index, manifest=manifest, crop=crop)


def _sorted_index(
    listed: Sequence[tuple[str, Path | RemoteFile]], file_format: str
) -> ArchiveIndex:
    """The index of the files ``listed`` as ``(path relative to the directory, file)``."""
    pattern = name_pattern(file_format)
    found: list[tuple[pd.Timestamp, str, Path | RemoteFile]] = []
    for relative, path in listed:
        time = pattern.time_of(relative)
        if time is not None:
            found.append((time, str(path), path))
    if pattern.timed:
        found.sort(key=lambda row: (row[0], row[1]))
    else:
        found.sort(key=lambda row: row[1])
    times = pd.DatetimeIndex([row[0] for row in found])
    name_times = times.dropna().unique().sort_values()
    spacing = pd.Timedelta(np.diff(name_times.values).min()) if len(name_times) > 1 else None
    return ArchiveIndex(tuple(row[2] for row in found), times, name_times, spacing)


@lru_cache(maxsize=64)
def _listing(directory: str, mtime_ns: int) -> tuple[Path, ...]:
    # One recursive walk per directory version, shared by every simulation in a process.
    # A file reached twice through linked folders is listed once.
    paths: dict[Path, Path] = {}
    for path in walk_met_files(Path(directory)):
        paths.setdefault(path.resolve(), path)
    return tuple(paths.values())
