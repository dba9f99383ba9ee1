"""A stand-in for ``hycs_std``: a test double that writes plausible particles in milliseconds.

It exists so that scale tests and benchmarks can drive thousands of real Dask
tasks through the whole pipeline (met checks, inputs, the run and its
classification, parsing, footprints, the store) without paying for HYSPLIT. It
is never used unless ``hysplit.executable`` (or ``$STILT_HYSPLIT_EXE``) names it,
and its particles are invented (see :mod:`.standin_program`): results computed
with it are not STILT's. Every run says so in its log ("stand-in transport, not
HYSPLIT"), which the store keeps with each simulation.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from ..fingerprint import STANDIN
from . import standin_program
from .executable import DATA_FILES

#: The name :func:`write_standin` gives the executable: not ``hycs_std``, so a
#: folder holding it on ``PATH`` is never mistaken for HYSPLIT.
NAME = STANDIN


def write_standin(directory: str | os.PathLike[str]) -> Path:
    """Write the stand-in executable into ``directory`` and return its path.

    A test double for scale tests and benchmarks, never the default: name the
    returned path in ``hysplit.executable`` (or ``$STILT_HYSPLIT_EXE``) to use it.
    Empty placeholders of HYSPLIT's data tables are written beside it (the
    stand-in reads none), so it resolves without the pystilt wheel.

    Parameters
    ----------
    directory : path-like
        Created if missing.

    Returns
    -------
    pathlib.Path
        The executable, ``directory/hycs_std-standin``.

    Raises
    ------
    ValueError
        When this interpreter's path cannot be a shebang line (whitespace in it).

    Examples
    --------
    >>> exe = write_standin(tmp_path / "standin")  # doctest: +SKIP
    >>> config = ModelConfig.from_dict({"hysplit": {"executable": str(exe)}, ...})  # doctest: +SKIP
    """
    interpreter = sys.executable
    if not interpreter or any(c.isspace() for c in interpreter):
        raise ValueError(
            f"the stand-in needs an interpreter path without whitespace: {interpreter!r}"
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # -I -S: no user site, no site-packages; the program needs neither, and is a copy,
    # so it runs the same whatever is installed later.
    program = Path(standin_program.__file__).read_text()
    handle, partial = tempfile.mkstemp(dir=directory, prefix=f".{NAME}.")
    with os.fdopen(handle, "w") as out:
        out.write(f"#!{interpreter} -IS\n{program}")
    os.chmod(partial, 0o755)
    path = directory / NAME
    os.replace(partial, path)  # whole or absent, also with two writers at once
    for name in DATA_FILES:
        (directory / name).touch()
    return path
