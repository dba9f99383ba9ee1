"""The ``stilt-dask`` command line: a thin layer over :class:`~pystilt_dask.model.Model`.

Each command is a function registered with :func:`command`, which turns a
:class:`~pystilt_dask.errors.StiltError` into a one-line ``error: …`` on stderr
and exit status 2. ``PROJECT`` is a project store (path or fsspec URL) or a
``config.yaml`` whose ``output`` names the store.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Annotated, Any

import typer
from distributed import Client
from rich.console import Console
from rich.table import Table

from .errors import StiltError
from .model import Model
from .store.status import STATES

app = typer.Typer(
    name="stilt-dask",
    help="STILT (HYSPLIT-STILT particles, R-STILT footprints) on any Dask cluster.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
error_console = Console(stderr=True)

ProjectArg = Annotated[
    str,
    typer.Argument(
        help="Project store (path or URL), or a config.yaml whose `output` is the store.",
        show_default=False,
    ),
]


def command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Register ``fn`` as a subcommand; a StiltError ends it with one line and status 2."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StiltError as exc:
            error_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return app.command()(run)


def open_model(project: str, receptors: str | None = None) -> Model:
    """The model of a project store or of a config file."""
    if project.endswith((".yaml", ".yml")):
        return Model.from_yaml(project, receptors=receptors)
    return Model(project, receptors=receptors)


@command
def register(
    project: ProjectArg,
    receptors: Annotated[
        str | None,
        typer.Option(help="Receptor table (CSV or Parquet); default: the config's `receptors`."),
    ] = None,
    scene_id: Annotated[str | None, typer.Option(help="Label stored with the new rows.")] = None,
    met: Annotated[str | None, typer.Option(help="Meteorology name; default: the first.")] = None,
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
    scheduler: Annotated[
        str | None,
        typer.Option(help="Dask scheduler address, to count `running` simulations."),
    ] = None,
) -> None:
    """Count simulations per state, overall and per footprint name."""
    model = open_model(project)
    if scheduler:
        with Client(scheduler, timeout="10s") as client:
            counts = model.status(client).counts()
    else:
        counts = model.status().counts()
    if as_json:
        typer.echo(json.dumps(counts))
        return
    table = Table(title=f"{model.location.root}")
    table.add_column("state")
    table.add_column("simulations", justify="right")
    for name in counts["footprints"]:
        table.add_column(f"footprint {name}", justify="right")
    for state in STATES:
        per_name = [str(c[state]) for c in counts["footprints"].values()]
        table.add_row(state.value, str(counts[state]), *per_name)
    console.print(table)


@command
def rebuild(
    project: ProjectArg,
    older_than: Annotated[
        float, typer.Option(help="Seconds after which temporaries and markers count as stale.")
    ] = 3600.0,
) -> None:
    """Repair the store: clean stale temporaries, reconcile the manifest, grow arrays."""
    model = open_model(project)
    console.print(model.rebuild(older_than).summary())
