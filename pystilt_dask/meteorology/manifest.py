"""A digest manifest for met files: any change to a listed file is found before HYSPLIT reads it.

ARL's per-record checksum is a byte sum modulo 255: bytes swapped, reversed or
changed in pairs that cancel keep it, and HYSPLIT then moves particles on wrong
winds. A met directory may therefore hold a manifest, ``MANIFEST.sha256``, in the
format of coreutils' ``sha256sum`` (``<sha256>  <name>`` per line, names relative
to the directory, ``#`` lines are comments), so ``sha256sum -c MANIFEST.sha256``
checks it too. :func:`write_manifest` writes it; :func:`verify_met_files` checks
the files a simulation is about to use against it.

The digest of a file is computed once per process for each (path, size,
modification time) and reused: hashing gigabytes for every simulation would cost
more than the simulation. The check itself takes a path and an expected digest
(:func:`verify_file`), so met copied from elsewhere is checked the same way.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

from ..errors import MeteorologyError
from .listing import MANIFEST_NAME, walk_met_files

__all__ = [
    "MANIFEST_NAME",
    "file_digest",
    "parse_manifest",
    "read_manifest",
    "remember_digest",
    "verify_file",
    "verify_met_files",
    "write_manifest",
]

_CHUNK = 1 << 20  # bytes read at a time: hashing streams, whatever the file's size
_HEX = frozenset("0123456789abcdef")
# Threads of one worker start simulations on the same files together: one hashes,
# the others then find its digest in the cache.
_HASH_LOCK = threading.Lock()
#: Digests remembered per process (path, size, modification time), about 200 bytes each.
DIGEST_CACHE_SIZE = 4096
_DIGESTS: OrderedDict[tuple[Path, int, int], str] = OrderedDict()


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits, computed once per version.

    Cached per process by path, size and modification time (nanoseconds), as
    :func:`~pystilt_dask.meteorology.coverage.read_info` caches headers: a file
    rewritten in place gets a new modification time and is hashed again.

    Parameters
    ----------
    path : Path
        The file (a symlink is followed).

    Raises
    ------
    MeteorologyError
        When the file cannot be read.
    """
    try:
        stat = path.stat()
        key = (path, stat.st_size, stat.st_mtime_ns)
        with _HASH_LOCK:
            if key in _DIGESTS:
                _DIGESTS.move_to_end(key)
                return _DIGESTS[key]
            digest = stream_digest(path)
            _remember(key, digest)
            return digest
    except OSError as exc:
        raise MeteorologyError(f"met file {path} cannot be read: {exc.strerror}") from None


def remember_digest(path: Path, digest: str) -> None:
    """Record the SHA-256 of a file just written whole (as :func:`file_digest` would find it).

    A file fetched into the met cache is hashed as it is written; this saves its
    first use in the process from reading it again.
    """
    stat = path.stat()
    with _HASH_LOCK:
        _remember((path, stat.st_size, stat.st_mtime_ns), digest)


