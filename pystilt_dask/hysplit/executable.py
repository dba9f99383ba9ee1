"""Find the ``hycs_std`` binary (HYSPLIT 5.1.0, STILT build) and its data tables."""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import HysplitNotFoundError

#: Environment variable naming the executable.
ENV_VAR = "STILT_HYSPLIT_EXE"
#: Tables HYSPLIT reads from its working directory.
DATA_FILES = ("ASCDATA.CFG", "LANDUSE.ASC", "ROUGLEN.ASC", "TERRAIN.ASC")
_WHEEL_BIN = ("transport", "hysplit", "bin", "linux_x64", "hycs_std")
_WHEEL_DATA = ("transport", "hysplit", "data")


@dataclass(frozen=True)
class HysplitInstall:
    """A usable ``hycs_std`` and the directory holding its data tables."""

    executable: Path
    data_dir: Path

    @property
    def data_files(self) -> list[Path]:
        """The data tables to link into a work directory."""
        return [self.data_dir / name for name in DATA_FILES]


def _wheel_root() -> Path | None:
    # find_spec locates the pystilt wheel without importing it (importing costs ~0.7 s).
    spec = importlib.util.find_spec("stilt")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_hysplit(executable: str | os.PathLike[str] | None = None) -> HysplitInstall:
    """Resolve ``hycs_std``: the argument, ``$STILT_HYSPLIT_EXE``, ``PATH``, then the wheel.

    Data tables are taken from beside the executable when all are there, else
    from the ``pystilt`` wheel.

    Parameters
    ----------
    executable : path-like, optional
        Explicit path (the ``hysplit.executable`` config field).

    Raises
    ------
    HysplitNotFoundError
        When no executable is found, naming all four ways to provide one.
    """
    wheel = _wheel_root()
    candidates: list[tuple[str, Path | None]] = [
        ("hysplit.executable", Path(executable) if executable else None),
        (f"${ENV_VAR}", Path(os.environ[ENV_VAR]) if os.environ.get(ENV_VAR) else None),
        ("PATH", Path(found) if (found := shutil.which("hycs_std")) else None),
        ("pystilt wheel", wheel.joinpath(*_WHEEL_BIN) if wheel else None),
    ]
    for source, path in candidates:
        if path is None:
            continue
        if not (path.is_file() and os.access(path, os.X_OK)):
            if source != "pystilt wheel":
                raise HysplitNotFoundError(
                    f"{source} points to {path}, which is not an executable file"
                )
            continue
        return HysplitInstall(path.resolve(), _data_dir(path, wheel))
    raise HysplitNotFoundError(
        "hycs_std not found: set hysplit.executable in config.yaml, or the environment "
        f"variable {ENV_VAR}, or put hycs_std on PATH, or `pip install pystilt` "
        "(its wheel ships it)"
    )


def _data_dir(executable: Path, wheel: Path | None) -> Path:
    beside = executable.resolve().parent
    if all((beside / name).is_file() for name in DATA_FILES):
        return beside
    if wheel is not None and (wheel.joinpath(*_WHEEL_DATA) / DATA_FILES[0]).is_file():
        return wheel.joinpath(*_WHEEL_DATA)
    raise HysplitNotFoundError(
        f"HYSPLIT data tables {', '.join(DATA_FILES)} are neither beside {executable} "
        "nor in the pystilt wheel"
    )
