"""The ``stilt-dask`` command line: a thin layer over :class:`~pystilt_dask.model.Model`.

:mod:`.app` holds the application and what its commands share; the commands
live by what they work on (:mod:`.running`, :mod:`.check`, :mod:`.project`,
:mod:`.met`, :mod:`.results`).
"""

from __future__ import annotations

import gc

from ..defaults import use_own_numba_cache
from .app import app

# Each module registers its commands, which --help lists in this order.
# isort: off
from . import running, check, claims, project, met, results  # noqa: F401
# isort: on

__all__ = ["app", "main"]


def main() -> None:
    """The ``stilt-dask`` console script."""
    use_own_numba_cache()  # this process is ours: keep our kernels' cache out of site-packages
    try:
        app()
    finally:
        # The exit frees everything at once; frozen objects are left out of the
        # interpreter's final collections, which took about 1 s after a run.
        gc.freeze()
