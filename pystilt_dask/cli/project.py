"""Commands that look at a project: register, status, ls, verify, compact, logs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..errors import StoreError
from ..store.completion import STATES, State
from .app import (
    ProjectArg,
    command,
    console,
    error_console,
    open_model,
)
from .claims import claim_lines, claim_record

if TYPE_CHECKING:
    from ..model import Model


@command
def register(
    project: ProjectArg,
    receptors: Annotated[
        str | None,
        typer.Option(
            help="Receptor table (CSV or Parquet); default: the config's `receptors`.",
            metavar="TABLE",
        ),
    ] = None,
    scene_id: Annotated[
        str | None, typer.Option(help="Label stored with the new rows.", metavar="LABEL")
    ] = None,
    met: Annotated[
        str | None, typer.Option(help="Meteorology name; default: the first.", metavar="NAME")
    ] = None,
) -> None:
    """Register receptors not registered yet (existing results are never touched)."""
    model = open_model(project, receptors)
    new = model.register_pending(scene_id=scene_id, met=met)
    total = len(model.simulations)
    console.print(
        f"registered {len(new)} new simulations ({total} in total) in {model.location.root}"
    )


@command
def status(
    project: ProjectArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print counts as JSON.")] = False,
) -> None:
    """Count simulations per state, overall and per footprint name; list claims."""
    from ..store.status import status as status_of

    model = open_model(project)
    known = model.registry()
    found = status_of(model.location, known, model.completion)
    counts = found.counts()
    unregistered = model.unregistered(known)
    members = None
    if model.config.variants or model.config.hysplit.realizations > 1:
        members = model.ensemble_status()
    if as_json:
        claimed = [claim_record(s, c) for s, c in sorted(found.claims.items())]
        extra = {"members": members.reset_index().to_dict("records")} if members is not None else {}
        typer.echo(json.dumps({**counts, "unregistered": unregistered, "claims": claimed, **extra}))
        return
    # The path on a line of its own: as a table title, rich would wrap it to the table.
    console.print(model.location.root, soft_wrap=True, markup=False, highlight=False)
    table = Table()
    table.add_column("state")
    table.add_column("simulations", justify="right")
    for name in counts["footprints"]:
        table.add_column(f"footprint {name}", justify="right")
    for state in STATES:
        per_name = [str(c[state]) for c in counts["footprints"].values()]
        table.add_row(state.value, str(counts[state]), *per_name)
    console.print(table)
    if members is not None:
        by_member = Table(title="realizations and variants")
        by_member.add_column("variant")
        by_member.add_column("realization", justify="right")
        for state in STATES:
            by_member.add_column(state.value, justify="right")
        for (variant, k), row in members.iterrows():
            by_member.add_row(variant or "(plain)", str(k), *(str(row[s.value]) for s in STATES))
        console.print(by_member)
    if found.claims:
        console.print("claims (`stilt-dask claims` frees them):", markup=False, highlight=False)
        for line in claim_lines(found.claims):
            console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    _say_unregistered(model, unregistered)


def _say_unregistered(model: Model, unregistered: int, to: Console = console) -> None:
    """Say how many receptors of the model's table wait to be registered, if any."""
    if unregistered:
        to.print(
            f"{unregistered} receptors of {model.config.receptors} are not registered yet: "
            "`stilt-dask run` (or `register`) adds them",
            markup=False, highlight=False, soft_wrap=True,
        )  # fmt: skip


@command
def ls(
    project: ProjectArg,
    state: Annotated[
        list[State] | None,
        typer.Option(
            help="Only simulations in this state (repeatable); prints ids alone.", metavar="STATE"
        ),
    ] = None,
) -> None:
    """List simulation ids, one per line, with their state (ids for `logs`)."""
    from ..store.status import status as status_of

    model = open_model(project)
    known = model.registry()
    table = status_of(model.location, known, model.completion).table
    if not len(table):
        error_console.print(f"no simulations registered in {model.location.root}", markup=False)
        _say_unregistered(model, model.unregistered(known), error_console)
        return
    if state:
        # Bare ids, so the output feeds other commands (`xargs -n1 stilt-dask logs P`).
        wanted = table["state"].isin([s.value for s in state]).to_numpy()
        for sim_id in table.index[wanted]:
            typer.echo(sim_id)
        return
    width = max((len(sim_id) for sim_id in table.index), default=0)
    for sim_id, current in table["state"].items():
        typer.echo(f"{sim_id:<{width}}  {current}")


@command
def verify(
    project: ProjectArg,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair", help="Restore lost registry entries and remove damaged or stray keys."
        ),
    ] = False,
) -> None:
    """Read back every key; name what is damaged (exit 1 when any, or when --repair lost any)."""
    model = open_model(project)
    report = model.verify(repair=repair)
    console.print(report.summary(), markup=False, highlight=False)
    if report.lost_anything or (not report.ok and not repair):
        raise typer.Exit(1)


@command
def compact(
    project: ProjectArg,
    break_lock: Annotated[
        bool,
        typer.Option(
            "--break-lock", help="Take over .stilt/compact.lock (only when no compaction runs)."
        ),
    ] = False,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Pack blocks on this running Dask scheduler instead of a new cluster.",
            metavar="ADDRESS",
        ),
    ] = None,
) -> None:
    """Pack completed simulations into a few objects per 1,024 rows (runs may go on)."""
    from ..store.compact import compact

    model = open_model(project)
    report = compact(model.location, model.config, model.registry(), break_lock, scheduler)
    console.print(report.summary(), markup=False, highlight=False)


@command
def logs(
    project: ProjectArg,
    sim_id: Annotated[str, typer.Argument(help="Simulation id.")],
) -> None:
    """Show a simulation's failure record and HYSPLIT log."""
    model = open_model(project)
    if sim_id not in set(model.simulations.ids()):
        raise StoreError(f"no simulation {sim_id!r} in {model.location.root}")
    record = model.simulations.failure(sim_id)
    if record:
        console.print(f"[red]failed[/red] at {record['time']} in {record['step']}: "
                      f"{record['reason']}: {record['message']}")  # fmt: skip
        if record.get("log_tail"):
            console.print(record["log_tail"], markup=False, highlight=False)
    log = model.simulations.log(sim_id)
    console.print(log if log else "no HYSPLIT log stored", markup=False, highlight=False)
