"""Build the Dask cluster an :class:`~pystilt_dask.config.ExecutionConfig` describes.

The three backends are interchangeable Dask clusters: ``LocalCluster``,
``dask_jobqueue.SLURMCluster`` and ``dask_kubernetes.operator.KubeCluster``.
Every worker advertises one ``hysplit`` resource, so each worker runs one
HYSPLIT at a time; local and Kubernetes workers run one thread, Slurm workers
as many as the user's or the site's ``jobqueue.slurm`` settings give them
(see :mod:`.slurm`). Optional backends are imported only when used.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import threading
from typing import Any

import dask.config

from .. import defaults  # noqa: F401  (the stilt defaults, incl. task durations, first)
from ..config import ExecutionConfig
from ..errors import ConfigError

#: Module every worker preloads to import and warm the simulation code at start.
PRELOAD = "pystilt_dask.execution.preload"
#: Arguments every worker gets: one task at a time, one HYSPLIT slot, warmed up.
SLOT_ARGS = ["--resources", "hysplit=1", "--preload", PRELOAD]
WORKER_ARGS = ["--nthreads", "1", *SLOT_ARGS]
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
SCHEDULER_DURATION_ENV = {
    "name": "DASK_DISTRIBUTED__SCHEDULER__DEFAULT_TASK_DURATIONS",
    "value": json.dumps(
        {"stilt-sim": dask.config.get("distributed.scheduler.default-task-durations.stilt-sim")}
    ),
}


def make_cluster(execution: ExecutionConfig) -> Any:
    """Start the cluster for ``execution`` and scale it (fixed or adaptive).

    Parameters
    ----------
    execution : ExecutionConfig
        Backend, size and extra keyword arguments for the cluster class.

    Returns
    -------
    distributed.deploy.Cluster
        A running cluster; the caller closes it.

    Raises
    ------
    ConfigError
        When the backend's optional dependency is missing (naming the extra to install).
    """
    builders = {"local": _local, "slurm": _slurm, "kubernetes": _kubernetes}
    cluster = builders[execution.backend](execution)
    if execution.adapt is not None:
        cluster.adapt(minimum=execution.adapt.minimum, maximum=execution.adapt.maximum)
    elif execution.backend != "local":
        cluster.scale(execution.n_workers or 1)
    return cluster


def _local(execution: ExecutionConfig) -> Any:
    from distributed import LocalCluster

    # Threads, not processes, by default: HYSPLIT is a subprocess and the Python
    # around it (~0.3 s a simulation) mostly runs GIL-free kernels and I/O, so worker
    # processes would only add their start-up, imports and warm-up (6% of the CPU of
    # a 20 x 100-particle x 24 h run). `cluster: {processes: true}` isolates workers.
    kwargs: dict[str, Any] = {
        "n_workers": 0 if execution.adapt else (execution.n_workers or os.cpu_count() or 1),
        "threads_per_worker": 1,
        "processes": False,
        "resources": {"hysplit": 1},
        "preload": [PRELOAD],
    }
    kwargs.update(execution.cluster)
    # Worker processes (with processes: true) inherit an ignored SIGINT, so Ctrl-C in a
    # terminal reaches only the coordinator, which cancels cleanly.
    if threading.current_thread() is not threading.main_thread():
        return LocalCluster(**kwargs)  # only the main thread may change signal handlers
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return LocalCluster(**kwargs)
    finally:
        signal.signal(signal.SIGINT, previous)


def _slurm(execution: ExecutionConfig) -> Any:
    # Only what the user set, plus the worker slot: SLURMCluster takes the rest
    # from the site's jobqueue.yaml (see slurm.slurm_cluster_kwargs).
    from .slurm import slurm_cluster_kwargs

    kwargs = slurm_cluster_kwargs(execution.cluster)
    from dask_jobqueue import SLURMCluster

    return SLURMCluster(**kwargs)


def kubernetes_spec(execution: ExecutionConfig, name: str = "stilt-dask") -> dict[str, Any]:
    """Return the DaskCluster custom resource for ``execution``.

    ``execution.cluster`` must hold ``image`` (one with pystilt_dask and
    ``hycs_std`` installed) and may hold ``resources`` (requests/limits),
    ``env`` (a mapping, or a list of Kubernetes ``EnvVar`` objects such as
    ``valueFrom.secretKeyRef``), ``scheduler_service_type`` (default ``ClusterIP``)
    and ``name``; the worker containers get one thread and the ``hysplit`` resource.
    Numbers in ``resources`` and in an ``env`` mapping become strings.
    """
    try:
        from dask_kubernetes.operator import make_cluster_spec
    except ImportError:
        raise ConfigError(
            "backend 'kubernetes' needs dask-kubernetes: pip install 'pystilt-dask[kubernetes]'"
        ) from None
    options = dict(execution.cluster)
    unknown = set(options) - {"image", "resources", "env", "scheduler_service_type", "name"}
    if unknown:
        raise ConfigError(f"execution.cluster: unknown kubernetes options {sorted(unknown)}")
    if "image" not in options:
        raise ConfigError(
            "execution.cluster.image is required for backend 'kubernetes': "
            "an image with pystilt_dask and hycs_std installed"
        )
    service = options.get("scheduler_service_type", "ClusterIP")
    if service not in SERVICE_TYPES:
        raise ConfigError(
            f"execution.cluster.scheduler_service_type {service!r} is not one of {SERVICE_TYPES}"
        )
    # YAML reads `cpu: 1` and `OMP_NUM_THREADS: 1` as numbers, but the DaskCluster CRD
    # types quantities and env values as strings: the API server would refuse them.
    resources = copy.deepcopy(options.get("resources"))
    for kind in ("requests", "limits"):
        if resources and isinstance(resources.get(kind), dict):
            resources[kind] = {key: str(value) for key, value in resources[kind].items()}
    env = options.get("env")
    if isinstance(env, dict):
        env = {key: "" if value is None else str(value) for key, value in env.items()}
    spec = make_cluster_spec(
        name=options.get("name", name),
        image=options["image"],
        n_workers=execution.n_workers or 1,
        resources=resources,
        env=env,
        scheduler_service_type=service,
    )
    # make_cluster_spec shares one resources dict between scheduler and worker.
    spec = copy.deepcopy(spec)
    for container in spec["spec"]["worker"]["spec"]["containers"]:
        container["args"] = [*container.get("args", []), *WORKER_ARGS]
    # The scheduler pod never imports pystilt_dask: give it the task-duration hint here.
    for container in spec["spec"]["scheduler"]["spec"]["containers"]:
        container["env"] = [*(container.get("env") or []), SCHEDULER_DURATION_ENV]
    return _prune_nulls(spec)


def _prune_nulls(obj: Any) -> Any:
    # The API server drops nulls (e.g. `env: null`) that the CRD schema does not allow.
    if isinstance(obj, dict):
        return {k: _prune_nulls(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_prune_nulls(v) for v in obj]
    return obj


def _kubernetes(execution: ExecutionConfig) -> Any:
    spec = kubernetes_spec(execution)
    from dask_kubernetes.operator import KubeCluster

    return KubeCluster(custom_cluster_spec=spec, shutdown_on_close=True)
