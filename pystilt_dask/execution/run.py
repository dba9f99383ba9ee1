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
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import dask
from dask.base import tokenize
from distributed import Client, Future, default_client
from distributed.core import Status
from distributed.deploy import Cluster, SpecCluster
from pydantic import ValidationError
from rich.console import Console
from tornado.ioloop import PeriodicCallback

from .. import ensemble, preflight
from ..config import ExecutionConfig
from ..errors import ConfigError
from ..fingerprint import Fingerprint
from ..meteorology.crop import cropped_config
from ..simulation import run_simulation
from ..store import claims
from ..store.completion import CompletionRule, State
from ..store.paths import Location
from ..store.registry import Registry
from .clusters import make_cluster
from .console import follow
from .crops import CropPlan, member_config
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

#: One unit of work: a result prefix (``""``: the plain run) and a simulation id.
Item = tuple[str, str]


def task_key(token: str, sim_id: str, prefix: str = "") -> str:
    """The Dask task key of a simulation in a run with ``token``.

    ``stilt-sim-<token>-<sim_id>`` for the plain run; other result prefixes add
    theirs with ``-`` for ``/``: ``…-<sim_id>-realizations-2``,
    ``…-<sim_id>-variants-wide-realizations-1``.
    """
    suffix = "-" + prefix.strip("/").replace("/", "-") if prefix else ""
    return f"{TASK_PREFIX}{token}-{sim_id}{suffix}"


