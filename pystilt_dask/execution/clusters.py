"""Build the Dask cluster an :class:`~pystilt_dask.config.ExecutionConfig` describes.

The three backends are interchangeable Dask clusters: ``LocalCluster``,
``dask_jobqueue.SLURMCluster`` and ``dask_kubernetes.operator.KubeCluster``
(see :mod:`.kubernetes`). Every worker advertises one ``hysplit`` resource, so
each worker runs one HYSPLIT at a time; local and Kubernetes workers run one
thread, Slurm workers as many as the user's or the site's ``jobqueue.slurm``
settings give them (see :mod:`.slurm`). Optional backends are imported only
when used.

The clusters built here, and only these, get ``stilt.cluster-config`` (Dask
monitor intervals suited to minute-long tasks; :func:`pystilt_dask.defaults.cluster_config`):
local schedulers and workers as they are built, Slurm jobs and Kubernetes pods
through ``DASK_*`` environment variables. Local clusters listen on
``stilt.local-cluster.host`` (127.0.0.1) unless told otherwise.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import threading
from typing import Any

import dask.config
from distributed import LocalCluster, Nanny, Scheduler, Worker
from distributed.utils import clean_dashboard_address, format_dashboard_link

from .. import defaults
from ..config import ExecutionConfig
from .workers import PRELOAD

# Addresses that mean "every interface": a link to one names no reachable host.
_WILDCARDS = ("", "0.0.0.0", "::")


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


class TunedScheduler(Scheduler):
    """A ``Scheduler`` built with ``stilt.cluster-config`` in force.

    Dask's servers read their monitor intervals from ``dask.config`` when they
    are built, so the settings are in force for exactly that long: the rest of
    the process keeps its own.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        with dask.config.set(defaults.cluster_config()):
            super().__init__(*args, **kwargs)

    def start_http_server(
        self, routes: Any, dashboard_address: Any, default_port: int = 0, ssl_options: Any = None
    ) -> None:
        """Serve the dashboard on its port, or quietly on a free one when another has it.

        Dask moves a dashboard whose port is taken (by a second cluster on the
        machine) to a free port itself, but warns, which a user cannot act on;
        the link names the port either way.
        """
        if dashboard_address is not None:
            dashboard_address = _free_or_any(dashboard_address)
        super().start_http_server(routes, dashboard_address, default_port, ssl_options)


class TunedWorker(Worker):
    """A ``Worker`` built with ``stilt.cluster-config`` in force (see :class:`TunedScheduler`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        with dask.config.set(defaults.cluster_config()):
            super().__init__(*args, **kwargs)


class TunedNanny(Nanny):
    """A ``Nanny`` built with ``stilt.cluster-config`` in force, starting :class:`TunedWorker`.

    The worker process it starts builds its own worker, after applying the
    nanny's snapshot of ``dask.config`` (taken without the settings, which only
    last while the nanny is built): the worker class applies them itself.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("worker_class") is None:
            kwargs["worker_class"] = TunedWorker
        with dask.config.set(defaults.cluster_config()):
            super().__init__(*args, **kwargs)


class StiltLocalCluster(LocalCluster):
    """``LocalCluster`` with a :class:`TunedScheduler`, and a dashboard link that works.

    Dask names the dashboard by the scheduler's address; a threads cluster's
    scheduler has an ``inproc://<this machine's IP>`` address while its
    dashboard may listen on 127.0.0.1 only. The link here names the address
    the dashboard listens on.
    """

    async def _start(self) -> None:
        # LocalCluster always builds a plain Scheduler; replace it before it is built.
        if self.scheduler_spec.get("cls") is Scheduler:
            self.scheduler_spec = {**self.scheduler_spec, "cls": TunedScheduler}
        await super()._start()

    @property
    def dashboard_link(self) -> str:
        """Link to the dashboard, naming the address it listens on."""
        server = getattr(getattr(self, "scheduler", None), "http_server", None)
        host = getattr(server, "address", None)
        if server is None or host is None or host in _WILDCARDS:
            return super().dashboard_link
        return format_dashboard_link(f"[{host}]" if ":" in host else host, server.port)


