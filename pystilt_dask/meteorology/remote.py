"""Met archives anywhere fsspec reaches: listed and chosen remotely, fetched into the met cache.

A ``mets`` entry whose ``directory`` is a URL (``s3://bucket/hrrr``,
``https://host/arl/``, any fsspec protocol; ``storage_options`` are given to the
filesystem) is listed with fsspec, and the files are chosen as a local archive's
are, by name and then by header (:mod:`.files`). A header is read with range
requests: only the index record of each time step, one request each, never the
data records between; the facts are cached per process and file version (size
and ETag or modification time). The files a run reads are then fetched whole,
once per node, into the met cache (:mod:`.cache`), and checked there:

- the size of what arrived against the listing;
- with a ``MANIFEST.sha256`` in the archive (the digest manifest of
  :mod:`.manifest`, the same file a local archive may hold), the SHA-256 of what
  arrived against it, before the file enters the cache: a file that does not match
  is refused with one line, and a file the manifest does not list too;
- as local files are, before HYSPLIT runs: headers, coverage and ARL checksums
  (:mod:`.coverage`).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

import arlmet
import fsspec
import pandas as pd
from arlmet.exceptions import ARLFormatError
from arlmet.header import record_length_from_grid
from arlmet.indexrecord import IndexRecord

from ..errors import MeteorologyError
from .cache import cached, entry_name
from .headers import MetFileInfo, UnreadableMetFile, read_info
from .listing import CROP_NAME, MANIFEST_NAME, excluded
from .manifest import parse_manifest, remember_digest, stream_digest, verify_file

__all__ = ["RemoteFile", "fetch", "is_remote", "list_archive", "remote_manifest"]

#: Bytes asked for at each index record, which is a few kB (one level, variable
#: and checksum list); a longer one is read on in a second request.
_HEADER_BLOCK = 1 << 13
_LOCK = threading.Lock()
# How many times each archive (URL and options) has been listed afresh in this process.
_LISTINGS: dict[tuple[str, str], int] = {}


def is_remote(directory: str) -> bool:
    """Whether a met ``directory`` is a URL (read through fsspec) rather than a local path."""
    return "://" in directory


@dataclass(frozen=True)
class RemoteFile:
    """One file of a remote met archive, as a listing found it.

    Attributes
    ----------
    url : str
        The file's URL.
    relative : str
        Its path relative to the archive's directory (what ``file_format`` and the
        manifest name).
    size : int or None
        Bytes, when the listing says.
    version : str
        ETag or modification time, when the listing says; ``""`` otherwise.
    options : str
        The archive's ``storage_options`` as JSON.
    listing : int
        Which listing of the archive found it (:func:`list_archive`): facts a
        listing lacks are asked for once per listing.
    """

    url: str
    relative: str
    size: int | None
    version: str
    options: str
    listing: int

    def __str__(self) -> str:
        return self.url

    @property
    def name(self) -> str:
        """The file's name (last part of its path)."""
        return PurePosixPath(self.relative).name

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The fsspec filesystem holding the file (fsspec keeps one per protocol and options)."""
        return fsspec.core.url_to_fs(self.url, **json.loads(self.options))[0]

    def stat(self) -> tuple[int, str]:
        """``(size, version)``, asked of the server once per listing when the listing lacks them."""
        if self.size is not None and self.version:
            return self.size, self.version
        return _stat(self)

    def read_info(self) -> MetFileInfo:
        """The header facts (time steps and grid), read with range requests and cached.

        Raises
        ------
        UnreadableMetFile
            When the file is not readable ARL.
        """
        size, version = self.stat()
        times, grid = _remote_info(self.url, self.options, size, version)
        return MetFileInfo(self, times, grid)


def options_key(storage_options: Mapping[str, Any]) -> str:
    """``storage_options`` as a canonical JSON string (hashable, picklable)."""
    return json.dumps(dict(storage_options), sort_keys=True, default=str)


def list_archive(
    directory: str, storage_options: Mapping[str, Any], relist: bool = False
) -> tuple[tuple[RemoteFile, ...], dict[str, RemoteFile]]:
    """The met files under a remote ``directory``, and its manifest and crop description.

    Listed recursively once per process; ``relist`` lists afresh (as a local
    archive is before a time step is declared missing). Lock files, backups,
    ``.partial``, ``.bad`` and ``.tmp`` files are left out.

    Returns
    -------
    (tuple of RemoteFile, dict)
        The candidate files, and ``{name: file}`` of the ``MANIFEST.sha256`` and
        ``CROP.json`` the directory holds at its top.

    Raises
    ------
    MeteorologyError
        When the directory cannot be listed or does not exist.
    """
    options = options_key(storage_options)
    key = (directory.rstrip("/"), options)
    with _LOCK:
        if relist or key not in _LISTINGS:
            _LISTINGS[key] = _LISTINGS.get(key, -1) + 1
        listing = _LISTINGS[key]
    return _list(key[0], options, listing)


@lru_cache(maxsize=64)
def _list(
    directory: str, options: str, listing: int
) -> tuple[tuple[RemoteFile, ...], dict[str, RemoteFile]]:
    try:
        fs, root = fsspec.core.url_to_fs(directory, **json.loads(options))
        found = fs.find(root, detail=True, withdirs=False)
    except Exception as exc:  # fsspec filesystems raise their own types
        raise MeteorologyError(
            f"met directory {directory} cannot be listed: {type(exc).__name__}: {exc}"
        ) from None
    root = root.rstrip("/")
    files, extras = [], {}
    for path, info in sorted(found.items()):
        relative = path[len(root) :].lstrip("/") if path.startswith(root) else ""
        if not relative or excluded(PurePosixPath(relative).name):
            continue
        version = str(info.get("ETag") or info.get("LastModified") or info.get("mtime") or "")
        size = info.get("size")
        remote = RemoteFile(
            f"{directory}/{relative}", relative, size, version.strip('"'), options, listing
        )
        if relative in (MANIFEST_NAME, CROP_NAME):
            extras[relative] = remote
        else:
            files.append(remote)
    if not found and not fs.exists(root):
        raise MeteorologyError(f"met directory {directory} does not exist")
    return tuple(files), extras


@lru_cache(maxsize=4096)
def _stat(file: RemoteFile) -> tuple[int, str]:
    try:
        info = file.fs.info(file.url)
    except Exception as exc:  # fsspec filesystems raise their own types
        raise MeteorologyError(f"met file {file.url} cannot be read: {exc}") from None
    version = info.get("ETag") or info.get("Last-Modified") or info.get("LastModified") or ""
    size = file.size if info.get("size") is None else int(info["size"])
    if size is None:
        raise MeteorologyError(f"met file {file.url}: the server does not say its size")
    return size, str(version).strip('"')


@lru_cache(maxsize=512)
def _remote_info(
    url: str, options: str, size: int, version: str
) -> tuple[tuple[pd.Timestamp, ...], arlmet.Grid]:
    fs = fsspec.core.url_to_fs(url, **json.loads(options))[0]
    try:
        with fs.open(url, "rb", block_size=_HEADER_BLOCK, cache_type="readahead") as stream:
            return _scan_index_records(stream, size)
    except (ARLFormatError, EOFError, ValueError) as exc:
        raise UnreadableMetFile(url, f"met file {url} is not readable ARL: {exc}") from None
    except OSError as exc:
        raise MeteorologyError(f"met file {url} cannot be read: {exc}") from None


def _scan_index_records(stream, size: int) -> tuple[tuple[pd.Timestamp, ...], arlmet.Grid]:
    """Walk a file's index records (one read each), skipping the data records between."""
    times: list[pd.Timestamp] = []
    grid = None
    position = 0
    while position < size:
        index = IndexRecord.from_position(stream, position)
        if grid is None:
            grid = index.grid
            record = record_length_from_grid(grid)
            if size % record:
                raise ARLFormatError(
                    f"size {size} bytes is not a whole number of {record}-byte records"
                )
        elif index.grid != grid:
            raise ARLFormatError(f"index record at byte {position} has another grid")
        times.append(index.time)
        position += (1 + sum(len(level.variables) for level in index.levels)) * record
    if grid is None:
        raise ARLFormatError("the file is empty")
    return tuple(sorted(set(times))), grid