def run_after(_before: Any, *args: Any, **kwargs: Any) -> str:
    """:func:`~pystilt_dask.simulation.run_simulation`, as a task depending on another.

    A member that shares another's particles runs once that member's task for the
    same simulation has ended, so the two never run HYSPLIT at once.
    """
    return run_simulation(*args, **kwargs)


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
    others : tuple of (str, tuple of str)
        The simulations to run of the other result prefixes (realizations,
        variants: see :mod:`pystilt_dask.ensemble`), by prefix; ``sim_ids`` are
        the plain run's.
    crops : CropPlan or None
        The batches whose met is cut once per batch (``execution.crop``;
        see :mod:`pystilt_dask.execution.crops`).
    """

    model: Model
    sim_ids: tuple[str, ...]
    execution: ExecutionConfig
    skip_existing: bool
    registry: Registry
    token: str
    owner: str
    others: tuple[tuple[str, tuple[str, ...]], ...] = ()
    crops: CropPlan | None = None
    #: The crop tasks sent and still wanted, by (batch, prefix).
    _crop_futures: dict[tuple[str, str], Any] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

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
        todo: dict[str, tuple[str, ...]] = {}
        for member in ensemble.members(model.config):
            if skip_existing:
                found = ensemble.member_status(model.location, member, snapshot)
                todo[member.prefix] = tuple(found.ids(*states))
            else:
                todo[member.prefix] = tuple(snapshot.sim_ids)
        ids = todo.pop("")
        wanted = ids
        if any(todo.values()):  # each simulation checked once, whichever members run it
            wanted = sorted(set(ids).union(*todo.values()), key=snapshot.row)
        if register:  # serve (register=False) tries what others feed; failures are recorded
            preflight.require(preflight.check_run(model, snapshot, wanted))
        token = tokenize(model.location.root, Fingerprint.of(model.config).token)[:10]
        others = tuple((prefix, found) for prefix, found in todo.items() if found)
        owner = claims.new_owner()
        run = cls(model, ids, execution, skip_existing, snapshot, token, owner, others)
        if execution.crop is None or not len(run):
            return run
        configs = [m.config for m in ensemble.members(model.config)]
        crops = CropPlan.of(
            execution.crop, model.location, model.config, configs, snapshot, list(run.items())
        )
        return replace(run, crops=crops)

    def __len__(self) -> int:
        return len(self.sim_ids) + sum(len(ids) for _, ids in self.others)

    def items(self) -> Iterator[Item]:
        """Every ``(prefix, sim_id)`` to run: the plain run's, then each other prefix's."""
        yield from (("", sim_id) for sim_id in self.sim_ids)
        for prefix, ids in self.others:
            yield from ((prefix, sim_id) for sim_id in ids)

    def without(self, items: Collection[Item]) -> Run:
        """This run without ``items`` (as ``serve`` leaves out what it tried)."""
        ids = tuple(i for i in self.sim_ids if ("", i) not in items)
        others = tuple(
            (prefix, kept)
            for prefix, found in self.others
            if (kept := tuple(i for i in found if (prefix, i) not in items))
        )
        run = replace(self, sim_ids=ids, others=others, crops=None)
        if self.crops is None or not len(run):
            return run
        configs = [m.config for m in ensemble.members(self.model.config)]
        crops = CropPlan.of(
            self.crops.crop, self.model.location, self.model.config, configs, self.registry,
            list(run.items()),
        )  # fmt: skip
        return replace(run, crops=crops)

    @cached_property
    def _members(self) -> dict[str, ensemble.Member]:
        return {m.prefix: m for m in ensemble.members(self.model.config)}

    def member(self, prefix: str) -> ensemble.Member:
        """The result prefix ``prefix`` of this run's project (see :mod:`pystilt_dask.ensemble`)."""
        return self._members[prefix]

    def location(self, prefix: str = "") -> Location:
        """Where the results of ``prefix`` are kept."""
        if not prefix:
            return self.model.location
        return self.member(prefix).location(self.model.location)

    def rule(self, prefix: str = "") -> CompletionRule:
        """The completion rule of ``prefix``."""
        return self.model.completion if not prefix else self.member(prefix).rule

    def shares(self, prefix: str) -> str | None:
        """The prefix whose particles ``prefix`` uses, whose task it runs after, if any."""
        return self.member(prefix).shares if prefix else None

    def key(self, sim_id: str, prefix: str = "") -> str:
        """The Dask task key of ``sim_id`` in ``prefix`` (see :func:`task_key`)."""
        if not prefix:
            return task_key(self.token, sim_id)
        member = self.member(prefix)
        token = tokenize(self.token, Fingerprint.of(member.config).token, prefix)[:10]
        return task_key(token, sim_id, prefix)

    def _facts(self) -> dict[str, str]:
        execution = self.execution
        size = (
            f"adaptive {execution.adapt.minimum}–{execution.adapt.maximum}"
            if execution.adapt
            else str(execution.n_workers or "one per core")
        )
        return {
            "project": self.model.location.root,
            "simulations": f"{len(self.sim_ids)} of {len(self.registry)} registered"
            + ("" if self.skip_existing else " (redoing complete ones)"),
            **(
                {
                    "realizations and variants": f"{len(self) - len(self.sim_ids)} tasks in "
                    f"{len(self.others)} result prefixes ({', '.join(p for p, _ in self.others)})"
                }
                if self.others
                else {}
            ),
            "where": f"the client given, the default client, or a new {execution.backend} "
            f"cluster ({size} workers)",
            "retries": str(execution.retries),
            **(
                {
                    "met crops": f"{len(self.crops.members)} batches, cut under "
                    f"{self.crops.destination}"
                }
                if self.crops
                else {}
            ),
            "task keys": task_key(self.token, "<sim_id>")
            + (" (+ -<prefix> for realizations and variants)" if self.others else ""),
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

    def task(self, sim_id: str, prefix: str = "") -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The arguments of one simulation's task: ``run_simulation(*args, **kwargs)``.

        The one constructor of simulation tasks, whichever way they are sent.
        ``prefix`` is the result prefix (a realization or variant; default: plain).
        """
        config = self.member(prefix).config if prefix else self.model.config
        entry = self.registry.entry(sim_id)
        args = (self.location(prefix), sim_id, config, self.skip_existing, entry)
        return args, {"owner": self.owner}

    def submit(
        self, client: Client, sim_id: str, prefix: str = "", after: Future | None = None
    ) -> Future:
        """Send one simulation's task to ``client``; return its future.

        ``after``: the task of the member whose particles ``prefix`` shares, when in flight.
        """
        args, kwargs = self.task(sim_id, prefix)
        if self.crops is not None:
            args = (*args[:2], self._crop_input(client, sim_id, prefix), *args[3:])
        function, args = (run_simulation, args) if after is None else (run_after, (after, *args))
        return client.submit(
            function, *args, **kwargs, key=self.key(sim_id, prefix),
            retries=self.execution.retries, pure=False,
        )  # fmt: skip

    def _crop_input(self, client: Client, sim_id: str, prefix: str) -> Future:
        """The future of the configuration ``sim_id``'s task in ``prefix`` runs with: its crop's."""
        crops = self.crops
        batch = crops.batch_of[sim_id]
        futures = self._crop_futures
        if (batch, "") not in futures:
            futures[batch, ""] = client.submit(
                cropped_config, *crops.arguments(batch, self.model.config, self.registry),
                key=crops.key(self.token, batch), retries=self.execution.retries, pure=False,
            )  # fmt: skip
        if prefix and (batch, prefix) not in futures:
            futures[batch, prefix] = client.submit(
                member_config, self.member(prefix).config, futures[batch, ""],
                key=crops.key(self.token, batch, prefix), pure=False,
            )  # fmt: skip
        given = futures[batch, prefix]
        if crops.sent(batch):
            for key in [k for k in futures if k[0] == batch]:
                del futures[key]
        return given

    def futures(self, client: Client) -> list[Future]:
        """Send every simulation at once and return the futures (no waves)."""
        sent: dict[Item, Future] = {}
        for prefix, sim_id in self.items():
            shares = self.shares(prefix)
            before = sent.get((shares, sim_id)) if shares is not None else None
            sent[prefix, sim_id] = self.submit(client, sim_id, prefix, before)
        return list(sent.values())

    def to_delayed(self) -> list[Delayed]:
        """One ``dask.delayed`` per simulation, keyed as on a cluster.

        Computable with ``dask.compute`` on any scheduler (threads, processes,
        distributed) and composable with other graphs; each returns the
        simulation's state. A member sharing another's particles depends on that
        member's task of the same simulation.
        """
        sent: dict[Item, Delayed] = {}
        crops: dict[tuple[str, str], Delayed] = {}
        for prefix, sim_id in self.items():
            args, kwargs = self.task(sim_id, prefix)
            if self.crops is not None:
                args = (*args[:2], self._crop_delayed(crops, sim_id, prefix), *args[3:])
            key = self.key(sim_id, prefix)
            shares = self.shares(prefix)
            before = sent.get((shares, sim_id)) if shares is not None else None
            if before is None:
                task = dask.delayed(run_simulation, pure=False)
                sent[prefix, sim_id] = task(*args, **kwargs, dask_key_name=key)
            else:
                task = dask.delayed(run_after, pure=False)
                sent[prefix, sim_id] = task(before, *args, **kwargs, dask_key_name=key)
        return list(sent.values())

    def _crop_delayed(
        self, crops: dict[tuple[str, str], Delayed], sim_id: str, prefix: str
    ) -> Delayed:
        """:meth:`_crop_input` as ``dask.delayed`` objects, one per batch (and member)."""
        plan = self.crops
        batch = plan.batch_of[sim_id]
        if (batch, "") not in crops:
            crops[batch, ""] = dask.delayed(cropped_config, pure=False)(
                *plan.arguments(batch, self.model.config, self.registry),
                dask_key_name=plan.key(self.token, batch),
            )
        if prefix and (batch, prefix) not in crops:
            crops[batch, prefix] = dask.delayed(member_config, pure=False)(
                self.member(prefix).config, crops[batch, ""],
                dask_key_name=plan.key(self.token, batch, prefix),
            )  # fmt: skip
        return crops[batch, prefix]

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
        if not len(self):
            return {}
        console = console or Console(quiet=quiet)
        states: dict[str, str] = {}
        with connect(client, self.execution) as active:
            console.print(f"Dask dashboard: {active.dashboard_link}", highlight=False)

            def say(line: str) -> None:
                console.print(line, markup=False, highlight=False, soft_wrap=True)

            for outcome in follow(self.outcomes(active, notify=say), len(self), console, active):
                states[outcome.name] = outcome.state
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
