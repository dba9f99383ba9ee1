"""Commands on results and configurations: export, convolve, migrate."""

from __future__ import annotations

import os
import sys
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import ConfigError
from .app import (
    ProjectArg,
    command,
    console,
    error_console,
    named_footprint,
    open_model,
)


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
    from ..footprint import to_rstilt_netcdf  # numba: only for this command
    from ..store.completion import State

    model = open_model(project)
    target = named_footprint(model, footprint, project)
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
    from ..analysis import enhancement_table  # dask.array: only for this command
    from ..execution.run import connect

    model = open_model(project)
    named_footprint(model, footprint, project)
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
    from ..migrate import MigrationWarning, from_pystilt

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
    from ..config import load_yaml

    try:
        data = load_yaml(Path(path).read_text(), path) or {}
    except OSError as exc:
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
