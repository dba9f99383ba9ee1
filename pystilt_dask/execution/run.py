"""A planned run of a project: which simulations, with which settings, and where.

As rechunker separates planning from executing, :meth:`Run.plan` does everything
that can fail on bad input (registering receptors, resolving the execution
profile and overrides) before any cluster starts, and the :class:`Run` it returns
can be looked at before it runs (``repr``, or a table in Jupyter). It then
executes on a ``Client``, a cluster object, the default client, or a cluster it
builds, or becomes ``dask.delayed`` objects for any scheduler.
``Model.run``, ``stilt-dask run`` and ``serve`` all go through it.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dask
from distributed import Client, default_client
from distributed.deploy import Cluster
from pydantic import ValidationError
from rich.console import Console

from ..config import ExecutionConfig
from ..errors import ConfigError
from ..simulation import run_simulation
from ..store import claims
from .clusters import make_cluster
from .console import follow
from .submit import Outcome, project_token, run_waves, submit, task_key

if TYPE_CHECKING:
    from dask.delayed import Delayed

    from ..model import Model


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
    """

    model: Model
    sim_ids: tuple[str, ...]
    execution: ExecutionConfig
    skip_existing: bool = True

    @classmethod
    def plan(
        cls,
        model: Model,
        profile: str | None = None,
        skip_existing: bool = True,
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
            Run only incomplete simulations; ``False`` redoes every one.
        **overrides
            ``ExecutionConfig`` fields to override (``backend``, ``n_workers``,
            ``retries``, …); ``None`` values are ignored.

        Raises
        ------
        ConfigError
            For an unknown profile or an invalid override (naming it).
        """
        execution = model.config.execution_for(profile)
        overrides = {key: value for key, value in overrides.items() if value is not None}
        if overrides:
            try:
                execution = ExecutionConfig.model_validate({**execution.model_dump(), **overrides})
            except ValidationError as exc:
                where = ".".join(str(p) for p in exc.errors()[0]["loc"])
                raise ConfigError(f"execution override {where}: {exc.errors()[0]['msg']}") from None
        if model.has_receptors:
            model.register_pending()
        else:
            model.sync()
        ids = model.simulations.incomplete() if skip_existing else model.simulations.ids()
        return cls(model, tuple(ids), execution, skip_existing)

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
            "simulations": f"{len(self)} of {len(self.model.simulations)} registered"
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

    @property
    def token(self) -> str:
        """The project token in this run's task keys."""
        return project_token(self.model.location, self.model.config)

    def to_delayed(self) -> list[Delayed]:
        """One ``dask.delayed`` per simulation, keyed as on a cluster.

        Computable with ``dask.compute`` on any scheduler (threads, processes,
        distributed) and composable with other graphs; each returns the
        simulation's state.
        """
        table = self.model.registry().table
        owner = claims.new_owner()
        task = dask.delayed(run_simulation, pure=False)
        return [
            task(
                self.model.location,
                sim_id,
                self.model.config,
                self.skip_existing,
                table.loc[sim_id],
                owner=owner,
                dask_key_name=task_key(self.token, sim_id),
            )
            for sim_id in self.sim_ids
        ]

    def submit(self, client: Client) -> list[Any]:
        """Submit every simulation at once and return the futures (no waves)."""
        table = self.model.registry().table
        owner = claims.new_owner()
        location, config = self.model.location, self.model.config
        return [
            submit(client, location, i, config, self.skip_existing, table.loc[i], self.token,
                   self.execution.retries, owner)
            for i in self.sim_ids
        ]  # fmt: skip

    def outcomes(self, client: Client) -> Iterator[Outcome]:
        """Run on ``client`` in bounded waves, yielding each simulation's outcome."""
        return run_waves(
            client, self.model.location, self.sim_ids, self.model.config, self.skip_existing,
            retries=self.execution.retries,
        )  # fmt: skip

    def execute(
        self, client: Client | Cluster | None = None, quiet: bool = False
    ) -> dict[str, str]:
        """Run every simulation and return its resulting state.

        Parameters
        ----------
        client : distributed.Client or cluster, optional
            Where to run; default: the current default client, else a cluster
            built from :attr:`execution` (closed when the run ends).
        quiet : bool
            Show no dashboard link and no progress bar.
        """
        if not self.sim_ids:
            return {}
        console = Console(quiet=quiet)
        with connect(client, self.execution) as active:
            console.print(f"Dask dashboard: {active.dashboard_link}", highlight=False)
            states: dict[str, str] = {}
            for outcome in follow(self.outcomes(active), len(self), console, active):
                states[outcome.sim_id] = outcome.state
        return states


@contextmanager
def connect(client: Client | Cluster | None, execution: ExecutionConfig) -> Iterator[Client]:
    """Yield a client: ``client``, one of a cluster object, the default, or a new cluster's.

    What this function started (a client of a given cluster, a new cluster) is
    closed on exit; what the caller gave is left running.
    """
    if isinstance(client, Client):
        yield client
        return
    if isinstance(client, Cluster):
        with Client(client) as own:
            yield own
        return
    try:
        yield default_client()
        return
    except ValueError:
        pass
    with make_cluster(execution) as cluster, Client(cluster) as own:
        yield own


def start_client(execution: ExecutionConfig) -> Client:
    """The default client, else a client of a new cluster that lives until closed."""
    try:
        return default_client()
    except ValueError:
        return Client(make_cluster(execution))
