"""Commands on meteorology: ``met-manifest``."""

from __future__ import annotations

from typing import Annotated

import typer

from .app import command, console


@command
def met_manifest(
    directory: Annotated[
        str,
        typer.Argument(
            help="A met directory (a mets entry's `directory`).",
            metavar="DIRECTORY",
            show_default=False,
        ),
    ],
) -> None:
    """Write the SHA-256 of every met file under DIRECTORY to its MANIFEST.sha256.

    Every later simulation checks the files it uses against it, so any change to
    a met file is found before HYSPLIT reads it. Rewrite it after adding or
    replacing met files.
    """
    from ..meteorology.manifest import write_manifest

    manifest, count = write_manifest(directory)
    console.print(
        f"wrote {manifest}: sha256 of {count} met files "
        f"(check with `sha256sum -c {manifest.name}` in {manifest.parent})",
        markup=False, highlight=False, soft_wrap=True,
    )  # fmt: skip
