"""The ``claims`` command: who holds which simulation, and freeing claims left behind."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import StoreError
from .app import ProjectArg, command, console, open_model

if TYPE_CHECKING:
    from ..store import claims as store_claims


def claim_record(sim_id: str, claim: store_claims.Claim) -> dict[str, Any]:
    """A claim as JSON: holder, run, expiry (UTC, ISO 8601) and condition."""
    holder = claim.holder
    expires = None
    if not claim.dead and math.isfinite(claim.expires):
        expires = datetime.fromtimestamp(claim.expires, tz=UTC).isoformat(timespec="seconds")
    return {
        "sim_id": sim_id, "condition": claim.condition, "live": claim.live,
        "host": holder.host or None, "pid": holder.pid or None, "run": holder.run,
        "expires": expires,
    }  # fmt: skip


def claim_lines(claimed: Mapping[str, store_claims.Claim]) -> list[str]:
    """One line per claim: simulation, condition, holder and until when."""
    width = max((len(sim_id) for sim_id in claimed), default=0)
    return [
        f"{sim_id:<{width}}  {claim.condition:<7}  {claim.describe()}"
        for sim_id, claim in sorted(claimed.items())
    ]


def _print(lines: list[str]) -> None:
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@command
def claims(
    project: ProjectArg,
    release: Annotated[
        list[str] | None,
        typer.Option(
            "--release",
            help="Free this simulation's claim, whoever holds it (repeatable).",
            metavar="ID",
        ),
    ] = None,
    release_dead: Annotated[
        bool,
        typer.Option(
            "--release-dead", help="Free every claim that is not live (holder gone, or expired)."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the claims as JSON.")] = False,
) -> None:
    """List claims (holder, run, expiry, live or not); free named ones or dead ones.

    A live holder whose claim is freed goes on: the simulation may then run twice,
    which stores the same results.
    """
    from ..store import claims as store_claims

    model = open_model(project)
    location = model.location
    claimed = store_claims.current(location)
    unknown = [sim_id for sim_id in release or [] if sim_id not in claimed]
    if unknown:
        raise StoreError(
            f"no claim on {', '.join(unknown)} in {location.root}: "
            "`stilt-dask claims PROJECT` lists the claims"
        )
    freed = {sim_id: claimed[sim_id] for sim_id in release or []}
    if release_dead:
        freed.update({s: claim for s, claim in claimed.items() if not claim.live})
    for sim_id in freed:
        store_claims.release_all(location, sim_id)
    if as_json:
        listed = freed if release or release_dead else claimed
        typer.echo(json.dumps([claim_record(s, c) for s, c in sorted(listed.items())]))
        return
    if release or release_dead:
        _print([f"released {line}" for line in claim_lines(freed)])
        if not freed:
            console.print("no claims to release", markup=False, highlight=False)
        return
    if not claimed:
        console.print(f"no claims in {location.root}", markup=False, highlight=False)
        return
    _print(claim_lines(claimed))
