"""The long-lived consumer: keep running simulations as they are registered."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from distributed import Client

from ..store import footprints
from ..store.status import Status
from .submit import Outcome, run_waves

if TYPE_CHECKING:
    from ..model import Model


def serve(model: Model, client: Client, poll: float = 10.0) -> Iterator[Outcome]:
    """Run every pending simulation, then wait for more, forever (until interrupted).

    What is pending is read from the store on every round, so receptors
    registered by any process (``stilt-dask register``) are picked up; each is
    tried once per serve, so failed simulations are not retried (rerun them with
    ``stilt-dask run``). A simulation whose registration is still under way
    (its manifest row is written, the footprint arrays not yet grown) waits for
    the next round.

    Parameters
    ----------
    model : Model
        The project.
    client : distributed.Client
        A client of the (long-running) scheduler.
    poll : float
        Seconds to wait between looks at an idle store.
    """
    # Simulations whose task ended without a failure record (a killed worker, a
    # cancelled task) still read as pending; run each once per serve, not in a loop.
    tried: set[str] = set()
    while True:
        status = model.status(client)
        # Rows are positions in registration order. Rows the footprint arrays do
        # not hold yet belong to a registration under way: they wait a round.
        ready = Status(status.table.iloc[: _rows_held(model, len(status))])
        pending = [i for i in ready.ids("pending") if i not in tried]
        tried.update(pending)
        if pending:
            yield from run_waves(client, model.location, pending, model.config)
        else:
            time.sleep(poll)


def _rows_held(model: Model, registered: int) -> int:
    """How many simulation rows every footprint array holds."""
    names = model.config.footprints
    return min((footprints.n_rows(model.location, name) for name in names), default=registered)