def remote_manifest(manifest: RemoteFile | None) -> dict[str, str] | None:
    """The digests a remote archive's ``MANIFEST.sha256`` lists, or None without one.

    Read once per process and manifest version.

    Raises
    ------
    MeteorologyError
        When it cannot be read or parsed.
    """
    if manifest is None:
        return None
    size, version = manifest.stat()
    return _manifest(manifest.url, manifest.options, size, version)


@lru_cache(maxsize=64)
def _manifest(url: str, options: str, size: int, version: str) -> Mapping[str, str]:
    try:
        text = fsspec.core.url_to_fs(url, **json.loads(options))[0].cat_file(url)
    except Exception as exc:  # fsspec filesystems raise their own types
        raise MeteorologyError(f"manifest {url} cannot be read: {exc}") from None
    return parse_manifest(text.decode("utf-8"), url)


def fetch(file: RemoteFile, digest: str | None = None, manifest: str = "") -> Path:
    """The local copy of a remote met file in the met cache, fetched once per node.

    Parameters
    ----------
    file : RemoteFile
        The file.
    digest : str, optional
        The SHA-256 its archive's manifest lists; the fetched bytes must have it,
        before the file enters the cache and, once per process, on every use.
    manifest : str
        The manifest's URL, for messages.

    Returns
    -------
    Path
        The copy in the met cache.

    Raises
    ------
    MeteorologyError
        When the file cannot be fetched, or what arrived is not what the listing
        (size) or the manifest (SHA-256) says: one line naming the file.
    """
    size, version = file.stat()
    fetched: list[str] = []

    def download(partial: Path) -> None:
        try:
            file.fs.get_file(file.url, str(partial))
        except Exception as exc:  # fsspec filesystems raise their own types
            raise MeteorologyError(f"met file {file.url} cannot be fetched: {exc}") from None
        arrived = partial.stat().st_size
        if arrived != size:
            raise MeteorologyError(
                f"met file {file.url} was fetched incomplete ({arrived} of {size} bytes): refused"
            )
        if digest is not None:
            found = stream_digest(partial)
            if found != digest:
                raise MeteorologyError(
                    f"met file {file.url} as fetched does not match {manifest} "
                    f"(sha256 {found}, listed {digest}): refused"
                )
            fetched.append(found)

    label = re.sub(r"[^A-Za-z0-9._-]", "_", file.name)[-48:]
    local = cached(entry_name(label, file.url, size, version), download, f"met file {file.url}")
    if fetched:
        remember_digest(local, fetched[0])
    elif digest is not None:
        verify_file(local, digest, manifest)
    return local


def fetch_infos(
    infos: Iterable[MetFileInfo], manifest: RemoteFile | None, name: str
) -> dict[RemoteFile, MetFileInfo]:
    """Fetch the remote files among ``infos``; return each one's header facts on its local copy.

    Every file is checked against the archive's manifest when it has one (a file
    it does not list is refused); the local copy's header must say what the remote
    one said.

    Raises
    ------
    MeteorologyError
        As :func:`fetch`, for a file the manifest does not list, or a copy whose
        header differs.
    """
    digests = remote_manifest(manifest)
    local: dict[RemoteFile, MetFileInfo] = {}
    for info in infos:
        file = info.path
        if not isinstance(file, RemoteFile) or file in local:
            continue
        expected = None
        if digests is not None:
            expected = digests.get(file.relative)
            if expected is None:
                raise MeteorologyError(
                    f"met file {file.url} is not listed in {manifest}: rewrite the manifest "
                    f"if the file belongs to met {name!r}"
                )
        copy = read_info(fetch(file, expected, str(manifest)))
        if copy.times != info.times or copy.grid != info.grid:
            raise MeteorologyError(
                f"met file {file.url} changed while it was fetched: its header differs from "
                "the one read before"
            )
        local[file] = copy
    return local
