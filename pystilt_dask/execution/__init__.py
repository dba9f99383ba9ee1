"""Execution on Dask clusters: cluster construction and bounded-wave submission."""

from .clusters import kubernetes_spec, make_cluster
from .runner import connect, run_model
from .submit import Outcome, run_waves

__all__ = ["Outcome", "connect", "kubernetes_spec", "make_cluster", "run_model", "run_waves"]
