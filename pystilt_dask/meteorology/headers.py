"""The header facts of ARL met files (time steps and grid), read once per file version.

Every decision about which files a run needs and whether they cover it is made
from these facts; a process reads each file's header once per version (path,
size, modification time), however many simulations use it.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import arlmet
import pandas as pd

from ..errors import MeteorologyError

# Worker threads that start together would otherwise each parse the same headers.
READ_LOCK = threading.Lock()


class UnreadableMetFile(MeteorologyError):
    """A met file that is not readable ARL, or that arlmet finds damaged.

    Attributes
    ----------
    path : Path
        The file.
    """

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path

    def __reduce__(self) -> tuple[type, tuple[Path, str]]:
        # Raised on workers, it travels to the client pickled.
        return type(self), (self.path, str(self))


@dataclass(frozen=True)
class MetFileInfo:
    """What the header of one ARL file says."""

    path: Path
    times: tuple[pd.Timestamp, ...]
    grid: arlmet.Grid


def read_info(path: Path) -> MetFileInfo:
    """Read (and cache per path, size and mtime) the header facts of one ARL file.

    ``path`` may also be a :class:`~pystilt_dask.meteorology.remote.RemoteFile`,
    whose header is read with range requests (cached per file version).

    Raises
    ------
    UnreadableMetFile
        When the file is not readable ARL or arlmet finds damage in it.
    """
    if not isinstance(path, os.PathLike):
        return path.read_info()
    stat = path.stat()
    with READ_LOCK:
        return _read_info(path, stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=512)
def _read_info(path: Path, size: int, mtime_ns: int) -> MetFileInfo:
    try:
        with arlmet.File(path) as met:
            problems = met.check()
            info = MetFileInfo(path, tuple(met.times), met.grid)
    except Exception as exc:  # arlmet raises several types for a bad file
        raise UnreadableMetFile(path, f"met file {path} is not readable ARL: {exc}") from None
    if problems:
        raise UnreadableMetFile(path, f"met file {path} is damaged: {problems[0]}")
    return info
