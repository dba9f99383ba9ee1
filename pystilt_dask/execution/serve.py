"""The long-lived consumer: keep running simulations as they are registered."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from distributed import Client

from ..store import footprints, manifest
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
        pending = _registered(
            [i for i in model.status(client).ids("pending") if i not in tried], model
        )
        tried.update(pending)
        if pending:
            yield from run_waves(client, model.location, pending, model.config)
        else:
            time.sleep(poll)


def _registered(sim_ids: list[str], model: Model) -> list[str]:
    """The simulations in ``sim_ids`` whose row every footprint array already holds."""
    if not sim_ids or not model.config.footprints:
        return sim_ids
    held = min(footprints.n_rows(model.location, name) for name in model.config.footprints)
    rows = manifest.read(model.location, columns=["sim_id", "row"]).set_index("sim_id")["row"]
    return [sim_id for sim_id in sim_ids if rows[sim_id] < held]
