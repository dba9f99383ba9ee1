"""Commands that run simulations: run, init, demo, serve, worker, submit.

The execution modules (Dask's ``distributed``) and the model are imported by the
commands that run something, so the other commands of ``stilt-dask`` start without them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import ConfigError
from .app import (
    ProjectArg,
    app,
    command,
    console,
    error_console,
    open_model,
)

if TYPE_CHECKING:
    from ..execution.run import Run
    from ..model import Model

BackendOption = Annotated[
    str | None,
    typer.Option(help="Override the backend: local, slurm or kubernetes.", metavar="NAME"),
]


def _run(model: Model, run: Run, scheduler: str | None) -> None:
    """Run a plan with a live progress bar; exit 0 (all complete), 1 (not all), 130 (Ctrl-C)."""
    from ..execution.console import summary
    from ..execution.preload import tune_allocator

    started = time.monotonic()
    # This process is the command's own, and the default local cluster runs its
    # workers as threads in it: tune its allocator as worker processes are tuned.
    tune_allocator()
    try:
        states = run.execute(scheduler, console=console)
    except KeyboardInterrupt:
        error_console.print("interrupted: finished simulations are stored; rerun to resume")
        raise typer.Exit(130) from None
    counts = Counter(states.values())
    console.print(summary(counts, model.status().counts(), time.monotonic() - started))
    if len(states) < len(run) or set(counts) - {"complete", "complete-empty"}:
        raise typer.Exit(1)


@command
def run(
    project: ProjectArg,
    backend: BackendOption = None,
    n_workers: Annotated[
        int | None, typer.Option(help="Override the number of workers.", metavar="N")
    ] = None,
    profile: Annotated[
        str | None, typer.Option(help="Execution profile from the config.", metavar="NAME")
    ] = None,
    no_skip: Annotated[bool, typer.Option("--no-skip", help="Redo complete simulations.")] = False,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Use this running Dask scheduler instead of a new cluster.", metavar="ADDRESS"
        ),
    ] = None,
) -> None:
    """Register pending receptors and run every incomplete simulation on a Dask cluster."""
    model = open_model(project)
    # Planning registers receptors and checks overrides: bad input fails before a cluster.
    run = model.plan(profile, not no_skip, backend=backend, n_workers=n_workers)
    _run(model, run, scheduler)


@command
def init(
    directory: Annotated[str, typer.Argument(help="Folder for the new project.")],
    demo: Annotated[
        bool, typer.Option("--demo", help="Write the demo project (idealized met) instead.")
    ] = False,
    n_receptors: Annotated[
        int, typer.Option(help="Receptors of the demo project (with --demo).", metavar="N")
    ] = 8,
) -> None:
    """Write a commented config.yaml and receptors.csv (runs nothing; never overwrites)."""
    from ..demo import make_demo_project, write_template_project

    if demo:
        config = make_demo_project(directory, n_receptors, overwrite=False)
        console.print(
            f"demo project written to {directory}/ (config: {config}); "
            f"run it with: stilt-dask run {directory}",
            markup=False, highlight=False, soft_wrap=True,
        )  # fmt: skip
        return
    config = write_template_project(directory)
    console.print(
        f"project written to {directory}/: point `mets` in {config} at your ARL files, "
        f"replace the example row of receptors.csv, then: stilt-dask run {directory}",
        markup=False, highlight=False, soft_wrap=True,
    )  # fmt: skip


@command
def demo(
    directory: Annotated[str, typer.Argument(help="Folder for the demo project.")] = "demo-project",
    n_receptors: Annotated[int, typer.Option(help="Receptors to simulate.", metavar="N")] = 8,
) -> None:
    """Write a demo project on idealized meteorology and run it (init --demo, then run)."""
    from ..demo import make_demo_project
    from ..model import Model

    config = make_demo_project(directory, n_receptors)
    console.print(f"demo project written to {directory}/ (config: {config})", markup=False)
    model = Model.from_yaml(config)
    _run(model, model.plan(), None)
    foot = model.footprints["default"].load()
    sizes = ", ".join(f"{dim} {n}" for dim, n in foot.sizes.items())
    console.print(
        f"footprints: {model.location.url('footprints/default.zarr')} ({sizes})",
        soft_wrap=True,
        markup=False,
        highlight=False,
    )


@command
def serve(
    project: ProjectArg,
    scheduler: Annotated[
        str, typer.Option(help="Address of the running Dask scheduler.", metavar="ADDRESS")
    ],
    poll: Annotated[
        float, typer.Option(help="Seconds between looks at an idle store.", metavar="SECONDS")
    ] = 10.0,
) -> None:
    """Attach to a scheduler and keep running newly registered simulations (Ctrl-C stops)."""
    from ..execution.run import connect
    from ..execution.serve import serve as serve_forever

    model = open_model(project)
    with connect(scheduler, model.config.execution) as client:
        console.print(f"serving {model.location.root} on {scheduler} ({client.dashboard_link})")
        try:
            for outcome in serve_forever(model, client, poll):
                console.print(f"{outcome.state:>14} {outcome.sim_id}", highlight=False)
        except KeyboardInterrupt:
            console.print("stopped: finished simulations are stored")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(
    ctx: typer.Context,
    scheduler: Annotated[str, typer.Argument(help="Scheduler address, e.g. tcp://host:8786.")],
) -> None:
    """Start a STILT Dask worker: one thread, one `hysplit` slot (extra args: `dask worker`)."""
    from ..execution.workers import WORKER_ARGS

    args = [sys.executable, "-m", "distributed.cli.dask_worker", scheduler, *WORKER_ARGS, *ctx.args]
    os.execv(sys.executable, args)


@command
def submit(
    config: Annotated[str, typer.Argument(help="The project's config.yaml, or its folder.")],
    profile: Annotated[
        str | None, typer.Option(help="Execution profile for the run.", metavar="NAME")
    ] = None,
    walltime: Annotated[
        str, typer.Option(help="Slurm time limit of the coordinator job.", metavar="TIME")
    ] = "1-00:00:00",
    memory: Annotated[
        str, typer.Option(help="Memory of the coordinator job.", metavar="SIZE")
    ] = "2G",
    sbatch: Annotated[
        list[str] | None,
        typer.Option(help="Extra sbatch option, e.g. --sbatch=--account=x.", metavar="OPTION"),
    ] = None,
) -> None:
    """Submit `stilt-dask run` itself as a Slurm batch job (fire and forget)."""
    from ..config import ModelConfig
    from ..demo import CONFIG_NAME
    from ..execution.slurm import coordinator_script

    path = Path(config).resolve()
    if path.is_dir():  # the project folder, as the other commands take it
        path = path / CONFIG_NAME
    ModelConfig.from_yaml(path)  # fail here, not in the queue, on a bad config
    script = coordinator_script(path, profile, walltime, [f"--mem={memory}", *(sbatch or [])])
    script_path = path.parent / "stilt-coordinator.sbatch"
    script_path.write_text(script)
    try:
        result = subprocess.run(
            ["sbatch", "--parsable", str(script_path)], capture_output=True, text=True
        )
    except FileNotFoundError:
        raise ConfigError("sbatch not found: `stilt-dask submit` needs Slurm's tools") from None
    if result.returncode:
        raise ConfigError(f"sbatch refused {script_path}: {result.stderr.strip()}")
    console.print(f"submitted coordinator job {result.stdout.strip()} ({script_path})")
