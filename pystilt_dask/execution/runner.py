"""Run a project's pending simulations on a Dask cluster.

The client is the one given, else the current default client, else a cluster
built from the configuration (and closed afterwards).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from distributed import Client, default_client

from ..config import ExecutionConfig
from ..store import claims
from .clusters import make_cluster
from .submit import Outcome, project_token, run_waves, submit

if TYPE_CHECKING:
    from ..model import Model

logger = logging.getLogger(__name__)


@contextmanager
def connect(client: Client | None, execution: ExecutionConfig) -> Iterator[Client]:
    """Yield ``client``, the default client, or a client of a new cluster (closed after)."""
    if client is not None:
        yield client
        return
    try:
        yield default_client()
        return
    except ValueError:
        pass
    cluster = make_cluster(execution)
    new_client = Client(cluster)
    logger.info("Dask dashboard: %s", new_client.dashboard_link)
    try:
        yield new_client
    finally:
        new_client.close()
        cluster.close()


def plan(model: Model, skip_existing: bool = True) -> list[str]:
    """Register pending receptors (when any are given) and return the ids to run."""
    if model.has_receptors:
        model.register_pending()
    else:
        model.sync()
    return model.simulations.incomplete() if skip_existing else model.simulations.ids()


def run_model(
    model: Model,
    client: Client | None = None,
    skip_existing: bool = True,
    wait: bool = True,
    profile: str | None = None,
) -> Iterator[Outcome] | list[Any]:
    """Run a project's incomplete simulations (see :meth:`pystilt_dask.model.Model.run`).

    Returns a lazy iterator of :class:`Outcome` when ``wait`` (the cluster lives
    while it is consumed), else the list of futures (one per simulation; the
    cluster built for them stays up as long as they are referenced).
    """
    ids = plan(model, skip_existing)
    execution = model.config.execution_for(profile)
    if not wait:
        if client is None:
            try:
                client = default_client()
            except ValueError:
                client = Client(make_cluster(execution))
                logger.info("Dask dashboard: %s", client.dashboard_link)
        table = model.registry().table
        token, owner = project_token(model.location, model.config), claims.new_owner()
        return [
            submit(client, model.location, i, model.config, skip_existing, table.loc[i], token,
                   owner=owner)
            for i in ids
        ]  # fmt: skip
    return _waves(client, execution, ids, model, skip_existing)


def _waves(client, execution, ids, model, skip_existing) -> Iterator[Outcome]:
    with connect(client, execution) as active:
        yield from run_waves(active, model.location, ids, model.config, skip_existing)
