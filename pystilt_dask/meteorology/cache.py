"""The node's met cache: fetched met files and joined files, in one bounded folder.

Met fetched from an object store or a web server (:mod:`.remote`) and files of one
time step joined for HYSPLIT (:mod:`.join`) are kept in one folder on local disk,
``stilt.met-cache.directory`` (default ``pystilt_dask-<uid>-met`` in the system
temporary folder), shared by every process of the user on the machine. Each entry
is named by what it was made from, so whoever needs it first fills it and the
others find it:

- a fill holds an exclusive lock on ``<entry>.lock`` (``flock``, which also
  excludes threads of one process), so two tasks never make the same entry;
  a task waiting for the lock finds the entry made when it gets it;
- the entry is written to ``<entry>.partial`` and renamed into place when complete,
  so a reader sees the whole file or none;
- the cache keeps at most ``stilt.met-cache.max-size`` bytes of entries: after each
  fill, the least recently used go first. Using an entry sets its access time
  (not its modification time, on which the header and digest caches key).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from dask.utils import parse_bytes

from ..defaults import setting
from ..errors import MeteorologyError

__all__ = ["cache_directory", "cache_limit", "cached", "entry_name"]

#: Suffix of every complete entry: what eviction counts and removes.
SUFFIX = ".arl"


def cache_directory() -> Path:
    """The met cache folder: ``stilt.met-cache.directory``, or ``pystilt_dask-<uid>-met``.

    The default is in the system temporary folder (``TMPDIR`` moves it), on disk
    rather than on the RAM-backed compute root: met is large.
    """
    configured = setting("met-cache.directory")
    if configured:
        return Path(configured).expanduser()
    return Path(tempfile.gettempdir()) / f"pystilt_dask-{os.getuid()}-met"


def cache_limit() -> int:
    """The bytes of entries the cache keeps, from ``stilt.met-cache.max-size``."""
    value = setting("met-cache.max-size")
    return int(parse_bytes(value) if isinstance(value, str) else value)


def entry_name(label: str, *parts: object) -> str:
    """The cache name of an entry made from ``parts``: ``<label>-<digest of parts>.arl``."""
    key = hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:32]
    return f"{label}-{key}{SUFFIX}"


def cached(name: str, fill: Callable[[Path], None], what: str) -> Path:
    """The cache entry ``name``, made by ``fill(partial_path)`` unless it exists.

    Parameters
    ----------
    name : str
        The entry's file name (:func:`entry_name`).
    fill : callable
        Writes the entry's whole content to the path it is given. It runs under
        the entry's lock, once per entry; an exception leaves no entry behind.
    what : str
        What the entry holds, for messages.

    Returns
    -------
    Path
        The complete entry.

    Raises
    ------
    MeteorologyError
        When the cache cannot be written; ``fill``'s own exceptions pass through.
    """
    folder = cache_directory()
    target = folder / name
    try:
        if _use(target):
            return target
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        with _locked(target.with_name(name + ".lock")):
            if _use(target):  # made while this task waited for the lock
                return target
            partial = target.with_name(name + ".partial")
            try:
                fill(partial)
                os.replace(partial, target)
            finally:
                partial.unlink(missing_ok=True)
        _evict(folder, keep=target)
    except OSError as exc:
        raise MeteorologyError(
            f"cannot write {what} into the met cache {folder}: {exc.strerror or exc}"
        ) from None
    return target


def _use(target: Path) -> bool:
    """Whether ``target`` exists; if so, mark it used now (its access time only)."""
    try:
        stat = target.stat()
    except FileNotFoundError:
        return False
    os.utime(target, ns=(time.time_ns(), stat.st_mtime_ns))
    return True


@contextmanager
def _locked(path: Path):
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _evict(folder: Path, keep: Path) -> None:
    """Remove the least recently used entries until the cache fits :func:`cache_limit`."""
    limit = cache_limit()
    entries = []
    for path in folder.glob(f"*{SUFFIX}"):
        try:
            stat = path.stat()
        except FileNotFoundError:  # evicted by another process meanwhile
            continue
        entries.append((stat.st_atime_ns, stat.st_size, path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= limit:
            break
        if path != keep:
            # Its lock file stays: a task may be waiting on it, and a new one
            # would let a second task fill the entry beside it.
            path.unlink(missing_ok=True)
            total -= size
