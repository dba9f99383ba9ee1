"""Find the meteorology files a simulation needs, by R-STILT's naming rules."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import pandas as pd

from ..config import MetConfig
from ..errors import MeteorologyError

# Lock files, editor backups and half-written downloads are never met files.
_EXCLUDED_SUFFIXES = ("~", ".partial", ".bad", ".tmp")
#: The digest manifest a met directory may hold (:mod:`.manifest`); never a met file.
MANIFEST_NAME = "MANIFEST.sha256"


def run_window(time: datetime, n_hours: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Return the (earliest, latest) instant a run from ``time`` over ``n_hours`` touches."""
    start = pd.Timestamp(time)
    end = start + pd.Timedelta(hours=n_hours)
    return min(start, end), max(start, end)


def requested_patterns(time: datetime, n_hours: int, met: MetConfig) -> list[str]:
    """Return the file-name patterns (strftime of each file start) a run needs.

    As R-STILT's ``find_met_files``: every file period from the one holding the
    window start to the one holding its end; a backward run whose receptor sits
    in the last hour of a file also asks for the next file, which HYSPLIT needs
    to interpolate that hour.
    """
    first, last = run_window(time, n_hours)
    period = met.period
    met_start = first.floor(period)
    met_end = last
    ceiling = last.ceil(period)
    if n_hours < 0 and (met_end.hour + 1) % 24 == ceiling.hour:
        met_end = ceiling
    starts = pd.date_range(met_start, met_end, freq=period)
    return list(dict.fromkeys(ts.strftime(met.file_format) for ts in starts))


def find_met_files(time: datetime, n_hours: int, met: MetConfig, name: str = "met") -> list[Path]:
    """Return the met files whose names contain a requested pattern, sorted and unique.

    A pattern that matches nothing is not an error here: whether the files found
    cover the run is decided from their headers (:func:`check_coverage`).

    Raises
    ------
    MeteorologyError
        When the directory is missing or no file matches any pattern.
    """
    directory = Path(met.directory)
    if not directory.is_dir():
        raise MeteorologyError(f"met {name!r}: directory {directory} does not exist")
    patterns = requested_patterns(time, n_hours, met)
    found = _matching(directory, patterns)
    if not found:
        # The cache keys on the top folder only; files added in a subfolder need a fresh look.
        _listing.cache_clear()
        found = _matching(directory, patterns)
    if not found:
        raise MeteorologyError(
            f"met {name!r}: no file under {directory} matches {', '.join(patterns)} "
            f"(file_format {met.file_format!r})"
        )
    return found


def _matching(directory: Path, patterns: list[str]) -> list[Path]:
    listing = _listing(str(directory), directory.stat().st_mtime_ns)
    return sorted({path for path in listing if any(p in path.name for p in patterns)})


@lru_cache(maxsize=64)
def _listing(directory: str, mtime_ns: int) -> tuple[Path, ...]:
    # One recursive walk per directory version, shared by every simulation in a process.
    # A file reached twice through linked folders is listed once.
    paths: dict[Path, Path] = {}
    for path in walk_met_files(Path(directory)):
        paths.setdefault(path.resolve(), path)
    return tuple(paths.values())


def walk_met_files(directory: Path) -> Iterator[Path]:
    """Yield every file under ``directory`` that could be a met file, by the name found.

    The walk is recursive and follows symlinks. Paths are kept as found, not
    resolved: a file is matched by the name it is found under (a link into a
    content-addressed store resolves to a hash). Lock files, editor backups,
    half-written downloads and the digest manifest are left out.
    """
    for root, _, names in os.walk(Path(directory).absolute(), followlinks=True):
        for file_name in names:
            if ".lock" in file_name or file_name.endswith(_EXCLUDED_SUFFIXES):
                continue
            if file_name == MANIFEST_NAME:
                continue
            yield Path(root, file_name)
