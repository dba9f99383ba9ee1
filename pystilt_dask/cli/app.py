"""The ``stilt-dask`` application: its commands' shared parts.

Each command is a function registered with :func:`command`, which turns a
:class:`~pystilt_dask.errors.StiltError` into a one-line ``error: …`` on stderr
and exit status 2. ``PROJECT`` is a ``config.yaml``, the folder holding it, or a
project store (path or fsspec URL); see :func:`open_model`.
"""

from __future__ import annotations

import functools
import importlib.metadata
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from ..errors import ConfigError, StiltError, StoreError

if TYPE_CHECKING:
    from ..model import Footprint, Model

# The model, the store and the receptor tables (zarr, pyarrow, numba) are imported by
# the commands that use them: `stilt-dask --version` and `--help` start without them.

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
    """Register ``fn`` as a subcommand; a StiltError ends it with one line and status 2.

    Receptors merged while reading a table (:class:`ReceptorsMerged`) are one
    ``note: …`` line on stderr, printed when the table is read, once per command.
    """

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        from ..receptors import ReceptorsMerged

        notes: set[str] = set()
        show = warnings.showwarning

        def note(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: Any = None,
            line: str | None = None,
        ) -> None:
            if not issubclass(category, ReceptorsMerged):
                show(message, category, filename, lineno, file, line)
            elif str(message) not in notes:
                notes.add(str(message))
                error_console.print(f"note: {message}", markup=False, highlight=False)

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always", ReceptorsMerged)
                warnings.showwarning = note
                return fn(*args, **kwargs)
        except StiltError as exc:
            error_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return app.command()(run)


def named_footprint(model: Model, name: str, project: str) -> Footprint:
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
    from ..demo import CONFIG_NAME
    from ..migrate import is_pystilt_config
    from ..model import Model
    from ..store import layout

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
