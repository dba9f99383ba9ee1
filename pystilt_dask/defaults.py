"""Deployment defaults of pystilt_dask (``dask.config`` namespace ``stilt``) and its scratch.

Deployment settings (where scratch goes, where caches live, how the clusters
the package builds are tuned) differ per machine, so they come from Dask's
configuration system rather than a project's config.yaml; see ``stilt.yaml``
beside this module for every key.

Importing this module only adds defaults: the ``stilt`` namespace, and the
expected run time of pystilt_dask's own ``stilt-sim`` tasks (a key no other
workload uses). Settings that would change other Dask workloads of the process
(``stilt.cluster-config``) are applied only to the schedulers and workers of the
clusters pystilt_dask builds (:func:`cluster_config`, :func:`cluster_env`), and
where numba caches the package's kernels changes only where pystilt_dask owns
the process (:func:`use_own_numba_cache`).

HYSPLIT runs in work directories under a private per-user compute root
(:func:`compute_root`), each marked with the process that made it
(:func:`new_workdir`), so that the directories of killed runs can be removed
when a worker next starts (:func:`clean_stale_workdirs`).
"""

from __future__ import annotations

import functools
import getpass
import json
import logging
import os
import shutil
import socket
import stat
import sys
import tempfile
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask.config
import psutil
import yaml

logger = logging.getLogger(__name__)

_DEFAULTS_FILE = Path(__file__).with_name("stilt.yaml")
#: File in every work directory :func:`new_workdir` makes: host, pid and start
#: time of the process that made it, read by :func:`clean_stale_workdirs`.
OWNER_FILE = ".stilt-owner"


def _register() -> None:
    with _DEFAULTS_FILE.open() as f:
        dask.config.update_defaults(yaml.safe_load(f))


def setting(key: str) -> Any:
    """Return the deployment setting ``stilt.<key>`` (see ``stilt.yaml`` for every key).

    Parameters
    ----------
    key : str
        E.g. ``"keep-failed-workdirs"``.
    """
    return dask.config.get(f"stilt.{key}")


# --- settings for the clusters pystilt_dask builds ---------------------------------


def cluster_config() -> dict[str, Any]:
    """Return ``stilt.cluster-config`` as flat dotted keys, for ``dask.config.set``.

    These are Dask settings that suit simulation tasks (minute-long, mostly
    waiting on ``hycs_std``) but not every Dask workload, so they are applied only
    where pystilt_dask builds a scheduler or worker (see
    :mod:`pystilt_dask.execution.clusters`), never at import.

    Returns
    -------
    dict
        E.g. ``{"distributed.admin.tick.interval": "100ms", ...}``; empty when
        the user set ``stilt.cluster-config`` to ``{}`` or ``null``.
    """
    return _flatten(dask.config.get("stilt.cluster-config", None) or {})


def cluster_env() -> dict[str, str]:
    """Return :func:`cluster_config` as ``DASK_*`` environment variables.

    For schedulers and workers started elsewhere (Slurm jobs, Kubernetes pods):
    Dask reads these when it is imported there. ``distributed.admin.tick.interval``
    becomes ``DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL``.
    """
    env = {}
    for key, value in cluster_config().items():
        name = "DASK_" + key.upper().replace(".", "__").replace("-", "_")
        # Dask parses values with ast.literal_eval: JSON for lists and mappings reads back.
        env[name] = value if isinstance(value, str) else json.dumps(value)
    return env


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    # dask.config.set({"distributed": {...}}) would replace the whole subtree;
    # dotted keys change only the leaves.
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


# --- scratch ------------------------------------------------------------------------


def compute_root() -> Path:
    """Return the directory under which HYSPLIT work directories are made.

    ``stilt.compute-root`` wins when set (created with mode 0700 if missing).
    Otherwise a private directory ``pystilt_dask-<uid>`` in ``/dev/shm`` when
    that exists, is writable and has ``stilt.compute-root-min-free`` bytes free
    (HYSPLIT's scratch is then never written to disk), else in the system
    temporary directory. It is created with mode 0700: other users cannot read
    the particles in it, nor plant files or links there.

    Returns
    -------
    pathlib.Path
        An existing directory.

    Raises
    ------
    PermissionError
        When the default directory exists but is a symbolic link, not a directory
        or owned by another user: pystilt_dask refuses to run HYSPLIT there.

    Warns
    -----
    UserWarning
        When the default directory is this user's but group or others may use
        it; its mode is then reset to 0700.
    """
    configured = dask.config.get("stilt.compute-root")
    if configured:
        root = Path(configured).expanduser()
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        return root
    shm = Path("/dev/shm")
    min_free = int(dask.config.get("stilt.compute-root-min-free"))
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free >= min_free:
        base = shm
    else:
        base = Path(tempfile.gettempdir())
    return _private_dir(base / f"pystilt_dask-{_user_id()}")


def _user_id() -> str:
    return str(os.getuid()) if hasattr(os, "getuid") else getpass.getuser()


def _private_dir(path: Path) -> Path:
    """Make ``path`` (mode 0700) or check that the existing one is this user's alone."""
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass  # made earlier, or by another worker a moment ago: check it like any other
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        # A link planted in a shared directory would send our files elsewhere.
        raise PermissionError(
            f"scratch directory {path} is not a directory (a symbolic link?): refusing to "
            "run HYSPLIT there; remove it or set stilt.compute-root"
        )
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise PermissionError(
            f"scratch directory {path} belongs to uid {info.st_uid}, not to this user "
            f"(uid {os.getuid()}): refusing to run HYSPLIT there; remove it or set "
            "stilt.compute-root"
        )
    if info.st_mode & 0o077:
        warnings.warn(
            f"scratch directory {path} had mode {stat.S_IMODE(info.st_mode):o}; "
            "setting it to 700 so that other users cannot read or change it",
            stacklevel=3,
        )
        path.chmod(0o700)
    return path


