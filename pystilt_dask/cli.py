"""The ``stilt-dask`` command line: a thin layer over :class:`~pystilt_dask.model.Model`.

Each command is a function registered with :func:`command`, which turns a
:class:`~pystilt_dask.errors.StiltError` into a one-line ``error: …`` on stderr
and exit status 2. ``PROJECT`` is a ``config.yaml``, the folder holding it, or a
project store (path or fsspec URL); see :func:`open_model`.
"""

from __future__ import annotations

import functools
import gc
import importlib.metadata
import json
import os
import subprocess
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from .config import ModelConfig
from .defaults import use_own_numba_cache
from .demo import CONFIG_NAME, make_demo_project, write_template_project
from .errors import ConfigError, StiltError, StoreError
from .execution.clusters import WORKER_ARGS
from .execution.console import summary
from .execution.preload import tune_allocator
from .execution.run import Run, connect
from .execution.serve import serve as serve_forever
from .execution.slurm import coordinator_script
from .footprint import to_rstilt_netcdf
from .migrate import MigrationWarning, from_pystilt, is_pystilt_config
from .model import Footprint, Model
from .store import layout
from .store.completion import STATES, State
from .store.status import status as status_of

app = typer.Typer(
    name="stilt-dask",
    help="STILT (HYSPLIT-STILT particles, R-STILT footprints) on any Dask cluster.",
    no_args_is_help=True,
    add_completion=False,
    # Plain help: each value is named by its metavar, with no type labels.
    rich_markup_mode=None,
    context_settings={"max_content_width": 100},
)
console = Console()
error_console = Console(stderr=True)

ProjectArg = Annotated[
    str,
    typer.Argument(
        help="A config.yaml, the folder holding it, or a project store (path or URL).",
        metavar="PROJECT",
        show_default=False,
    ),
]


