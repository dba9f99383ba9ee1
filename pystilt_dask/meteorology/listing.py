"""Which files of a met directory could be met files, wherever the directory is."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["CROP_NAME", "MANIFEST_NAME", "excluded", "walk_met_files"]

#: The digest manifest a met directory may hold (:mod:`.manifest`); never a met file.
MANIFEST_NAME = "MANIFEST.sha256"
#: What a cropped archive was cut from (:mod:`.crop`); never a met file.
CROP_NAME = "CROP.json"
_EXCLUDED_SUFFIXES = ("~", ".partial", ".bad", ".tmp")


def excluded(file_name: str) -> bool:
    """Whether a file name is never a met file: lock files, editor backups, half-written files."""
    return ".lock" in file_name or file_name.endswith(_EXCLUDED_SUFFIXES)


def walk_met_files(directory: Path) -> Iterator[Path]:
    """Yield every file under ``directory`` that could be a met file, by the name found.

    The walk is recursive and follows symlinks. Paths are kept as found, not
    resolved: a file is matched by the name it is found under (a link into a
    content-addressed store resolves to a hash). Lock files, editor backups,
    half-written downloads, the digest manifest and a crop's description are left out.
    """
    for root, _, names in os.walk(Path(directory).absolute(), followlinks=True):
        for file_name in names:
            if not excluded(file_name) and file_name not in (MANIFEST_NAME, CROP_NAME):
                yield Path(root, file_name)
