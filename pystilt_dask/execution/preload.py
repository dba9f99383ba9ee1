"""Worker preload (``--preload pystilt_dask.execution.preload``): set a worker up.

A worker's first simulation would otherwise spend about half a second loading
the numba kernels from their cache after its HYSPLIT run. The preload loads them
in a background thread instead, once per process, while the worker starts and
its first HYSPLIT runs, so neither the start nor a HYSPLIT slot waits for it.

It also removes the work directories that killed runs left in the compute root
(:func:`pystilt_dask.defaults.clean_stale_workdirs`), and, in a worker process
of its own (one a nanny started), tunes glibc's allocator for the way
simulations use memory, caches the kernels in pystilt_dask's own numba cache
(:func:`pystilt_dask.defaults.use_own_numba_cache`) and keeps distributed's notes
on cancelled tasks from the terminal (:mod:`.quiet`). A worker that shares the
user's process (a threads ``LocalCluster``) leaves both alone: that process is
the user's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import DEFAULT_VARSIWANT, FootprintConfig
from ..defaults import clean_stale_workdirs, use_own_numba_cache
from ..footprint import calc_footprint
from ..hysplit.particles import read_particle_file
from ..nearfield import apply_hnf_plume
from ..receptors import PointReceptor
from ..simulation import run_simulation  # noqa: F401  (the task's imports)
from .quiet import quiet_cancels_in_worker_process

#: glibc ``mallopt`` parameters, and the values set by :func:`tune_allocator`.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 64 * 2**20
TRIM_THRESHOLD = 256 * 2**20

logger = logging.getLogger(__name__)
#: Whether :func:`dask_setup` tuned this process's allocator (``None``: no worker set up yet).
ALLOCATOR_TUNED: bool | None = None


def tune_allocator() -> bool:
    """Keep freed blocks of up to 64 MiB in the heap for reuse (glibc only).

    Every simulation allocates and frees the same few hundred MB (particle
    columns, the footprint chunk). By default glibc maps blocks over 32 MiB
    fresh from the kernel and hands freed heap space back, so each simulation
    faults its memory in again and the kernel zeroes it page by page: 2.5% of
    the CPU of a 20-simulation run, and page-fault contention between worker
    threads. Returns whether the allocator is glibc's.
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(libc, "mallopt"):
        return False
    return bool(
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def warm_up() -> None:
    """Run the parser, the near-field correction and the footprint kernels once on toy data."""
    rows = 40
    table = pd.DataFrame({name: np.ones(rows) for name in DEFAULT_VARSIWANT})
    table["indx"] = np.tile([1.0, 2.0], rows // 2)
    table["time"] = -np.repeat(np.arange(1.0, rows // 2 + 1), 2)
    table["long"] = -100.0 + 0.001 * np.arange(rows)
    table["lati"] = 40.0
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "PARTICLE_STILT.DAT"
        np.savetxt(path, table.to_numpy(), header="40.0 -100.0 5.0", comments="")
        parsed = read_particle_file(path, DEFAULT_VARSIWANT)
    corrected = apply_hnf_plume(parsed, np.full(rows, 5.0), 0.5)
    receptor = PointReceptor(time="2000-01-01", longitude=-100.0, latitude=40.0, altitude=5)
    grid = FootprintConfig(xmin=-100.1, xmax=-99.9, ymin=39.9, ymax=40.1, xres=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calc_footprint(corrected, receptor, grid)


_STARTED = threading.Lock()


def dask_setup(worker: Any) -> None:
    """Dask's preload hook: clean up, tune the process and start warming up.

    Parameters
    ----------
    worker : distributed.Worker
        The worker being started. The allocator is tuned and numba's cache
        placed only when it runs in a process of its own, i.e. a nanny started
        it (``worker.nanny`` is set): both change the whole process, and an
        in-process worker's process is the user's. Everything else happens
        once per process.
    """
    global ALLOCATOR_TUNED
    if getattr(worker, "nanny", None):
        use_own_numba_cache()  # before the warm-up loads the kernels
        ALLOCATOR_TUNED = tune_allocator()
        quiet_cancels_in_worker_process()
    elif ALLOCATOR_TUNED is None:
        ALLOCATOR_TUNED = False
    # Workers that share a process (threads of one LocalCluster) share the kernels.
    if _STARTED.acquire(blocking=False):
        try:
            clean_stale_workdirs()
        except OSError as error:
            # A compute root that cannot be used fails every simulation with the
            # reason; failing the worker's start here would only hide it.
            logger.warning("could not clean the compute root: %s", error)
        threading.Thread(target=_warm_up_quietly, name="stilt-warm-up", daemon=True).start()


def dask_teardown(worker: Any) -> None:
    """Dask's preload hook at a worker's close: let a process of its own exit at once.

    Such a process ends with its worker, and the interpreter's final garbage
    collections of the simulation code's objects took 1.3 s of a worker's exit
    (more on a busy machine): long enough for its nanny to give up waiting (after
    4 s), kill it and warn. Frozen objects are left to the exit. A worker in the
    user's process leaves that process's collector alone.
    """
    if getattr(worker, "nanny", None):
        gc.freeze()


def _warm_up_quietly() -> None:
    # Only a head start: a worker closed while this runs (the interpreter then
    # refuses new threads) must not print a traceback, and any real problem shows
    # in the first simulation.
    try:
        warm_up()
    except Exception as error:
        logger.debug("warm-up stopped: %r", error)
