"""The Kubernetes backend: a ``DaskCluster`` resource for the Dask operator, run by ``KubeCluster``.

:func:`kubernetes_spec` builds the resource from an
:class:`~pystilt_dask.config.ExecutionConfig`; :func:`kube_cluster` hands it to
the unmodified ``dask_kubernetes.operator.KubeCluster``. dask-kubernetes is
imported only when used (the ``kubernetes`` extra).
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import dask.config

from .. import defaults
from ..config import ExecutionConfig
from ..errors import ConfigError
from .workers import WORKER_ARGS

#: Kubernetes service types of the scheduler's Service; the first is the default.
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
#: Keys ``execution.cluster`` may hold for this backend.
OPTIONS = frozenset(
    {"image", "resources", "env", "scheduler_service_type", "name", "port_forward_cluster_ip"}
)
#: Environment variable telling a scheduler the expected run time of ``stilt-sim`` tasks.
TASK_DURATIONS_ENV = "DASK_DISTRIBUTED__SCHEDULER__DEFAULT_TASK_DURATIONS"


def kubernetes_spec(execution: ExecutionConfig, name: str = "stilt-dask") -> dict[str, Any]:
    """Return the ``DaskCluster`` custom resource for ``execution``.

    Parameters
    ----------
    execution : ExecutionConfig
        ``execution.cluster`` must hold ``image`` (one with pystilt_dask and
        ``hycs_std`` installed) and may hold ``resources`` (requests/limits),
        ``env`` (a mapping, or a list of Kubernetes ``EnvVar`` objects such as
        ``valueFrom.secretKeyRef``), ``scheduler_service_type`` (default
        ``ClusterIP``), ``name`` and ``port_forward_cluster_ip`` (for
        :func:`kube_cluster`; not part of the resource). The worker group starts
        with ``n_workers`` workers, or ``adapt.minimum`` when adaptive.
    name : str
        Name of the ``DaskCluster`` when ``execution.cluster`` gives none.

    Returns
    -------
    dict
        The resource, without nulls (the API server would prune them).

    Raises
    ------
    ConfigError
        When dask-kubernetes is missing, ``image`` is missing, or an option is
        unknown or has a bad value.

    Notes
    -----
    Worker containers get ``--nthreads 1``, the ``hysplit`` resource and the
    preload. Both containers get ``stilt.cluster-config`` as ``DASK_*``
    environment variables, and the scheduler the expected run time of a
    simulation task (it never imports pystilt_dask); a variable of the same
    name in ``env`` wins. Numbers in ``resources`` and in an ``env`` mapping
    become strings.
    """
    try:
        from dask_kubernetes.operator import make_cluster_spec
    except ImportError:
        raise ConfigError(
            "backend 'kubernetes' needs dask-kubernetes: pip install 'pystilt-dask[kubernetes]'"
        ) from None
    options = dict(execution.cluster)
    unknown = set(options) - OPTIONS
    if unknown:
        raise ConfigError(f"execution.cluster: unknown kubernetes options {sorted(unknown)}")
    if "image" not in options:
        raise ConfigError(
            "execution.cluster.image is required for backend 'kubernetes': "
            "an image with pystilt_dask and hycs_std installed"
        )
    service = options.get("scheduler_service_type", SERVICE_TYPES[0])
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
    replicas = execution.adapt.minimum if execution.adapt else (execution.n_workers or 1)
    spec = make_cluster_spec(
        name=options.get("name", name),
        image=options["image"],
        n_workers=replicas,
        resources=resources,
        env=env,
        scheduler_service_type=service,
    )
    # make_cluster_spec shares one resources dict between scheduler and worker.
    spec = copy.deepcopy(spec)
    tunings = defaults.cluster_env()
    for container in spec["spec"]["worker"]["spec"]["containers"]:
        container["args"] = [*container.get("args", []), *WORKER_ARGS]
        container["env"] = _with_env(container.get("env"), tunings)
    for container in spec["spec"]["scheduler"]["spec"]["containers"]:
        container["env"] = _with_env(container.get("env"), {**tunings, **_task_durations()})
    return _prune_nulls(spec)


def kube_cluster(execution: ExecutionConfig) -> Any:
    """Start a ``KubeCluster`` from :func:`kubernetes_spec` (deleted again when closed).

    A ``ClusterIP`` scheduler service (the default) is reached from outside the
    Kubernetes cluster through a port-forward. ``KubeCluster`` would first try
    the service's DNS name for about 20 s per port in case it runs inside the
    cluster, so pystilt_dask tells it where it runs: inside a pod (where
    Kubernetes sets ``KUBERNETES_SERVICE_HOST``) it resolves the name, elsewhere
    it port-forwards at once. ``execution.cluster.port_forward_cluster_ip`` or
    dask-kubernetes' own ``kubernetes.port-forward-cluster-ip`` setting wins.

    Parameters
    ----------
    execution : ExecutionConfig
        The ``kubernetes`` backend's settings.

    Returns
    -------
    dask_kubernetes.operator.KubeCluster
        A running cluster; the caller scales and closes it.
    """
    spec = kubernetes_spec(execution)
    from dask_kubernetes.operator import KubeCluster

    return KubeCluster(
        custom_cluster_spec=spec,
        shutdown_on_close=True,
        port_forward_cluster_ip=port_forward_cluster_ip(execution),
    )


def port_forward_cluster_ip(execution: ExecutionConfig) -> bool:
    """Whether ``KubeCluster`` should port-forward a ``ClusterIP`` service right away."""
    choice = execution.cluster.get("port_forward_cluster_ip")
    if choice is None:
        choice = dask.config.get("kubernetes.port-forward-cluster-ip", None)
    if choice is None:
        choice = "KUBERNETES_SERVICE_HOST" not in os.environ
    return bool(choice)


def _task_durations() -> dict[str, str]:
    hint = dask.config.get("distributed.scheduler.default-task-durations.stilt-sim", None)
    return {TASK_DURATIONS_ENV: json.dumps({"stilt-sim": hint})} if hint else {}


def _with_env(
    env: list[dict[str, Any]] | None, extra: dict[str, str]
) -> list[dict[str, Any]] | None:
    """``env`` followed by the ``extra`` variables it does not set itself (``None``: none)."""
    env = list(env or [])
    names = {item["name"] for item in env}
    env += [{"name": key, "value": value} for key, value in extra.items() if key not in names]
    return env or None


def _prune_nulls(obj: Any) -> Any:
    # The API server drops nulls (e.g. `env: null`) that the CRD schema does not allow.
    if isinstance(obj, dict):
        return {k: _prune_nulls(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_prune_nulls(v) for v in obj]
    return obj
