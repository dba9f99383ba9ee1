"""Register pystilt_dask's deployment defaults in ``dask.config`` (namespace ``stilt``).

Deployment settings (where scratch goes, where caches live) differ per machine,
so they come from Dask's configuration system rather than a project's
config.yaml; see ``stilt.yaml`` beside this module for every key.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import dask.config
import distributed.config  # noqa: F401  (Dask's defaults first, so that ours override them)
import yaml

_DEFAULTS_FILE = Path(__file__).with_name("stilt.yaml")


def _register() -> None:
    with _DEFAULTS_FILE.open() as f:
        dask.config.update_defaults(yaml.safe_load(f))


def compute_root() -> Path:
    """Return the directory under which HYSPLIT work directories are made.

    ``stilt.compute-root`` wins when set. Otherwise ``/dev/shm`` is used when it
    exists, is writable and has ``stilt.compute-root-min-free`` bytes free:
    HYSPLIT's scratch is then never written to disk. Else the system temporary
    directory.
    """
    configured = dask.config.get("stilt.compute-root")
    if configured:
        return Path(configured).expanduser()
    shm = Path("/dev/shm")
    min_free = int(dask.config.get("stilt.compute-root-min-free"))
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free >= min_free:
        return shm / "pystilt_dask"
    return Path(tempfile.gettempdir()) / "pystilt_dask"


def numba_cache_dir() -> Path:
    """Return a writable directory for numba's on-disk kernel cache."""
    configured = dask.config.get("stilt.cache-dir")
    if configured:
        return Path(configured).expanduser() / "numba"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pystilt_dask" / "numba"


def _point_numba_cache() -> None:
    # numba reads NUMBA_CACHE_DIR when first imported, and its default (beside the
    # installed package) is often read-only. This module is imported before any of
    # the package's kernels, so this is the one place that sets it.
    if "NUMBA_CACHE_DIR" not in os.environ:
        cache = numba_cache_dir()
        cache.mkdir(parents=True, exist_ok=True)
        os.environ["NUMBA_CACHE_DIR"] = str(cache)


_register()
_point_numba_cache()
