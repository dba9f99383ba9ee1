"""Progress of a run, for terminals and Jupyter alike (rich renders in both), and a summary."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .waves import Outcome

#: Seconds between looks at the cluster (its workers) while a run waits.
WATCH_INTERVAL = 1.0


def cluster_threads(client: Any) -> tuple[int, int] | None:
    """The cluster's workers and their threads; ``None`` when it cannot say (closing)."""
    try:
        workers = client.scheduler_info(n_workers=-1)["workers"]
    except Exception:  # the cluster is going away; the bar keeps its last line
        return None
    return len(workers), sum(int(w["nthreads"]) for w in workers.values())


def frame(counts: Counter[str], total: int, threads: int) -> str:
    """The states of a run's simulations, adding up to ``total``.

    Finished ones by their state; of the rest, as many as the cluster has threads
    are running (bounded waves keep at least that many in flight), the others pending.
    """
    unfinished = total - sum(counts.values())
    running = min(unfinished, threads)
    shown = {**counts, "running": running, "pending": unfinished - running}
    return "  ".join(f"{state} {n}" for state, n in sorted(shown.items()))


def cluster_text(workers: int, threads: int) -> str:
    """What the cluster is: waiting for workers, or how many with how many threads."""
    if not workers:
        return "waiting for workers to connect (starting, scaling or adapting)"
    return f"on {workers} workers ({threads} threads)"


def follow(
    outcomes: Iterable[Outcome], total: int, console: Console, client: Any = None
) -> Iterator[Outcome]:
    """Pass ``outcomes`` through while a progress bar shows them and the cluster's state.

    Every frame's counts add up to ``total``; the last one, drawn when the run ends
    or is interrupted (its tasks cancelled), has nothing running.
    Failures are printed as they happen, one line each, so a long run shows
    what went wrong without waiting for the end.
    """
    counts: Counter[str] = Counter()
    cluster = [0, 0]  # workers, threads: written by the watcher, read by both
    lock = threading.Lock()
    columns = (
        TextColumn("[bold]stilt-sim"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[states]}"), TextColumn("[dim]{task.fields[cluster]}"),
    )  # fmt: skip
    # Simulations take seconds: two refreshes a second keep the clock live for a
    # fifth of the default's CPU, which a worker thread in this process would use.
    with Progress(*columns, console=console, transient=False, refresh_per_second=2) as progress:
        task = progress.add_task("run", total=total, states=frame(counts, total, 0), cluster="")

        def show(done: bool = False) -> None:
            with lock:
                threads = 0 if done else cluster[1]
                progress.update(
                    task, completed=sum(counts.values()), states=frame(counts, total, threads),
                    cluster="" if done else cluster_text(*cluster),
                )  # fmt: skip

        stop = threading.Event()

        def watch() -> None:
            while client is not None and not stop.wait(WATCH_INTERVAL):
                seen = cluster_threads(client)
                if seen is not None and not stop.is_set():
                    cluster[:] = seen
                    show()

        watcher = threading.Thread(target=watch, name="stilt-progress", daemon=True)
        watcher.start()
        try:
            for outcome in outcomes:
                with lock:
                    counts[outcome.state] += 1
                if outcome.state == "failed":
                    detail = f": {outcome.error}" if outcome.error else " (see `stilt-dask logs`)"
                    progress.console.print(f"[red]failed[/red] {outcome.name}{detail}", markup=True)
                show()
                yield outcome
        finally:
            stop.set()
            watcher.join()
            show(done=True)  # finished or interrupted: nothing of this run runs any more


def summary(counts: Counter[str], status: dict, elapsed: float) -> Table:
    """A table of this run's results beside the whole project's state counts."""
    table = Table(title=f"stilt-dask run finished in {elapsed:.1f} s")
    table.add_column("state")
    table.add_column("this run", justify="right")
    table.add_column("project", justify="right")
    for state in ("complete", "complete-empty", "failed", "interrupted", "running", "pending"):
        table.add_row(state, str(counts.get(state, 0)), str(status.get(state, 0)))
    return table
