"""The met files of one run, chosen and checked before HYSPLIT starts.

One function for the whole sequence a worker follows for a simulation: choose
each archive's files from their headers, fetch those of a remote archive into the
node's met cache (:mod:`.remote`), check them against their directory's digest
manifest, then check that every archive covers the run window, that each release
point lies inside one of the grids, and that the steps read are intact.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from ..config import MetConfig
from .coverage import check_selection
from .files import Selection, archive_index, run_window, select_files
from .manifest import verify_met_files
from .remote import RemoteFile, fetch_infos, is_remote

__all__ = ["fetched", "prepare_met"]


def prepare_met(
    time: datetime,
    n_hours: int,
    points: Iterable[tuple[float, float, float]],
    archives: Sequence[tuple[str, MetConfig]],
) -> list[Path]:
    """Choose and check the met files of a run; return them in the order HYSPLIT takes them.

    Parameters
    ----------
    time : datetime
        The receptor's time.
    n_hours : int
        Run length (negative: backward).
    points : iterable of (lat, lon, height)
        Release points.
    archives : sequence of (str, MetConfig)
        The archives the run reads, finest grid first, as
        :meth:`~pystilt_dask.config.ModelConfig.archives` lists them.

    Returns
    -------
    list of Path
        Every archive's files, archive after archive, each grid in time order
        (a remote archive's as their copies in the met cache).

    Raises
    ------
    MeteorologyError
        Naming the archive and the missing time steps, the release point outside
        every grid, a file changed since its manifest was written, or damaged data.
    """
    window = run_window(time, n_hours)
    selections = [select_files(window, met, name) for name, met in archives]
    for k, ((name, met), selection) in enumerate(zip(archives, selections, strict=True)):
        if is_remote(met.directory):
            selections[k] = fetched(selection, archive_index(met).manifest)
        else:
            verify_met_files(selection.files, met.directory, name)
    check_selection(selections, window, list(points))
    return [path for selection in selections for path in selection.files]


def fetched(selection: Selection, manifest: RemoteFile | None) -> Selection:
    """``selection`` with its remote files fetched: the same choice, on the local copies.

    Missing steps are named before anything is fetched.

    Raises
    ------
    MeteorologyError
        As :func:`~pystilt_dask.meteorology.remote.fetch_infos`.
    """
    if selection.missing:
        return selection
    infos = [info for series in selection.series for info in series.infos]
    local = fetch_infos(infos, manifest, selection.name)
    return Selection(
        selection.name,
        tuple(
            replace(series, infos=tuple(local.get(info.path, info) for info in series.infos))
            for series in selection.series
        ),
    )