def new_workdir(name: str) -> Path:
    """Make a fresh work directory ``<compute root>/<name>-<random>``, marked as this process's.

    The mark (:data:`OWNER_FILE`) lets :func:`clean_stale_workdirs` tell the
    directories of live runs from those a killed process left behind. Remove
    the mark with :func:`keep_workdir` to keep a directory on purpose.

    Parameters
    ----------
    name : str
        Start of the directory's name (a simulation id).

    Returns
    -------
    pathlib.Path
        The new, empty directory (but for the mark), mode 0700.
    """
    path = compute_root() / f"{name}-{uuid.uuid4().hex[:8]}"
    path.mkdir(mode=0o700)
    (path / OWNER_FILE).write_text(_owner_stamp(os.getpid()))
    return path


def keep_workdir(path: str | os.PathLike[str]) -> None:
    """Unmark a work directory kept on purpose (a failed run's, for diagnosis).

    :func:`clean_stale_workdirs` leaves unmarked directories alone.
    """
    (Path(path) / OWNER_FILE).unlink(missing_ok=True)


@functools.lru_cache(maxsize=4)
def _owner_stamp(pid: int) -> str:
    # Keyed by pid: a forked child must not write its parent's stamp. The start
    # time tells a live process from a later one that got the same pid.
    started = psutil.Process(pid).create_time()
    return json.dumps({"host": socket.gethostname(), "pid": pid, "started": started})


def clean_stale_workdirs(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove the work directories whose maker process is gone.

    A directory is stale when its :data:`OWNER_FILE` names this host and a
    process that no longer runs (its pid is free, or now belongs to a process
    started at another time): a worker killed mid-simulation (OOM, ``kill -9``,
    a lost node) leaves its particle files behind, in RAM on ``/dev/shm``.
    Directories without a mark (being made, kept on purpose, or from another
    version), marked by another host (a shared compute root) or by a live
    process are left alone.

    Parameters
    ----------
    root : str or os.PathLike, optional
        Where to look; default :func:`compute_root`.

    Returns
    -------
    list of pathlib.Path
        The directories removed.
    """
    root = Path(root) if root is not None else compute_root()
    host = socket.gethostname()
    removed = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if not entry.is_dir(follow_symlinks=False):
            continue
        try:
            owner = json.loads(Path(entry.path, OWNER_FILE).read_text())
            pid, started, made_on = int(owner["pid"]), float(owner["started"]), owner["host"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # no readable mark: not ours to judge
        if made_on != host or process_alive(pid, started):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    if removed:
        logger.info("removed %d work directories of dead runs from %s", len(removed), root)
    return removed


def process_alive(pid: int, started: float) -> bool:
    """Whether process ``pid``, started at ``started`` (psutil's create time), still runs here."""
    try:
        process = psutil.Process(pid)
        # create_time is computed the same way for the same process: a gap means
        # the pid was reused.
        return abs(process.create_time() - started) < 1.0 and (
            process.status() != psutil.STATUS_ZOMBIE
        )
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # not allowed to look: assume it runs


# --- numba's kernel cache -------------------------------------------------------------


def numba_cache_dir() -> Path:
    """Return the directory numba caches pystilt_dask's kernels in.

    ``stilt.cache-dir``/numba when set, else ``<user cache dir>/pystilt_dask/numba``.
    """
    configured = dask.config.get("stilt.cache-dir")
    if configured:
        return Path(configured).expanduser() / "numba"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pystilt_dask" / "numba"


def use_own_numba_cache() -> None:
    """Cache pystilt_dask's numba kernels in :func:`numba_cache_dir` from now on.

    By default numba caches a kernel beside its source: inside site-packages for
    an installed package, where uninstalling leaves the cache files behind, and
    their folders then form a namespace package that shadows a later editable
    install (``pip install .``, run, ``pip install -e .``). This moves the cache
    of pystilt_dask's kernels alone: other numba code keeps its own, and
    ``NUMBA_CACHE_DIR``, when set, wins.

    It changes numba's cache locators for the whole process, so it is called
    only where pystilt_dask owns the process: by ``stilt-dask`` and by the
    preload of the worker processes pystilt_dask starts
    (:mod:`pystilt_dask.execution.preload`); a plain import keeps numba's
    default. Kernels already defined are moved too. Calling it again does nothing.
    """
    from numba.core import caching
    from numba.core.dispatcher import Dispatcher

    locator = _package_cache_locator()
    locators = caching.CacheImpl._locator_classes
    if locator in locators:
        return
    locators.insert(0, locator)
    # A kernel picks its cache's place when it is defined (at import): ask again.
    package = __name__.rpartition(".")[0]
    for name, module in list(sys.modules.items()):
        if name != package and not name.startswith(f"{package}."):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, Dispatcher) and not isinstance(value._cache, caching.NullCache):
                value.enable_caching()


@functools.cache
def _package_cache_locator() -> type:
    from numba.core import caching, config

    package = Path(__file__).resolve().parent

    class PackageCacheLocator(caching.UserProvidedCacheLocator):
        """Places the cache of this package's kernels, and of no other code's."""

        def __init__(self, py_func, py_file) -> None:
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            subpath = self.get_suitable_cache_subpath(py_file)
            self._cache_path = str(numba_cache_dir() / subpath)

        @classmethod
        def from_function(cls, py_func, py_file):
            if config.CACHE_DIR or not Path(py_file).resolve().is_relative_to(package):
                return None  # the user's NUMBA_CACHE_DIR, or not one of our kernels
            return super(caching.UserProvidedCacheLocator, cls).from_function(py_func, py_file)

    return PackageCacheLocator


_register()
