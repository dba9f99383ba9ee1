"""Progress of a run, for terminals and Jupyter alike (rich renders in both), and a summary."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .submit import TASK_PREFIX, Outcome

#: Seconds between looks at the cluster (workers, running tasks) while a run waits.
WATCH_INTERVAL = 1.0


def cluster_line(client: Any) -> str:
    """What the cluster is doing: waiting for workers, or running tasks on how many."""
    try:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        processing = client.processing()
    except Exception:  # the cluster is going away; the bar keeps its last line
        return ""
    if not workers:
        return "waiting for workers to connect (starting, scaling or adapting)"
    running = sum(
        1 for keys in processing.values() for key in keys if str(key).startswith(TASK_PREFIX)
    )
    threads = sum(int(w["nthreads"]) for w in workers.values())
    return f"running {running} on {len(workers)} workers ({threads} threads)"


def follow(
    outcomes: Iterable[Outcome], total: int, console: Console, client: Any = None
) -> Iterator[Outcome]:
    """Pass ``outcomes`` through while a progress bar shows them and the cluster's state.

    Failures are printed as they happen, one line each, so a long run shows
    what went wrong without waiting for the end.
    """
    counts: Counter[str] = Counter()
    columns = (
        TextColumn("[bold]stilt-sim"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[states]}"), TextColumn("[dim]{task.fields[cluster]}"),
    )  # fmt: skip
    # Simulations take seconds: two refreshes a second keep the clock live for a
    # fifth of the default's CPU, which a worker thread in this process would use.
    with Progress(*columns, console=console, transient=False, refresh_per_second=2) as progress:
        task = progress.add_task("run", total=total, states="", cluster="")
        stop = threading.Event()

        def watch() -> None:
            while client is not None and not stop.wait(WATCH_INTERVAL):
                progress.update(task, cluster=cluster_line(client))

        watcher = threading.Thread(target=watch, name="stilt-progress", daemon=True)
        watcher.start()
        try:
            for outcome in outcomes:
                counts[outcome.state] += 1
                if outcome.state == "failed":
                    detail = f": {outcome.error}" if outcome.error else " (see `stilt-dask logs`)"
                    progress.console.print(
                        f"[red]failed[/red] {outcome.sim_id}{detail}", markup=True
                    )
                states = "  ".join(f"{state} {n}" for state, n in sorted(counts.items()))
                progress.update(task, advance=1, states=states)
                yield outcome
        finally:
            stop.set()
            watcher.join()


def summary(counts: Counter[str], status: dict, elapsed: float) -> Table:
    """A table of this run's results beside the whole project's state counts."""
    table = Table(title=f"stilt-dask run finished in {elapsed:.1f} s")
    table.add_column("state")
    table.add_column("this run", justify="right")
    table.add_column("project", justify="right")
    for state in ("complete", "complete-empty", "failed", "running", "pending"):
        table.add_row(state, str(counts.get(state, 0)), str(status.get(state, 0)))
    return table
