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

Joined files are kept in a cache on local disk, named by what they were joined
from (path, size and modification time of each part), so the runs of a node
that read the same files join them once; the cache is bounded (:data:`CACHE_BYTES`),
and the files used least recently go first.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from ..errors import MeteorologyError
from .headers import MetFileInfo, read_info

__all__ = ["CACHE_BYTES", "cache_directory", "hysplit_files"]

#: Bytes of joined files kept per user and machine before the least recently used go.
CACHE_BYTES = 20 * 2**30
_LOCK = threading.Lock()


def cache_directory() -> Path:
    """Where joined files are kept: ``pystilt_dask-<uid>-met`` in the system temporary folder.

    On disk rather than on the RAM-backed compute root: joined met can be large.
    ``TMPDIR`` moves it.
    """
    return Path(tempfile.gettempdir()) / f"pystilt_dask-{os.getuid()}-met"


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
    """The cached join of ``parts`` (filled once, atomically, by whoever needs it first)."""
    key = hashlib.sha256()
    for info in parts:
        stat = info.path.stat()
        key.update(f"{info.path.absolute()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    folder = cache_directory()
    target = folder / f"{parts[0].times[0]:%Y%m%d%H%M}-{key.hexdigest()[:32]}.arl"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if target.exists():
            os.utime(target)  # recently used: evicted last
            return target
        # Another process may fill the same file: each writes its own part and the
        # rename makes one whole file appear, never a part of one.
        fd, partial = tempfile.mkstemp(dir=folder, suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as out:
                for info in parts:
                    with open(info.path, "rb") as part:
                        shutil.copyfileobj(part, out, 1 << 20)
            os.replace(partial, target)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        _evict(folder, keep=target)
    except OSError as exc:
        raise MeteorologyError(
            f"cannot join met files {parts[0].path.name}…{parts[-1].path.name} "
            f"into {folder}: {exc.strerror or exc}"
        ) from None
    return target


def _evict(folder: Path, keep: Path) -> None:
    """Remove the least recently used joined files until the cache fits :data:`CACHE_BYTES`."""
    with _LOCK:
        entries = []
        for path in folder.glob("*.arl"):
            try:
                stat = path.stat()
            except FileNotFoundError:  # evicted by another process meanwhile
                continue
            entries.append((stat.st_mtime_ns, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= CACHE_BYTES:
                break
            if path != keep:
                path.unlink(missing_ok=True)
                total -= size