def _print_version(value: bool) -> None:
    """Print the installed package's version and stop (an eager ``--version``)."""
    if value:
        typer.echo(f"stilt-dask (pystilt-dask) {importlib.metadata.version('pystilt-dask')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """STILT (HYSPLIT-STILT particles, R-STILT footprints) on any Dask cluster."""


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


def _footprint(model: Model, name: str, project: str) -> Footprint:
    """The named footprint of a project; an unknown name is a one-line error."""
    if name not in model.footprints:
        known = ", ".join(model.footprints) or "none configured"
        raise StoreError(f"no footprint named {name!r} in {project} ({known})")
    return model.footprints[name]


def open_model(project: str, receptors: str | None = None) -> Model:
    """The model of a config file, of the folder holding one, or of a project store.

    Parameters
    ----------
    project : str
        ``*.yaml``/``*.yml``: a config file, whose ``output`` is the store. A URL
        (``s3://…``, ``file://…``): a project store. A local folder: a store when it
        has ``.stilt/`` (a store also holds a copy of its ``config.yaml``, so the
        store test comes first), else the project folder whose ``config.yaml`` is read.
    receptors : str, optional
        Receptor table overriding the config's.

    Raises
    ------
    StoreError
        For anything else, naming the path and the accepted forms in one line.
    """
    if project.endswith((".yaml", ".yml")):
        try:
            return Model.from_yaml(project, receptors=receptors)
        except ConfigError:
            if is_pystilt_config(project):
                raise ConfigError(
                    f"{project} is a PYSTILT config.yaml: translate it first with "
                    f"`stilt-dask migrate {project} config.yaml`"
                ) from None
            raise
    if "://" in project:
        return Model(project, receptors=receptors)
    path = Path(project).expanduser()
    if path.is_dir():
        # Registry commits, claims and checksums all live under .stilt/.
        if (path / layout.REGISTRY).parent.is_dir():
            return Model(path, receptors=receptors)
        if (path / CONFIG_NAME).is_file():
            return Model.from_yaml(path / CONFIG_NAME, receptors=receptors)
    problem = "is a folder with no config.yaml" if path.is_dir() else "does not exist"
    if path.is_file():
        problem = "is not a .yaml file"
    raise StoreError(
        f"{project} {problem}: give a config.yaml, the project folder holding it, "
        "or a project store (folder or URL)"
    )


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
    """Count simulations per state, overall and per footprint name."""
    model = open_model(project)
    known = model.registry()
    counts = status_of(model.location, known, model.completion).counts()
    unregistered = model.unregistered(known)
    if as_json:
        typer.echo(json.dumps({**counts, "unregistered": unregistered}))
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
        bool, typer.Option("--repair", help="Remove damaged results and restore lost entries.")
    ] = False,
) -> None:
    """Read back every result; name damaged simulations (exit 1 when any)."""
    model = open_model(project)
    report = model.verify(repair=repair)
    console.print(report.summary(), markup=False, highlight=False)
    if not report.ok and not repair:
        raise typer.Exit(1)


BackendOption = Annotated[
    str | None,
    typer.Option(help="Override the backend: local, slurm or kubernetes.", metavar="NAME"),
]


def _run(model: Model, run: Run, scheduler: str | None) -> None:
    """Run a plan with a live progress bar; exit 0 (all complete), 1 (not all), 130 (Ctrl-C)."""
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
    args = [sys.executable, "-m", "distributed.cli.dask_worker", scheduler, *WORKER_ARGS, *ctx.args]
    os.execv(sys.executable, args)


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


@command
def export(
    project: ProjectArg,
    directory: Annotated[
        str, typer.Argument(help="Folder (or fsspec URL) for the <sim_id>_foot.nc files.")
    ],
    footprint: Annotated[str, typer.Option(help="The footprint name to export.", metavar="NAME")],
    ids: Annotated[
        list[str] | None,
        typer.Option(
            "--ids", help="Only this simulation (repeatable); each must be complete.", metavar="ID"
        ),
    ] = None,
) -> None:
    """Write one footprint as R-STILT's <sim_id>_foot.nc files (exit 1 if some are not done)."""
    model = open_model(project)
    target = _footprint(model, footprint, project)
    states = model.status().table[footprint]
    if ids:
        target.check_exportable(ids)  # named ids: all or nothing
        chosen, empty, incomplete = list(ids), [], []
    else:
        chosen = states.index[states == State.COMPLETE].tolist()
        empty = states.index[states == State.COMPLETE_EMPTY].tolist()
        incomplete = states.index[~states.isin([State.COMPLETE, State.COMPLETE_EMPTY])].tolist()
    local = (
        None
        if "://" in directory.removeprefix("file://")
        else Path(directory.removeprefix("file://"))
    )
    if local is not None:
        local.mkdir(parents=True, exist_ok=True)
    foot = target.load()
    for sim_id in chosen:
        name = f"{sim_id}_foot.nc"
        to_rstilt_netcdf(
            foot.sel(simulation=sim_id),
            local / name if local is not None else f"{directory.rstrip('/')}/{name}",
        )
    console.print(f"wrote {len(chosen)} files to {directory}", markup=False, highlight=False)
    if empty:
        console.print(
            f"skipped {len(empty)} empty footprints (R-STILT writes no file for them)",
            markup=False, highlight=False,
        )  # fmt: skip
    if incomplete:
        error_console.print(
            f"skipped {len(incomplete)} simulations whose footprint {footprint!r} is not "
            f"computed yet: {', '.join(incomplete[:10])}"
            + (f" and {len(incomplete) - 10} more" if len(incomplete) > 10 else ""),
            markup=False, highlight=False, soft_wrap=True,
        )  # fmt: skip
        raise typer.Exit(1)


@command
def convolve(
    project: ProjectArg,
    flux: Annotated[
        str, typer.Argument(help="Flux field (netCDF or zarr, path or fsspec URL), µmol m⁻² s⁻¹.")
    ],
    footprint: Annotated[str, typer.Option(help="The footprint name to convolve.", metavar="NAME")],
    variable: Annotated[
        str | None,
        typer.Option(help="The flux variable, when the file holds several.", metavar="NAME"),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(
            help="Write the table here (.csv or .parquet); default: print CSV.", metavar="FILE"
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Compute on this running Dask scheduler (default: local threads).",
            metavar="ADDRESS",
        ),
    ] = None,
) -> None:
    """Modelled enhancement (footprint × flux) of every simulation, as a table."""
    from .analysis import enhancement_table  # dask.array: only for this command

    model = open_model(project)
    _footprint(model, footprint, project)
    with connect(scheduler, model.config.execution) if scheduler else nullcontext():
        try:
            table = enhancement_table(model, footprint, flux, variable)
        except ValueError as exc:  # a flux that does not fit the footprints
            raise ConfigError(f"{flux}: {exc}") from None
    if out is None:
        sys.stdout.write(table.to_csv())
    elif out.endswith(".parquet"):
        table.to_parquet(out)
    else:
        table.to_csv(out)
    missing = int(table["enhancement"].isna().sum())
    if missing:
        error_console.print(
            f"{missing} of {len(table)} simulations have no computed footprint {footprint!r} "
            "(NaN enhancement); run them first (`stilt-dask run`)",
            markup=False, highlight=False, soft_wrap=True,
        )  # fmt: skip
        raise typer.Exit(1)


@command
def migrate(
    pystilt_config: Annotated[
        str,
        typer.Argument(
            help="A PYSTILT config.yaml, its project folder, or a _settings.yaml of its output.",
            show_default=False,
        ),
    ],
    out: Annotated[
        str | None, typer.Argument(help="Where to write our config.yaml; default: print it.")
    ] = None,
    variant: Annotated[
        str | None,
        typer.Option(help="The PYSTILT variant to migrate (when they differ).", metavar="NAME"),
    ] = None,
    mets: Annotated[
        str | None,
        typer.Option(
            help="A YAML file whose mets: mapping gives the met files (_settings.yaml).",
            metavar="FILE",
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            help="The project store; default: PYSTILT's output + -stilt-dask.", metavar="STORE"
        ),
    ] = None,
) -> None:
    """Translate a PYSTILT configuration into ours (each dropped setting is named)."""
    if out is not None and Path(out).exists():
        raise ConfigError(f"{out} exists; give a new file for the migrated config")
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always", MigrationWarning)
        config = from_pystilt(pystilt_config, variant=variant, mets=_read_mets(mets), output=output)
    for note in notes:
        error_console.print(f"note: {note.message}", markup=False, highlight=False)
    if out is None:
        typer.echo(config.to_yaml(), nl=False)
        return
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    config.to_yaml(out)
    console.print(f"wrote {out}; run it with: stilt-dask run {out}", markup=False, highlight=False)


def _read_mets(path: str | None) -> dict[str, Any] | None:
    """The ``mets:`` mapping of a YAML file, directories anchored at its folder."""
    if path is None:
        return None
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read mets from {path}: {exc}") from None
    found = data.get("mets", data) if isinstance(data, dict) else None
    if not isinstance(found, dict) or not all(isinstance(m, dict) for m in found.values()):
        raise ConfigError(f"{path} holds no mets: mapping of name: {{directory, file_format}}")
    base = Path(path).resolve().parent
    return {
        name: {**met, "directory": str(base / os.path.expanduser(met["directory"]))}
        if "directory" in met
        else met
        for name, met in found.items()
    }


def main() -> None:
    """The ``stilt-dask`` console script."""
    use_own_numba_cache()  # this process is ours: keep our kernels' cache out of site-packages
    try:
        app()
    finally:
        # The exit frees everything at once; frozen objects are left out of the
        # interpreter's final collections, which took about 1 s after a run.
        gc.freeze()
