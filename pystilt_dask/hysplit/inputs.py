"""Write HYSPLIT-STILT input files (CONTROL, SETUP.CFG, ZICONTROL, WINDERR, ZIERR).

The layouts are R-STILT's (``write_control.r``, ``write_setup.r``), so a run
directory written here reads like one R-STILT wrote, with three differences:
``SEED=`` closes the namelist when a seed is set (R-STILT never writes it),
CONTROL names links to the met files in the run directory, not their paths, and
met files of one time step each are joined first (:mod:`pystilt_dask.meteorology.join`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..config import HysplitConfig
from ..meteorology.join import hysplit_files
from ..receptors import ColumnReceptor, MultiPointReceptor, PointReceptor

Receptor = PointReceptor | ColumnReceptor | MultiPointReceptor
#: The folder of a work directory holding links to the run's met files.
MET_FOLDER = "met"

# R-STILT's namelist order; VARSIWANT and IVMAX come from `varsiwant`, the two
# switches last, from the transport-error and ziscale settings.
_NAMELIST_KEYS = (
    "capemin", "cmass", "conage", "cpack", "delt", "dxf", "dyf", "dzf", "efile", "frhmax",
    "frhs", "frme", "frmr", "frts", "frvs", "hscale", "ichem", "idsp", "initd", "ivmax",
    "k10m", "kagl", "kbls", "kblt", "kdef", "khinp", "khmax", "kmix0", "kmixd", "kmsl",
    "kpuff", "krand", "krnd", "kspl", "kwet", "kzmix", "maxdim", "maxpar", "mgmin", "mhrs",
    "nbptyp", "ncycl", "ndump", "ninit", "nstr", "nturb", "numpar", "nver", "outdt", "p10f",
    "pinbc", "pinpf", "poutf", "qcycle", "rhb", "rht", "splitf", "tkerd", "tkern", "tlfrac",
    "tout", "tratio", "tvmix", "varsiwant", "veght", "vscale", "vscaleu", "vscales", "wbbh",
    "wbwf", "wbwr", "wvert", "winderrtf", "zicontroltf",
)  # fmt: skip

# The block after the met files is read by HYSPLIT but ignored by STILT: one
# pollutant, a dummy concentration grid and no deposition (as R-STILT writes it).
_POLLUTANT = "1\ntest\n1\n{emisshrs}\n00 00 00 00 00\n"
_GRID_AND_DEPOSITION = (
    "1\n0.0 0.0\n0.5 0.5\n30.0 30.0\n./\ncdump\n1\n100\n00 00 00 00 00\n00 00 00 00 00\n"
    "00 2 00\n1\n0.0 0.0 0.0\n0.0 0.0 0.0 0.0 0.0\n0.0 0.0 0.0\n0.0\n0.0\n"
)


def format_value(value: object) -> str:
    """Format a namelist value the way HYSPLIT's reader accepts.

    No scientific notation (HYSPLIT cannot parse ``1e-05``), integral floats
    without a decimal point (``80.0`` breaks INTEGER keys), strings bare.
    """
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if float(value).is_integer():
            return str(int(value))
        return np.format_float_positional(float(value), trim="-")
    return str(value)


def maxpar(config: HysplitConfig, receptor: Receptor) -> int:
    """The particle limit: ``maxpar`` when set, else enough for every release point.

    HYSPLIT gives each of ``n`` separate release points ``numpar // n`` particles
    plus one, and stops at MAXPAR, so ``numpar`` alone starves the last points of
    a multipoint receptor. A column is one line source: ``numpar``.
    """
    if config.maxpar is not None:
        return config.maxpar
    if isinstance(receptor, MultiPointReceptor):
        n_points = len(receptor.release_points)
        return n_points * (config.numpar // n_points + 1)
    return config.numpar


def kmsl(config: HysplitConfig, receptor: Receptor) -> int:
    """HYSPLIT's ``KMSL`` for one simulation: 1 (heights above sea level) or 0 (above ground).

    A receptor above sea level (``altitude_ref="msl"``) is released with ``KMSL=1``,
    as PYSTILT does, and HYSPLIT converts its heights with the met's terrain. The
    project-wide ``hysplit.kmsl: 1`` releases every receptor of the project above
    sea level, as it always has; its receptors keep their ids.
    """
    return 1 if receptor.altitude_ref == "msl" else config.kmsl


def setup_text(config: HysplitConfig, receptor: Receptor, error_run: bool = False) -> str:
    """Return the text of SETUP.CFG for ``config``.

    The transport-error switch is only on in the second, ``error_run`` pass.
    """
    values = config.model_dump()
    values.update(
        ivmax=len(config.varsiwant),
        kmsl=kmsl(config, receptor),
        maxpar=maxpar(config, receptor),
        winderrtf=config.winderrtf if error_run else 0,
        zicontroltf=int(config.ziscale is not None),
    )
    lines = ["$SETUP"]
    for key in _NAMELIST_KEYS:
        value = values[key]
        if key == "varsiwant":
            text = ", ".join(f"'{v}'" for v in value)
        elif key == "wvert":
            text = "TRUE" if value else "FALSE"
        else:
            text = format_value(value)
        lines.append(f"{key.upper()}={text},")
    if config.seed is not None:
        lines.append(f"SEED={-(abs(config.seed) + 1)},")
    lines.append("$END")
    return "\n".join(lines) + "\n"


def control_text(receptor: Receptor, config: HysplitConfig, met_files: Sequence[str | Path]) -> str:
    """Return the text of CONTROL for one receptor and its met files.

    Each met file is listed as its own grid, in the order given (R-STILT's layout;
    the bundled build accepts up to 99). HYSPLIT moves on from one file to the next
    of the same grid in time, and moves a particle on the first listed grid that
    holds it, so a nest is given finest grid first. A column receptor is two
    release points at one place, which HYSPLIT turns into a vertical line source.
    """
    points = receptor.release_points
    lines = [receptor.time.strftime("%y %m %d %H %M"), str(len(points))]
    lines += [" ".join(format_value(float(v)) for v in point) for point in points]
    lines += [str(config.n_hours), str(config.w_option), f"{config.z_top:.1f}", str(len(met_files))]
    for path in met_files:
        directory, name = str(path).rsplit("/", 1) if "/" in str(path) else (".", str(path))
        lines += [directory + "/", name]
    return (
        "\n".join(lines)
        + "\n"
        + _POLLUTANT.format(emisshrs=format_value(config.emisshrs))
        + (_GRID_AND_DEPOSITION)
    )


def link_met_files(workdir: Path, met_files: Sequence[str | Path]) -> list[str]:
    """Link each met file into ``workdir`` under a short name; return those names.

    HYSPLIT cannot open a met file in a folder of more than 256 characters (it
    exits with status 132 before writing a line), so CONTROL names links in
    :data:`MET_FOLDER` instead. Each link points to the path as given (relative
    paths taken from ``workdir``), so a symlink made to shorten a path still works.
    Consecutive files of one grid among which one holds a single time step are
    linked as one joined file (:func:`~pystilt_dask.meteorology.join.hysplit_files`).
    """
    folder = Path(workdir) / MET_FOLDER
    folder.mkdir(exist_ok=True)
    for stale in folder.glob("m*"):  # an explicit work directory may be run again
        stale.unlink()
    names = []
    given = [Path(workdir).absolute() / path for path in met_files]
    for index, path in enumerate(hysplit_files(given)):
        link = folder / f"m{index}"
        link.symlink_to(path)
        names.append(f"{MET_FOLDER}/{link.name}")
    return names


def write_inputs(
    workdir: Path,
    receptor: Receptor,
    config: HysplitConfig,
    met_files: Sequence[str | Path],
    error_run: bool = False,
) -> None:
    """Write every input file a run of ``receptor`` needs into ``workdir``.

    The met files are linked in under short names (:func:`link_met_files`). With
    ``error_run``, write the transport-error pass (WINDERR/ZIERR and the switch).
    """
    workdir = Path(workdir)
    names = link_met_files(workdir, met_files)
    (workdir / "CONTROL").write_text(control_text(receptor, config, names))
    (workdir / "SETUP.CFG").write_text(setup_text(config, receptor, error_run))
    if config.ziscale is not None:
        factors = "\n".join(format_value(float(v)) for v in config.ziscale)
        (workdir / "ZICONTROL").write_text(f"{len(config.ziscale)}\n{factors}\n")
    if not error_run:
        return
    if config.siguverr is not None:
        wind = (config.siguverr, config.tluverr, config.zcoruverr, config.horcoruverr)
        (workdir / "WINDERR").write_text("".join(f"{format_value(v)}\n" for v in wind))
    if config.sigzierr is not None:
        zi = (config.sigzierr, config.tlzierr, config.horcorzierr)
        (workdir / "ZIERR").write_text("".join(f"{format_value(v)}\n" for v in zi))
