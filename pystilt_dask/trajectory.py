"""One STILT trajectory run: receptor + configuration → particle table.

Met files are found (and fetched, for met behind a URL), checked against their
directory's digest manifest (when it has one) and their coverage verified before
HYSPLIT starts; HYSPLIT runs in a private scratch directory; particles are parsed
as soon as it ends, and on cropped met checked to stay inside the crop;
column release heights (``xhgt``) and the near-field correction are added.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .config import MetConfig, ModelConfig
from .hysplit.executable import resolve_hysplit
from .hysplit.inputs import write_inputs
from .hysplit.particles import read_particle_file
from .hysplit.run import log_text, run_hysplit, workdir_for
from .meteorology.crop import check_inside_crops
from .meteorology.prepare import prepare_met
from .nearfield import apply_hnf_plume, release_heights
from .receptors import ColumnReceptor, Receptor


@dataclass(frozen=True)
class Trajectories:
    """Everything one simulation's HYSPLIT runs produced.

    Attributes
    ----------
    particles : pandas.DataFrame
        The main run's particles (R-STILT columns).
    error_particles : pandas.DataFrame or None
        The transport-error run's particles, when transport error is configured.
    log : str
        HYSPLIT's console output, WARNING and MESSAGE files of the main run.
    met_files : tuple of Path
        The met files the run read.
    """

    particles: pd.DataFrame
    error_particles: pd.DataFrame | None
    log: str
    met_files: tuple[Path, ...]


def run_trajectory(
    receptor: Receptor,
    config: ModelConfig,
    met: str | MetConfig | None = None,
    workdir: str | os.PathLike[str] | None = None,
    cancelled: Callable[[], str | None] | None = None,
) -> pd.DataFrame:
    """Run HYSPLIT-STILT for one receptor and return its particles.

    Parameters
    ----------
    receptor : PointReceptor, ColumnReceptor or MultiPointReceptor
        Where and when particles are released.
    config : ModelConfig
        Project configuration (its ``hysplit`` section and ``mets``).
    met : str or MetConfig, optional
        Name of an entry in ``config.mets`` (default: the first) or a MetConfig.
    workdir : path-like, optional
        Run here and keep the files; default: a private directory under the
        compute root, removed after success and kept after failure.
    cancelled : callable, optional
        Polled while HYSPLIT runs: returns why the caller gave up (HYSPLIT is
        then killed and :class:`~pystilt_dask.errors.HysplitError` raised with
        reason ``"cancelled"``), or ``None``. Default: never cancelled.

    Returns
    -------
    pandas.DataFrame
        One row per particle and minute with R-STILT's columns: ``time`` (minutes
        since release), ``indx``, ``long``, ``lati``, ``zagl``, ``foot`` and the rest of
        ``varsiwant``, plus ``xhgt`` for columns and ``foot_no_hnf_dilution`` when
        ``hnf_plume`` is on.

    Raises
    ------
    MeteorologyError
        Met files missing, damaged, changed since their directory's manifest was
        written (or not listed in it), or not covering the run window or the
        receptor; particles reaching a cut edge of cropped met.
    HysplitNotFoundError
        No ``hycs_std`` could be resolved.
    HysplitError
        HYSPLIT failed; ``reason`` says why and ``log_tail`` shows its output.

    Examples
    --------
    >>> receptor = PointReceptor(
    ...     time="2019-05-30 10:00", longitude=-111.848, latitude=40.766, altitude=5
    ... )
    >>> particles = run_trajectory(receptor, config)  # doctest: +SKIP
    """
    return simulate_trajectories(receptor, config, met, workdir, cancelled).particles


def simulate_trajectories(
    receptor: Receptor,
    config: ModelConfig,
    met: str | MetConfig | None = None,
    workdir: str | os.PathLike[str] | None = None,
    cancelled: Callable[[], str | None] | None = None,
) -> Trajectories:
    """Run the main (and, when configured, the transport-error) HYSPLIT pass.

    Same parameters as :func:`run_trajectory`; returns a :class:`Trajectories`.
    """
    hysplit = config.hysplit
    archives = _select_met(config, met)
    files = prepare_met(receptor.time, hysplit.n_hours, receptor.release_points, archives)
    install = resolve_hysplit(hysplit.executable)
    with workdir_for(receptor.sim_id, workdir) as root:
        write_inputs(root, receptor, hysplit, files)
        particle_file = run_hysplit(root, install, hysplit.timeout, cancelled)
        particles = _postprocess(
            read_particle_file(particle_file, hysplit.varsiwant), receptor, config
        )
        check_inside_crops(particles, archives, receptor.sim_id)
        log = log_text(root)
        error_particles = None
        if hysplit.winderrtf:
            error_dir = root / "error"
            error_dir.mkdir(exist_ok=True)
            write_inputs(error_dir, receptor, hysplit, files, error_run=True)
            error_file = run_hysplit(error_dir, install, hysplit.timeout, cancelled)
            error_particles = _postprocess(
                read_particle_file(error_file, hysplit.varsiwant), receptor, config
            )
            check_inside_crops(error_particles, archives, receptor.sim_id)
    return Trajectories(particles, error_particles, log, tuple(files))


def _select_met(config: ModelConfig, met: str | MetConfig | None) -> list[tuple[str, MetConfig]]:
    """The archives a run reads, finest grid first."""
    if isinstance(met, MetConfig):
        return [("met", met)]
    return config.archives(met if met is not None else next(iter(config.mets)))


def _postprocess(particles: pd.DataFrame, receptor: Receptor, config: ModelConfig) -> pd.DataFrame:
    release = release_heights(particles, receptor)
    if isinstance(receptor, ColumnReceptor):
        particles = particles.assign(xhgt=release)
    if config.hysplit.hnf_plume:
        particles = apply_hnf_plume(particles, release, config.hysplit.veght)
    return particles
