"""Cut the met subgrid a batch of simulations needs, once, where every worker reads it.

A batch of simulations over one region (a scene, a tower network, a time window)
reads a small part of large met files (CONUS HRRR, global GFS). :func:`crop_batch`
cuts that part once: every file the batch's runs read, all levels and variables,
horizontally to the receptors' bounding box widened by ``reach_km`` on every side
(arlmet's ``extract_subset`` does the cutting), into a folder under
``destination`` (the project store or a shared cache URL: a node-local folder is
invisible to the other nodes of a cluster). The crop is itself a met archive:
the same file names, a ``MANIFEST.sha256`` of the cut files (so a crop fetched
from an object store is checked as any remote archive is) and ``CROP.json``,
what it was cut from, written last: a crop whose ``CROP.json`` exists is
complete, and is not cut again.

HYSPLIT then runs on the crop. Where the crop edge is the source grid's edge,
particles leave the met as they would have anyway; elsewhere a particle reaching
the crop's edge would have gone on in the source and stops in the crop, so every
run on a crop is checked after HYSPLIT (:func:`check_inside_crops`): a particle
within :data:`~pystilt_dask.meteorology.coverage.EDGE` cells of such an edge
fails the simulation, naming where and when.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import posixpath
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import arlmet
import fsspec
import numpy as np
import pandas as pd

from ..config import MetConfig, ModelConfig
from ..errors import MeteorologyError
from .cache import cache_directory
from .coverage import EDGE
from .files import archive_index, run_window, select_files
from .listing import CROP_NAME
from .manifest import write_manifest
from .prepare import fetched
from .remote import is_remote

__all__ = [
    "Crop",
    "check_inside_crops",
    "crop_batch",
    "crop_bbox",
    "crop_met",
    "cropped_config",
    "read_crop",
]

#: Kilometres per degree of latitude (and of longitude at the equator).
KM_PER_DEGREE = 111.32


def crop_bbox(points: Iterable[tuple[float, float, float]], reach_km: float) -> tuple[float, ...]:
    """The box ``(west, south, east, north)`` of ``points`` widened by ``reach_km`` each way.

    ``reach_km`` is how far a particle may travel from its release during the
    run. Longitudes are widened at the box's most poleward latitude, where a
    kilometre spans the most degrees.

    Parameters
    ----------
    points : iterable of (lat, lon, height)
        Release points (a receptor's ``release_points``).
    reach_km : float
        Distance (km), positive.
    """
    lats, lons = np.array([(lat, lon) for lat, lon, _ in points], dtype=float).T
    dlat = reach_km / KM_PER_DEGREE
    south, north = max(lats.min() - dlat, -90.0), min(lats.max() + dlat, 90.0)
    widest = max(abs(south), abs(north))
    dlon = 180.0 if widest >= 89.0 else reach_km / (KM_PER_DEGREE * math.cos(math.radians(widest)))
    return (float(lons.min() - dlon), float(south), float(lons.max() + dlon), float(north))


@dataclass(frozen=True)
class Crop:
    """What a cropped archive was cut from: its ``CROP.json``.

    Attributes
    ----------
    source : str
        The source archive's directory.
    bbox : tuple of float
        ``(west, south, east, north)`` asked for.
    grids : tuple of (arlmet.Grid, arlmet.GridWindow)
        Each source grid, and the window of it the crop holds.
    """

    source: str
    bbox: tuple[float, ...]
    grids: tuple[tuple[arlmet.Grid, arlmet.GridWindow], ...]

    def to_json(self) -> str:
        """The ``CROP.json`` text."""
        return json.dumps(
            {
                "source": self.source,
                "bbox": list(self.bbox),
                "grids": [
                    {
                        "projection": dataclasses.asdict(grid.projection),
                        "nx": grid.nx,
                        "ny": grid.ny,
                        "window": dataclasses.astuple(window),
                    }
                    for grid, window in self.grids
                ],
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> Crop:
        """Read ``CROP.json`` text."""
        data = json.loads(text)
        grids = tuple(
            (
                arlmet.Grid(arlmet.Projection(**g["projection"]), g["nx"], g["ny"]),
                arlmet.GridWindow(*g["window"]),
            )
            for g in data["grids"]
        )
        return cls(data["source"], tuple(data["bbox"]), grids)

    def safe(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Where positions are inside a crop grid, :data:`EDGE` cells from each cut edge.

        An edge the crop shares with its source grid is no cut: particles leaving
        there leave the source met too.
        """
        safe = np.zeros(np.shape(lon), dtype=bool)
        for source, window in self.grids:
            x, y = source.subset(window).fractional_indices(lon, lat)
            wraps = source.wraps_lon
            west = wraps or window.x_start > 0
            east = wraps or window.x_stop < source.nx
            inside = (x >= (EDGE if west else 0)) & (x <= window.nx - 1 - (EDGE if east else 0))
            low = EDGE if window.y_start > 0 else 0
            high = window.ny - 1 - (EDGE if window.y_stop < source.ny else 0)
            safe |= inside & (y >= low) & (y <= high)
        return safe


def crop_met(
    archives: Sequence[tuple[str, MetConfig]],
    window: tuple[pd.Timestamp, pd.Timestamp],
    bbox: tuple[float, ...],
    destination: str,
    storage_options: dict[str, Any] | None = None,
) -> list[tuple[str, MetConfig]]:
    """Cut the met of ``archives`` over ``window`` to ``bbox`` into ``destination``.

    Parameters
    ----------
    archives : sequence of (str, MetConfig)
        The archives (a nest's, finest first), each cut to the same box.
    window : (Timestamp, Timestamp)
        Earliest and latest instants the runs touch: every file holding a step
        they need is cut, all its time steps, levels and variables.
    bbox : (west, south, east, north)
        Degrees (:func:`crop_bbox`), clipped to each grid.
    destination : str
        Folder or URL the crops go under, as ``<destination>/<key>/<archive name>``,
        ``key`` a digest of the source files and the box: the same batch is cut once.
    storage_options : dict, optional
        fsspec options of ``destination``.

    Returns
    -------
    list of (str, MetConfig)
        The cropped archives, in the order of ``archives``, for
        :func:`~pystilt_dask.meteorology.prepare.prepare_met`.

    Raises
    ------
    MeteorologyError
        When the source lacks a step of ``window``, the box misses a grid, or
        the crop cannot be written.
    """
    options = dict(storage_options or {})
    fs, root = fsspec.core.url_to_fs(destination, **options)
    chosen = []
    for name, met in archives:
        selection = select_files(window, met, name)
        if selection.missing:
            raise MeteorologyError(
                f"met {name!r} cannot be cropped: no data for "
                + ", ".join(f"{t:%Y-%m-%d %H:%M}" for t in selection.missing[:6])
            )
        chosen.append((name, met, selection))
    key = _crop_key(chosen, bbox)
    cropped = []
    for name, met, selection in chosen:
        folder = f"{destination.rstrip('/')}/{key}/{name}"
        target = f"{root.rstrip('/')}/{key}/{name}"
        if not fs.exists(f"{target}/{CROP_NAME}"):
            _cut(name, met, selection, bbox, fs, target)
        cropped.append((name, MetConfig(directory=folder, file_format=met.file_format,
                                        storage_options=options)))  # fmt: skip
    return cropped


def crop_batch(
    points: Iterable[tuple[pd.Timestamp, Iterable[tuple[float, float, float]]]],
    config: ModelConfig,
    met: str,
    reach_km: float,
    destination: str,
    storage_options: dict[str, Any] | None = None,
) -> list[tuple[str, MetConfig]]:
    """Cut the met a batch of simulations reads: the union of their windows and boxes.

    Parameters
    ----------
    points : iterable of (time, release points)
        Each simulation's receptor time and ``release_points``.
    config : ModelConfig
        The project (``hysplit.n_hours`` and ``mets``).
    met : str
        The ``mets`` entry the batch runs on (an archive or a nest).
    reach_km : float
        How far particles may travel from their release during a run
        (docs/meteorology.md, *Choosing the reach*).
    destination, storage_options
        As :func:`crop_met`.

    Returns
    -------
    list of (str, MetConfig)
        The cropped archives to run the batch on.
    """
    firsts, lasts, released = [], [], []
    for time, release in points:
        first, last = run_window(time, config.hysplit.n_hours)
        firsts.append(first)
        lasts.append(last)
        released.extend(release)
    bbox = crop_bbox(released, reach_km)
    return crop_met(
        config.archives(met), (min(firsts), max(lasts)), bbox, destination, storage_options
    )


def cropped_config(
    config: ModelConfig,
    met: str,
    points: Iterable[tuple[pd.Timestamp, Iterable[tuple[float, float, float]]]],
    reach_km: float,
    destination: str,
    storage_options: dict[str, Any] | None = None,
) -> ModelConfig:
    """``config`` with the archives of ``mets.<met>`` replaced by their crop for a batch.

    The task a batch's simulations depend on: its result is the configuration they
    run with, unchanged but for where the met of ``met`` lives (``mets`` are not
    part of the settings fingerprint), so a simulation task that takes it reads
    the crop under the same met name.

    Parameters
    ----------
    config, met, points, reach_km, destination, storage_options
        As :func:`crop_batch`.

    Returns
    -------
    ModelConfig
        A copy whose ``mets`` entries of the archives ``met`` reads are the crops.
    """
    crops = crop_batch(points, config, met, reach_km, destination, storage_options)
    return config.model_copy(update={"mets": {**config.mets, **dict(crops)}})


def _crop_key(chosen, bbox: tuple[float, ...]) -> str:
    digest = hashlib.sha256(json.dumps([round(v, 6) for v in bbox]).encode())
    for name, met, selection in chosen:
        digest.update(f"\0{name}\0{met.directory}".encode())
        for path in selection.files:
            version = path.stat() if is_remote(met.directory) else _local_version(path)
            digest.update(f"\0{path}\0{version}".encode())
    return f"crop-{digest.hexdigest()[:24]}"


def _local_version(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def _cut(name, met: MetConfig, selection, bbox, fs, target: str) -> None:
    """Cut one archive's selected files into ``target`` (CROP.json last)."""
    relative = {}
    for info in (info for series in selection.series for info in series.infos):
        path = info.path
        relative[path] = (
            path.relative
            if is_remote(met.directory)
            else Path(path).absolute().relative_to(Path(met.directory).absolute()).as_posix()
        )
    if is_remote(met.directory):
        selection = fetched(selection, archive_index(met).manifest)
        local = [info.path for series in selection.series for info in series.infos]
        relative = dict(zip(local, relative.values(), strict=True))
    scratch = cache_directory()
    scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
    grids = []
    with tempfile.TemporaryDirectory(dir=scratch, prefix="crop-") as folder:
        for series in selection.series:
            try:
                grids.append((series.grid, series.grid.window_from_bbox(bbox)))
                for info in series.infos:
                    out = Path(folder, relative[info.path])
                    out.parent.mkdir(parents=True, exist_ok=True)
                    arlmet.extract_subset(info.path, out, bbox=bbox)
            except ValueError as exc:  # the box misses the grid, or leaves too few cells
                raise MeteorologyError(f"met {name!r} cannot be cropped to {bbox}: {exc}") from None
        write_manifest(folder)
        crop = Crop(met.directory, tuple(bbox), tuple(grids))
        Path(folder, CROP_NAME).write_text(crop.to_json())
        try:
            for path in sorted(Path(folder).rglob("*")):
                if path.is_file() and path.name != CROP_NAME:
                    remote = f"{target}/{path.relative_to(folder).as_posix()}"
                    fs.makedirs(posixpath.dirname(remote), exist_ok=True)  # local folders
                    fs.put_file(str(path), remote)
            fs.put_file(str(Path(folder, CROP_NAME)), f"{target}/{CROP_NAME}")
        except Exception as exc:  # fsspec filesystems raise their own types
            raise MeteorologyError(
                f"met {name!r}: the crop cannot be written to {target}: {exc}"
            ) from None


def read_crop(met: MetConfig) -> Crop | None:
    """What an archive was cropped from (its ``CROP.json``), or None when it is no crop.

    Cached per process and ``CROP.json`` version.
    """
    if is_remote(met.directory):
        marker = archive_index(met).crop
        if marker is None:
            return None
        size, version = marker.stat()
        return _remote_crop(marker.url, marker.options, size, version)
    path = Path(met.directory, CROP_NAME)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return _local_crop(path, stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _local_crop(path: Path, size: int, mtime_ns: int) -> Crop:
    return Crop.from_json(path.read_text())


@lru_cache(maxsize=64)
def _remote_crop(url: str, options: str, size: int, version: str) -> Crop:
    fs = fsspec.core.url_to_fs(url, **json.loads(options))[0]
    return Crop.from_json(fs.cat_file(url).decode())


def check_inside_crops(
    particles: pd.DataFrame, archives: Sequence[tuple[str, MetConfig]], sim_id: str
) -> None:
    """Fail a run on cropped met whose particles reached a cut edge of the crop.

    Every particle position must lie inside a crop grid, :data:`EDGE` cells from
    its cut edges (:meth:`Crop.safe`); nothing is checked when no archive is a crop.

    Raises
    ------
    MeteorologyError
        Naming the simulation, the first position at fault and the crop.
    """
    crops = [(met.directory, crop) for _, met in archives if (crop := read_crop(met))]
    if not crops or particles.empty:
        return
    lon, lat = particles["long"].to_numpy(float), particles["lati"].to_numpy(float)
    safe = np.zeros(len(particles), dtype=bool)
    for _, crop in crops:
        safe |= crop.safe(lon, lat)
    if safe.all():
        return
    first = int(np.flatnonzero(~safe)[0])
    row = particles.iloc[first]
    raise MeteorologyError(
        f"{sim_id}: particle {int(row['indx'])} reached the edge of the met crop "
        f"{crops[0][0]} at ({row['long']:.3f}, {row['lati']:.3f}), {int(row['time'])} min "
        f"from release; the crop ({', '.join(f'{v:.2f}' for v in crops[0][1].bbox)}) does "
        "not hold its path: crop with a longer reach"
    )