def local_cluster_kwargs(execution: ExecutionConfig) -> dict[str, Any]:
    """Keyword arguments of the ``LocalCluster`` for ``execution``.

    One thread and one ``hysplit`` slot per worker, the preload, threads by
    default, the tuned scheduler and worker classes, and every listener on
    ``stilt.local-cluster.host`` (127.0.0.1 by default). ``execution.cluster``
    wins over all of these.

    Parameters
    ----------
    execution : ExecutionConfig
        The ``local`` backend's settings.

    Returns
    -------
    dict
        Keyword arguments for :class:`StiltLocalCluster`.
    """
    settings = dask.config.get("stilt.local-cluster", None) or {}
    host = str(settings.get("host") or "127.0.0.1")
    port = int(settings.get("dashboard-port", 8787))
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
        # Dask's default, ":8787", serves the dashboard on every interface.
        "dashboard_address": _join(host, port),
    }
    kwargs.update(execution.cluster)
    if kwargs["processes"]:
        # Scheduler, nannies and workers talk TCP: bind them, and with them the
        # workers' HTTP servers, to `host` (Dask's choice without an interface).
        if "interface" not in kwargs:
            kwargs.setdefault("host", host)
        kwargs.setdefault("worker_class", TunedNanny)
    else:
        # In-process comms listen nowhere; only each worker's HTTP server opens a
        # port, on every interface unless given an address.
        kwargs.setdefault("worker_dashboard_address", _join(host, 0))
        kwargs.setdefault("worker_class", TunedWorker)
    return kwargs


def _local(execution: ExecutionConfig) -> Any:
    kwargs = local_cluster_kwargs(execution)
    # Worker processes (with processes: true) inherit an ignored SIGINT, so Ctrl-C in a
    # terminal reaches only the coordinator, which cancels cleanly.
    if threading.current_thread() is not threading.main_thread():
        return StiltLocalCluster(**kwargs)  # only the main thread may change signal handlers
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return StiltLocalCluster(**kwargs)
    finally:
        signal.signal(signal.SIGINT, previous)


def _slurm(execution: ExecutionConfig) -> Any:
    # Only what the user set, plus the worker slot: SLURMCluster takes the rest
    # from the site's jobqueue.yaml (see slurm.slurm_cluster_kwargs).
    from .slurm import _jobqueue_list, check_job_script, slurm_cluster_kwargs

    kwargs = slurm_cluster_kwargs(execution.cluster)
    from dask_jobqueue import SLURMCluster

    exports = [
        f"export {name}={shlex.quote(value)}" for name, value in defaults.cluster_env().items()
    ]
    if exports:
        # First, so that the user's or the site's own prologue lines win.
        section = f"jobqueue.{kwargs.get('config_name') or 'slurm'}"

        def configured(key: str) -> Any:
            return dask.config.get(f"{section}.{key}", None)

        prologue = _jobqueue_list(kwargs, configured, "job_script_prologue", "env_extra")
        kwargs["job_script_prologue"] = [*exports, *prologue]
    # The scheduler runs in this process.
    kwargs.setdefault("scheduler_cls", TunedScheduler)
    cluster = SLURMCluster(**kwargs)
    try:
        check_job_script(cluster.job_script())
    except BaseException:
        cluster.close()
        raise
    return cluster


def _kubernetes(execution: ExecutionConfig) -> Any:
    from .kubernetes import kube_cluster

    return kube_cluster(execution)


def _free_or_any(dashboard_address: Any) -> Any:
    """``dashboard_address``, or the same host with port 0 when its port is taken."""
    try:
        (wanted,) = clean_dashboard_address(dashboard_address)
    except (TypeError, ValueError):
        return dashboard_address  # several addresses, or a form Dask will judge itself
    host, port = wanted["address"], wanted["port"]
    if port == 0 or _bindable(host or "0.0.0.0", port):
        return dashboard_address
    return _join(host, 0)


def _bindable(host: str, port: int) -> bool:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError:
        return True  # an address Dask will report on itself
    for family, kind, protocol, _, address in found:
        with socket.socket(family, kind, protocol) as probe:
            # As tornado binds a listener: a port left in TIME_WAIT is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError:
                return False
    return True


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def __getattr__(name: str) -> Any:
    # kubernetes_spec moved to .kubernetes (imported only when used: the optional
    # backend); it stays importable from here for code written against earlier versions.
    if name == "kubernetes_spec":
        from .kubernetes import kubernetes_spec

        return kubernetes_spec
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
