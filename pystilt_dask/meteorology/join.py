"""Join met files of one time step each into files HYSPLIT can interpolate in.

HYSPLIT (``hycs_std`` 5.1.0) learns a met file's time step from the file itself;
a file holding a single time ("WARNING metset: Only one time period of meteo
data") gives it nothing to interpolate with, and a release on such files fails
("start point not within (x,y,t) any data file"), whether CONTROL lists each file
as a grid or the files as the times of one grid. ARL files are sequences of
self-describing records, so consecutive files of one grid written one after the
other are one valid file: the joined file is byte for byte the file the archive
would hold had it been written a day per file, and HYSPLIT's particles on it are
identical (measured; ``tests/test_met_selection.py``).

Joined files are kept in the node's met cache (:mod:`.cache`), named by what they
were joined from (path, size and modification time of each part), so the runs of
a node that read the same files join them once.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from ..errors import MeteorologyError
from .cache import cached, entry_name
from .headers import MetFileInfo, read_info

__all__ = ["hysplit_files"]


def hysplit_files(files: Sequence[Path]) -> list[Path]:
    """The files to give HYSPLIT for ``files``: consecutive single-time files joined.

    ``files`` is in the order HYSPLIT gets them (grid by grid, each in time order).
    Each maximal run of consecutive files on one grid that holds a file of one time
    step is replaced by one joined file; every other file is given as it is, also
    one whose header cannot be read (the checks before a run name those).

    Raises
    ------
    MeteorologyError
        When the cache cannot be written.
    """
    result: list[Path] = []
    run: list[MetFileInfo] = []
    for path in map(Path, files):
        try:
            info = read_info(path)
        except (OSError, MeteorologyError):
            info = None
        if run and (info is None or info.grid != run[0].grid):
            result += _given(run)
            run = []
        if info is None:
            result.append(path)
        else:
            run.append(info)
    return result + _given(run)


def _given(run: Sequence[MetFileInfo]) -> list[Path]:
    """The files a run of consecutive files on one grid is given to HYSPLIT as."""
    if len(run) > 1 and any(len(info.times) == 1 for info in run):
        return [_joined(run)]
    return [info.path for info in run]


def _joined(parts: Sequence[MetFileInfo]) -> Path:
    """The cached join of ``parts`` (made once, by whoever needs it first)."""
    key = []
    for info in parts:
        stat = info.path.stat()
        key.append(f"{info.path.absolute()}\0{stat.st_size}\0{stat.st_mtime_ns}")

    def join(partial: Path) -> None:
        with open(partial, "wb") as out:
            for info in parts:
                with open(info.path, "rb") as part:
                    shutil.copyfileobj(part, out, 1 << 20)

    what = f"joined met files {parts[0].path.name}…{parts[-1].path.name}"
    return cached(entry_name(f"{parts[0].times[0]:%Y%m%d%H%M}-joined", *key), join, what)
