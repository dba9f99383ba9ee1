"""Console front ends for runs: a rich progress bar fed by finished tasks, and a summary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .submit import Outcome


def follow(outcomes: Iterable[Outcome], total: int, console: Console) -> Counter[str]:
    """Show a progress bar while ``outcomes`` arrive; return the count per state.

    Failures are printed as they happen, one line each, so a long run shows
    what went wrong without waiting for the end.
    """
    counts: Counter[str] = Counter()
    columns = (
        TextColumn("[bold]stilt-sim"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[states]}"),
    )  # fmt: skip
    # Simulations take seconds: two refreshes a second keep the clock live for a
    # fifth of the default's CPU, which a worker thread in this process would use.
    with Progress(*columns, console=console, transient=False, refresh_per_second=2) as progress:
        task = progress.add_task("run", total=total, states="")
        for outcome in outcomes:
            counts[outcome.state] += 1
            if outcome.state == "failed":
                detail = f": {outcome.error}" if outcome.error else " (see `stilt-dask logs`)"
                progress.console.print(f"[red]failed[/red] {outcome.sim_id}{detail}", markup=True)
            states = "  ".join(f"{state} {n}" for state, n in sorted(counts.items()))
            progress.update(task, advance=1, states=states)
    return counts


def summary(counts: Counter[str], status: dict, elapsed: float) -> Table:
    """A table of this run's results beside the whole project's state counts."""
    table = Table(title=f"stilt-dask run finished in {elapsed:.1f} s")
    table.add_column("state")
    table.add_column("this run", justify="right")
    table.add_column("project", justify="right")
    for state in ("complete", "complete-empty", "failed", "running", "pending"):
        table.add_row(state, str(counts.get(state, 0)), str(status.get(state, 0)))
    return table
