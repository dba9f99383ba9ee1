"""Execution on Dask: a planned :class:`Run`, cluster construction, bounded-wave submission."""

from .clusters import make_cluster
from .kubernetes import kubernetes_spec
from .run import Run, connect
from .waves import Outcome, run_waves

__all__ = ["Outcome", "Run", "connect", "kubernetes_spec", "make_cluster", "run_waves"]