def stream_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes, read 1 MiB at a time (not cached)."""
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as stream:
        while n := stream.readinto(buffer):
            digest.update(view[:n])
    return digest.hexdigest()


def _remember(key: tuple[Path, int, int], digest: str) -> None:
    _DIGESTS[key] = digest
    while len(_DIGESTS) > DIGEST_CACHE_SIZE:
        _DIGESTS.popitem(last=False)


def verify_file(path: Path, expected: str, manifest: str = "its manifest") -> None:
    """Raise unless the SHA-256 of ``path`` is ``expected``.

    Parameters
    ----------
    path : Path
        A local met file (for met fetched from elsewhere, the local copy).
    expected : str
        The 64 hex digits the manifest lists for it.
    manifest : str
        Where ``expected`` comes from, for the message.

    Raises
    ------
    MeteorologyError
        Naming the file, the manifest and both digests, in one line.
    """
    found = file_digest(path)
    if found != expected:
        raise MeteorologyError(
            f"met file {path} has changed since {manifest} was written "
            f"(sha256 {found}, listed {expected})"
        )


def parse_manifest(text: str, source: str) -> dict[str, str]:
    """Read ``sha256sum`` output: ``{name: sha256}``.

    Parameters
    ----------
    text : str
        The manifest's content.
    source : str
        Where it was read from, for messages.

    Raises
    ------
    MeteorologyError
        Naming the first line that is not ``<64 hex digits>  <name>`` or a comment,
        or a name listed twice.
    """
    digests: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        digest, name = line[:64].lower(), line[66:]
        if not (len(line) > 66 and set(digest) <= _HEX and line[64] == " " and line[65] in " *"):
            raise MeteorologyError(
                f"manifest {source} line {number} is not '<sha256>  <name>': {line[:80]!r}"
            )
        if name in digests:
            raise MeteorologyError(f"manifest {source} lists {name!r} twice")
        digests[name] = digest
    return digests


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, str] | None:
    """The manifest of a met directory, ``{relative name: sha256}``, or None when it has none.

    Parsed once per process and manifest version (path, size, modification time).

    Raises
    ------
    MeteorologyError
        When the manifest cannot be read or parsed (see :func:`parse_manifest`).
    """
    path = Path(directory).absolute() / MANIFEST_NAME
    try:
        stat = path.stat()
        return _read(path, stat.st_size, stat.st_mtime_ns)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise MeteorologyError(f"manifest {path} cannot be read: {exc.strerror}") from None


@lru_cache(maxsize=64)
def _read(path: Path, size: int, mtime_ns: int) -> Mapping[str, str]:
    return parse_manifest(path.read_text(encoding="utf-8"), str(path))


def verify_met_files(
    files: Iterable[Path], directory: str | os.PathLike[str], name: str = "met"
) -> None:
    """Check met files found under ``directory`` against its manifest, if it has one.

    Without a manifest nothing is checked. With one, every file must be listed
    (by its path relative to ``directory``, as found, symlinks not resolved) with
    the SHA-256 of its bytes: a manifest claims the directory's whole content, so
    a file it does not list is refused as well.

    Parameters
    ----------
    files : iterable of Path
        Files under ``directory``, as :func:`~pystilt_dask.meteorology.files.find_met_files`
        returns them.
    directory : path-like
        The met directory (``MetConfig.directory``).
    name : str
        Name of the met archive, for messages.

    Raises
    ------
    MeteorologyError
        Naming the first file that is not listed or whose bytes differ, in one line.
    """
    digests = read_manifest(directory)
    if digests is None:
        return
    root = Path(directory).absolute()
    manifest = str(root / MANIFEST_NAME)
    for path in files:
        absolute = Path(path).absolute()
        relative = absolute.relative_to(root).as_posix() if absolute.is_relative_to(root) else ""
        if relative not in digests:
            raise MeteorologyError(
                f"met file {path} is not listed in {manifest}: rewrite it with "
                f"`stilt-dask met-manifest {root}` if the file belongs to met {name!r}"
            )
        verify_file(Path(path), digests[relative], manifest)


def write_manifest(directory: str | os.PathLike[str]) -> tuple[Path, int]:
    """Hash every met file under ``directory`` into its ``MANIFEST.sha256``, atomically.

    Lists the files :func:`~pystilt_dask.meteorology.files.find_met_files` could
    use (recursively, through symlinks, by the names found, sorted), replacing
    any manifest there: writing one states that the directory's content is right.

    Parameters
    ----------
    directory : path-like
        The met directory.

    Returns
    -------
    (Path, int)
        The manifest written and the number of files it lists.

    Raises
    ------
    MeteorologyError
        When the directory does not exist, a name cannot be written in
        ``sha256sum``'s format, a file cannot be read or the manifest cannot be written.
    """
    root = Path(directory).absolute()
    if not root.is_dir():
        raise MeteorologyError(f"met directory {root} does not exist")
    lines = []
    for path in sorted(walk_met_files(root)):
        relative = path.relative_to(root).as_posix()
        if "\n" in relative or "\\" in relative:
            raise MeteorologyError(
                f"met file name {relative!r} holds a newline or backslash, "
                "which a manifest cannot list: rename it"
            )
        lines.append(f"{file_digest(path)}  {relative}\n")
    target = root / MANIFEST_NAME
    # A .tmp name is never taken for a met file, nor for the manifest, while it is written.
    partial = root / f".{MANIFEST_NAME}.{os.getpid()}.tmp"
    try:
        with open(partial, "w", encoding="utf-8") as stream:
            stream.write("# sha256 of each met file; check with: sha256sum -c MANIFEST.sha256\n")
            stream.writelines(lines)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(partial, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise MeteorologyError(f"cannot write {target}: {exc.strerror}") from None
    return target, len(lines)
