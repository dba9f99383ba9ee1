"""The long-lived consumer: keep running simulations as they are registered."""

from __future__ import annotations

import time
from collections.abc import Iterator
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
    tried: set[tuple[str, str]] = set()
    while True:
        run = Run.plan(model, register=False, states=[State.PENDING]).without(tried)
        tried.update(run.items())
        if len(run):
            yield from run.outcomes(client)
        else:
            time.sleep(poll)
