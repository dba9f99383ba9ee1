"""Execution settings: the Dask cluster, its scaling, and cutting the met per batch."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .sections import Section


class AdaptConfig(Section):
    """Bounds for adaptive scaling of the Dask cluster."""

    minimum: int = Field(0, ge=0)
    maximum: int = Field(gt=0)


class CropConfig(Section):
    """Cut the met each batch of simulations reads once, as a task they depend on.

    Parameters
    ----------
    reach_km : float
        How far particles travel from their release during a run (km): the crop
        is the batch's release points widened by it each way (docs/meteorology.md,
        *Choosing the reach*). A run whose particles reach a cut edge fails, naming it.
    destination : str or None
        Folder or URL every worker reads, the crops go under; ``None``: ``met-crops``
        in the project store.
    storage_options : dict
        fsspec options of ``destination``; default: the project's when it is
        ``None``, else none.
    batch_hours : int
        Receptors of one met and one UTC window of this many hours form a batch.
    batch_size : int
        Most simulations in a batch (split in time order), so a crop stays regional.
    """

    reach_km: float = Field(gt=0)
    destination: str | None = None
    storage_options: dict[str, Any] = Field(default_factory=dict)
    batch_hours: int = Field(24, gt=0)
    batch_size: int = Field(2000, gt=0)


class ExecutionConfig(Section):
    """How simulations are executed (a Dask cluster).

    Parameters
    ----------
    backend : {"local", "slurm", "kubernetes"}
        ``LocalCluster``, ``dask_jobqueue.SLURMCluster`` or ``dask_kubernetes`` ``KubeCluster``.
    n_workers : int or None
        Workers (one HYSPLIT at a time each); ``None``: one per core locally.
    adapt : AdaptConfig or None
        Scale adaptively between these bounds instead of a fixed ``n_workers``.
    cluster : dict
        Keyword arguments passed unchanged to the cluster class.
    retries : int
        Times a failed simulation task is retried by the scheduler.
    crop : CropConfig or None
        Cut each batch's met once, in a task its simulations depend on, and run
        HYSPLIT on the cut (see :doc:`/execution`); ``None``: read the met as it is.
    """

    backend: Literal["local", "slurm", "kubernetes"] = "local"
    n_workers: int | None = Field(None, gt=0)
    adapt: AdaptConfig | None = None
    cluster: dict[str, Any] = Field(default_factory=dict)
    retries: int = Field(2, ge=0)
    crop: CropConfig | None = None
