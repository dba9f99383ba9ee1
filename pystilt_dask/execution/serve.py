"""The long-lived consumer: keep running simulations as they are registered."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from distributed import Client

from ..store.completion import State
from .run import Run
from .waves import Outcome

if TYPE_CHECKING:
    from ..model import Model


def serve(model: Model, client: Client, poll: float = 10.0) -> Iterator[Outcome]:
    """Run every pending simulation, then wait for more, forever (until interrupted).

    What is pending is read from the store on every round, so receptors
    registered by any process (``stilt-dask register``) are picked up; each is
    tried once per serve, so failed simulations are not retried (rerun them with
    ``stilt-dask run``). Simulations another coordinator holds are left to it.

    Parameters
    ----------
    model : Model
        The project.
    client : distributed.Client
        A client of the (long-running) scheduler.
    poll : float
        Seconds to wait between looks at an idle store.
    """
    tried: set[str] = set()
    while True:
        run = Run.plan(model, register=False, states=[State.PENDING])
        run = replace(run, sim_ids=tuple(i for i in run.sim_ids if i not in tried))
        tried.update(run.sim_ids)
        if run.sim_ids:
            yield from run.outcomes(client)
        else:
            time.sleep(poll)
