"""The ``check`` command: everything that would stop a run, before any run."""

from __future__ import annotations

import typer

from .app import ProjectArg, command, console, open_model


@command
def check(project: ProjectArg) -> None:
    """List what would stop a run, one line each (exit 1 when any); starts no cluster.

    Checks the receptor table, each receptor's met (directory, files, time
    coverage, domain), the met files the runs read (against the met directory's
    digest manifest when it has one, and ARL checksums), hycs_std and whether the
    output takes writes.
    """
    report = open_model(project).check()
    for problem in report.problems:
        console.print(str(problem), markup=False, highlight=False, soft_wrap=True)
    console.print(report.summary(), markup=False, highlight=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)
