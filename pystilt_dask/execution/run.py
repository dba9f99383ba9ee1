"""A planned run of a project: which simulations, with which settings, and where.

As rechunker separates planning from executing, :meth:`Run.plan` does everything
that can fail on bad input (registering receptors, resolving the execution
profile and overrides) before any cluster starts, and reads the registry once:
the :class:`Run` it returns holds that snapshot, its task token and the owner of
its claims, and can be looked at before it runs (``repr``, or a table in
Jupyter). Every way to run goes through it: :meth:`Run.execute` (the one loop,
used by ``Model.run``, ``stilt-dask run`` and ``serve``), :meth:`Run.futures`
and :meth:`Run.to_delayed`, all building their tasks with :meth:`Run.task`.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dask
from dask.base import tokenize
from distributed import Client, Future, default_client
from distributed.core import Status
from distributed.deploy import Cluster, SpecCluster
from pydantic import ValidationError
from rich.console import Console
from tornado.ioloop import PeriodicCallback

from .. import preflight
from ..config import ExecutionConfig
from ..errors import ConfigError
from ..fingerprint import Fingerprint
from ..simulation import run_simulation
from ..store import claims
from ..store.completion import State
from ..store.registry import Registry
from ..store.status import status
from .clusters import make_cluster
from .console import follow
from .quiet import quiet_cancels
from .waves import Outcome, run_waves

if TYPE_CHECKING:
    from dask.delayed import Delayed

    from ..model import Model

#: Prefix of every simulation task key.
TASK_PREFIX = "stilt-sim-"

#: What a run does by default: every simulation not complete.
INCOMPLETE = (State.PENDING, State.RUNNING, State.FAILED, State.INTERRUPTED)

#: Seconds between looks at whether the cluster a run started gave a worker up.
KEEP_INTERVAL = 1.0


def task_key(token: str, sim_id: str) -> str:
    """The Dask task key of a simulation in a run with ``token``."""
    return f"{TASK_PREFIX}{token}-{sim_id}"


@dataclass(frozen=True)
class Run:
    """The simulations of a project to run, and the execution settings to run them with.

    Build it with :meth:`plan` (or :meth:`pystilt_dask.Model.plan`).

    Attributes
    ----------
    model : Model
        The project.
    sim_ids : tuple of str
        The simulations to run.
    execution : ExecutionConfig
        Resolved execution settings (profile and overrides applied).
    skip_existing : bool
        Whether tasks skip work whose results exist.
    registry : Registry
        The registry as read once when planning; tasks get their entries from it.
    token : str
        The project token in this run's task keys: its store and settings fingerprint.
    owner : str
        The owner of the claims this run's tasks take (one per run).
    """

    model: Model
    sim_ids: tuple[str, ...]
    execution: ExecutionConfig
    skip_existing: bool
    registry: Registry
    token: str
    owner: str

    @classmethod
    def plan(
        cls,
        model: Model,
        profile: str | None = None,
        skip_existing: bool = True,
        *,
        register: bool = True,
        states: Collection[State | str] = INCOMPLETE,
        **overrides: Any,
    ) -> Run:
        """Register pending receptors and decide what to run, with which settings.

        Parameters
        ----------
        model : Model
            The project.
        profile : str, optional
            Execution profile in the configuration; default: ``execution``.
        skip_existing : bool
            Run only simulations in ``states``; ``False`` redoes every one.
        register : bool
            Register the model's receptors first; ``False`` runs what the store
            holds (as ``serve`` does, which others feed).
        states : collection of State
            The states of the simulations to run (with ``skip_existing``).
        **overrides
            ``ExecutionConfig`` fields to override (``backend``, ``n_workers``,
            ``retries``, …); ``None`` values are ignored.

        Raises
        ------
        ConfigError
            For an unknown profile or an invalid override (naming it).
        """
        execution = _resolve(model, profile, overrides)
        if register and model.has_receptors:
            _, snapshot = model.register()
        else:
            snapshot = model.sync()
        if skip_existing:
            ids = status(model.location, snapshot, model.completion).ids(*states)
        else:
            ids = snapshot.sim_ids
        if register:  # serve (register=False) tries what others feed; failures are recorded
            preflight.require(preflight.check_run(model, snapshot, ids))
        token = tokenize(model.location.root, Fingerprint.of(model.config).token)[:10]
        return cls(model, tuple(ids), execution, skip_existing, snapshot, token, claims.new_owner())

    def __len__(self) -> int:
        return len(self.sim_ids)

    def _facts(self) -> dict[str, str]:
        execution = self.execution
        size = (
            f"adaptive {execution.adapt.minimum}–{execution.adapt.maximum}"
            if execution.adapt
            else str(execution.n_workers or "one per core")
        )
        return {
            "project": self.model.location.root,
            "simulations": f"{len(self)} of {len(self.registry)} registered"
            + ("" if self.skip_existing else " (redoing complete ones)"),
            "where": f"the client given, the default client, or a new {execution.backend} "
            f"cluster ({size} workers)",
            "retries": str(execution.retries),
            "task keys": task_key(self.token, "<sim_id>"),
        }

    def __repr__(self) -> str:
        facts = "\n".join(f"  {key}: {value}" for key, value in self._facts().items())
        return f"<Run\n{facts}>"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in self._facts().items()
        )
        return f"<table><caption>pystilt_dask Run</caption>{rows}</table>"

    def task(self, sim_id: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The arguments of one simulation's task: ``run_simulation(*args, **kwargs)``.

        The one constructor of simulation tasks, whichever way they are sent.
        """
        location, config = self.model.location, self.model.config
        entry = self.registry.entry(sim_id)
        return (location, sim_id, config, self.skip_existing, entry), {"owner": self.owner}

    def submit(self, client: Client, sim_id: str) -> Future:
        """Send one simulation's task to ``client``; return its future."""
        args, kwargs = self.task(sim_id)
        return client.submit(
            run_simulation, *args, **kwargs, key=task_key(self.token, sim_id),
            retries=self.execution.retries, pure=False,
        )  # fmt: skip

    def futures(self, client: Client) -> list[Future]:
        """Send every simulation at once and return the futures (no waves)."""
        return [self.submit(client, sim_id) for sim_id in self.sim_ids]

    def to_delayed(self) -> list[Delayed]:
        """One ``dask.delayed`` per simulation, keyed as on a cluster.

        Computable with ``dask.compute`` on any scheduler (threads, processes,
        distributed) and composable with other graphs; each returns the
        simulation's state.
        """
        task = dask.delayed(run_simulation, pure=False)
        out = []
        for sim_id in self.sim_ids:
            args, kwargs = self.task(sim_id)
            out.append(task(*args, **kwargs, dask_key_name=task_key(self.token, sim_id)))
        return out

    def outcomes(
        self,
        client: Client,
        window: int | None = None,
        notify: Callable[[str], None] | None = None,
    ) -> Iterator[Outcome]:
        """Run on ``client`` in bounded waves, yielding each simulation's outcome.

        ``notify`` gets a line whenever what the run waits for (simulations held
        by other coordinators) changes; default: a logged warning.
        """
        return run_waves(client, self, window, notify)

    def execute(
        self,
        client: Client | Cluster | str | None = None,
        *,
        quiet: bool = False,
        console: Console | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> dict[str, str]:
        """Run every simulation and return its resulting state.

        The one loop every run goes through. Interrupting it (Ctrl-C) cancels the
        tasks in flight and closes what it started; what finished is stored.

        Parameters
        ----------
        client : distributed.Client, cluster or str, optional
            Where to run: a client, a cluster object, a scheduler address; default:
            the current default client, else a cluster built from :attr:`execution`
            (closed when the run ends).
        quiet : bool
            Show no dashboard link and no progress bar.
        console : rich.console.Console, optional
            Where to show them; default: a new console on standard output.
        on_outcome : callable, optional
            Called with each :class:`Outcome` as it arrives.
        """
        if not self.sim_ids:
            return {}
        console = console or Console(quiet=quiet)
        states: dict[str, str] = {}
        with connect(client, self.execution) as active:
            console.print(f"Dask dashboard: {active.dashboard_link}", highlight=False)

            def say(line: str) -> None:
                console.print(line, markup=False, highlight=False, soft_wrap=True)

            for outcome in follow(self.outcomes(active, notify=say), len(self), console, active):
                states[outcome.sim_id] = outcome.state
                if on_outcome is not None:
                    on_outcome(outcome)
        return states


def _resolve(model: Model, profile: str | None, overrides: dict[str, Any]) -> ExecutionConfig:
    """The execution settings of ``profile`` with ``overrides`` applied."""
    execution = model.config.execution_for(profile)
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if not overrides:
        return execution
    try:
        return ExecutionConfig.model_validate({**execution.model_dump(), **overrides})
    except ValidationError as exc:
        where = ".".join(str(p) for p in exc.errors()[0]["loc"])
        raise ConfigError(f"execution override {where}: {exc.errors()[0]['msg']}") from None


@contextmanager
def connect(client: Client | Cluster | str | None, execution: ExecutionConfig) -> Iterator[Client]:
    """Yield a client: ``client``, one of a cluster or address, the default, or a new cluster's.

    What this function started (a client of a given cluster or address, a new
    cluster) is closed on exit; what the caller gave is left running. A new
    cluster is kept at its size while it is used (see :func:`keep_workers`).

    Raises
    ------
    ConfigError
        When a scheduler address does not answer.
    """
    if isinstance(client, Client):
        yield client
        return
    if isinstance(client, str):
        try:
            own = Client(client, timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"cannot reach the Dask scheduler {client}: {exc}") from None
        with own:
            yield own
        return
    if isinstance(client, Cluster):
        with Client(client) as own:
            yield own
        return
    try:
        given = default_client()
    except ValueError:
        given = None
    if given is not None:
        yield given
        return
    with (
        quiet_cancels(),
        make_cluster(execution) as cluster,
        Client(cluster) as own,
        keep_workers(cluster),
    ):
        yield own


@contextmanager
def keep_workers(cluster: Cluster) -> Iterator[None]:
    """Replace the workers ``cluster`` gives up for good while the block runs.

    A ``SpecCluster`` (``LocalCluster``, ``SLURMCluster``) closes a worker's
    nanny or job for good when, ``distributed.deploy.lost-worker-timeout`` (15 s)
    after the scheduler lost the worker, no worker of its name is back, and never
    replaces it. A task that kills its worker on every attempt makes that likely
    (the nanny is restarting the worker just then); once every worker is given
    up, the tasks left wait forever for a worker, and so does a run. Each worker
    given up (or whose nanny or job failed) while its cluster still counts it is
    replaced by a new one under a name not used before, as the old one may still
    register for a moment. Workers a cluster retires (scaling down, adapting)
    are not replaced; other clusters are left alone.

    Parameters
    ----------
    cluster : distributed.deploy.Cluster
        A running cluster.
    """
    if not isinstance(cluster, SpecCluster):
        yield
        return
    ended = (Status.closed, Status.failed)

    def alive() -> set[Any]:
        return {name for name, w in list(cluster.workers.items()) if w.status not in ended}

    # Workers still starting (jobs in a queue) are counted once they have started.
    seen = alive()

    def look() -> None:  # on the cluster's event loop, as the cluster's own changes
        nonlocal seen
        present = alive()
        failed = {name for name, w in cluster.workers.items() if w.status in ended}
        lost = ((seen - present) | failed) & set(cluster.worker_spec)
        seen = present
        if not lost or cluster.status != Status.running:
            return
        for _ in lost:  # while the lost names still hold their places: new names
            cluster.worker_spec.update(cluster.new_worker_spec())
        for name in lost:
            del cluster.worker_spec[name]
        # Starts the new ones, closes what is left of the lost ones; the base class
        # counts entries of the spec (SLURMCluster's own scale counts workers).
        SpecCluster.scale(cluster, len(cluster.worker_spec))

    watch = PeriodicCallback(look, KEEP_INTERVAL * 1000)
    cluster.loop.add_callback(watch.start)
    try:
        yield
    finally:
        cluster.loop.add_callback(watch.stop)


def start_client(execution: ExecutionConfig) -> Client:
    """The default client, else a client of a new cluster that lives until closed."""
    try:
        return default_client()
    except ValueError:
        return Client(make_cluster(execution))
