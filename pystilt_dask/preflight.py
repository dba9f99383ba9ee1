"""Find what would stop a run before any run: ``stilt-dask check`` and ``run``'s pre-flight.

:func:`check` looks at everything a run needs and reports every problem it
finds, one :class:`Problem` each, instead of stopping at the first: the receptor
table, each receptor's met (directory, files, time coverage of its run window and
its release points inside the met domain), the integrity of the met time steps
the runs read (ARL checksums, which means reading those records whole),
``hycs_std`` and whether the output store takes writes. :func:`check_run` is its
cheap part, the met coverage and domain of the simulations a run is about to
send, from ARL headers only (read once per file and process); it runs before a
cluster starts.

Receptors are grouped by the met files their run windows need, so headers are
read once per file, and coverage and domain are decided for whole groups with
array operations. The rules are those the worker applies before HYSPLIT
(:func:`pystilt_dask.meteorology.coverage.check_coverage`): a receptor refused
here would fail there.
"""

from __future__ import annotations

import posixpath
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import fsspec
import numpy as np
import pandas as pd

from .config import MetConfig, ModelConfig
from .errors import HysplitNotFoundError, MeteorologyError, ReceptorError, StoreError
from .hysplit.executable import resolve_hysplit
from .meteorology.coverage import EDGE, MetFileInfo, read_info, verify_checksums
from .meteorology.files import find_met_files, requested_patterns
from .meteorology.manifest import verify_met_files
from .receptors import Receptor
from .store.paths import Location
from .store.registry import Registry

if TYPE_CHECKING:
    from .model import Model

#: Problems listed in the error of a run's pre-flight; ``stilt-dask check`` lists all.
SHOWN = 20
#: Per (met name, met file): the time steps the checked runs read from it.
Needed = dict[tuple[str, Path], set[pd.Timestamp]]


@dataclass(frozen=True)
class Problem:
    """One thing that would stop a run.

    Attributes
    ----------
    subject : str
        What is at fault: a simulation id, a file, a met name or a config field.
    message : str
        The whole line, naming the subject.
    """

    subject: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass
class Report:
    """What :func:`check` found.

    Attributes
    ----------
    problems : list of Problem
        Every problem found, receptors first in table order.
    receptors : int
        Receptors (simulations) whose met was checked.
    met_files : int
        Met files whose headers were read and whose needed time steps were checked.
    hysplit : str
        The ``hycs_std`` that would run, or ``""`` when none resolves.
    """

    problems: list[Problem] = field(default_factory=list)
    receptors: int = 0
    met_files: int = 0
    hysplit: str = ""

    @property
    def ok(self) -> bool:
        """Whether nothing would stop a run."""
        return not self.problems

    def summary(self) -> str:
        """One line: no problems and what was checked, or how many problems."""
        if self.problems:
            return f"{_count(len(self.problems), 'problem')} would stop a run"
        return (
            f"no problems: {_count(self.receptors, 'receptor')} inside their met in space and "
            f"time, {_count(self.met_files, 'met file')} intact, hycs_std {self.hysplit}, "
            "output writable"
        )


def check(model: Model) -> Report:
    """Everything that would stop a run of ``model``, found without running anything.

    Checks the receptor table (or, for a project opened without one, every
    registered simulation), each receptor's met as :func:`check_run` does, the met
    files those runs read against their directory's digest manifest (when it has
    one: every byte is hashed) and the ARL checksums of the time steps they read,
    that ``hycs_std`` resolves,
    and that the output store takes writes (locally a probe file is created and
    removed in it or in its nearest existing parent folder; an fsspec URL is
    listed). Nothing is registered and no cluster is started.

    Parameters
    ----------
    model : Model
        The project.

    Returns
    -------
    Report
        Every problem found, one line each, and what was checked.
    """
    report = Report()
    config = model.config
    output = output_problem(model.location)
    known: Registry | None = None
    if output is None:  # a registry under an output that is a file is not read
        try:
            known = model.registry()
        except StoreError as exc:
            report.problems.append(Problem("registry", str(exc)))
    points: pd.DataFrame | None = None
    if model.has_receptors:
        try:
            receptors = model.receptors()
        except ReceptorError as exc:
            report.problems.append(Problem(str(config.receptors or "receptors"), str(exc)))
        else:
            points = _receptor_points(receptors, known, next(iter(config.mets)))
    elif known is not None:
        points = _registry_points(known.table)
    if points is not None:
        report.receptors = points["sim_id"].nunique()
        needed: Needed = {}
        report.problems += _met_problems(config, points, needed)
        report.met_files = len(needed)
        seen: set[str] = set()  # a bad manifest would be named once per file
        for (met_name, path), times in needed.items():
            try:
                verify_met_files([path], config.mets[met_name].directory, met_name)
                verify_checksums(path, sorted(times))
            except MeteorologyError as exc:
                if str(exc) not in seen:
                    seen.add(str(exc))
                    report.problems.append(Problem(str(path), str(exc)))
    try:
        report.hysplit = str(resolve_hysplit(config.hysplit.executable).executable)
    except HysplitNotFoundError as exc:
        report.problems.append(Problem("hysplit.executable", str(exc)))
    if output is not None:
        report.problems.append(output)
    return report


def check_run(model: Model, known: Registry, sim_ids: Sequence[str]) -> list[Problem]:
    """The cheap pre-flight of a run: met coverage and domain of ``sim_ids``, from headers.

    For each simulation: its met is configured, files match its run window, their
    headers hold every time step of the window, and each release point lies inside
    every file's grid, away from its edge. Headers are read once per file and
    process; no data record is read. A met directory this process does not see is
    left to the workers, which may mount it where the client cannot (Kubernetes);
    :func:`check` reports it.

    Parameters
    ----------
    model : Model
        The project.
    known : Registry
        The registry the run was planned from.
    sim_ids : sequence of str
        The simulations the run will send.

    Returns
    -------
    list of Problem
        One per simulation (or met) that would fail; empty when all would run.
    """
    if not len(sim_ids):
        return []
    points = _registry_points(known.table.loc[list(sim_ids)])
    return _met_problems(model.config, points, unseen_met_ok=True)


def require(problems: Sequence[Problem]) -> None:
    """Raise one error listing ``problems``, one per line (the first :data:`SHOWN`).

    Raises
    ------
    MeteorologyError
        When there are problems.
    """
    if not problems:
        return
    lines = "\n".join(str(p) for p in problems[:SHOWN])
    more = f"\n… and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
    raise MeteorologyError(
        f"not started: {_count(len(problems), 'problem')} found before any cluster "
        f"(`stilt-dask check` lists them all):\n{lines}{more}"
    )


def output_problem(location: Location) -> Problem | None:
    """Whether the output store takes writes; ``None`` when it does.

    A local store gets a probe file created and removed in it, or in its nearest
    existing parent folder when it does not exist yet (nothing else is created).
    A remote store is listed, or its nearest existing parent up to the bucket, which
    needs the endpoint, the credentials and the bucket to be right; whether the
    credentials allow writing shows only when writing.
    """
    if not location.is_local:
        return _remote_problem(location)
    root = location.root
    folder = Path(root)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return Problem("output", f"output {root}: {folder} is a file, not a folder")
    probe = folder / f".stilt-check-{uuid.uuid4().hex}.partial"
    try:
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as exc:
        return Problem("output", f"output {root} is not writable: {exc.strerror} in {folder}")
    return None


def _remote_problem(location: Location) -> Problem | None:
    root = location.root
    try:
        fs, path = fsspec.core.url_to_fs(root, **(location.storage_options or {}))
        while True:
            try:
                fs.ls(path, detail=False)
                return None
            except FileNotFoundError:
                parent = posixpath.dirname(path.rstrip("/"))
                if parent == path.rstrip("/") or not parent:
                    return Problem("output", f"output {root}: {path} does not exist")
                path = parent
    except Exception as exc:  # fsspec filesystems raise their own types
        return Problem("output", f"output {root} cannot be listed: {type(exc).__name__}: {exc}")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _receptor_points(
    receptors: Iterable[Receptor], known: Registry | None, default_met: str
) -> pd.DataFrame:
    """One row per release point: sim_id, time, met (the registered one, else the default)."""
    rows = [(r.sim_id, r.time, lon, lat) for r in receptors for lat, lon, _ in r.release_points]
    points = pd.DataFrame(rows, columns=["sim_id", "time", "lon", "lat"])
    mets = known.table["met"] if known is not None else pd.Series(dtype=object)
    points["met"] = points["sim_id"].map(mets).fillna(default_met)
    return points


def _registry_points(table: pd.DataFrame) -> pd.DataFrame:
    """One row per release point of registry entries, without building receptors."""
    multi = (table["kind"] == "multipoint").to_numpy()
    single = table.loc[~multi, ["time", "met", "longitude", "latitude"]]
    single = single.rename(columns={"longitude": "lon", "latitude": "lat"})
    spread = table.loc[multi, ["time", "met", "longitudes", "latitudes"]]
    spread = spread.explode(["longitudes", "latitudes"])
    spread = spread.rename(columns={"longitudes": "lon", "latitudes": "lat"})
    points = pd.concat([single, spread]).rename_axis("sim_id").reset_index()
    points["lon"] = points["lon"].astype(float)
    points["lat"] = points["lat"].astype(float)
    return points


def _met_problems(
    config: ModelConfig,
    points: pd.DataFrame,
    needed: Needed | None = None,
    *,
    unseen_met_ok: bool = False,
) -> list[Problem]:
    """Coverage and domain problems of release points (columns sim_id, time, met, lon, lat).

    ``needed`` collects, per met name and file, the time steps the covered runs read;
    ``unseen_met_ok`` passes a met whose directory does not exist here.
    """
    problems: list[Problem] = []
    for met_name, group in points.groupby("met", sort=False):
        met = config.mets.get(str(met_name))
        if met is None:
            known = ", ".join(config.mets)
            problems.append(
                Problem(
                    f"mets.{met_name}",
                    f"met {met_name!r}: simulations registered with it, but config.mets "
                    f"has only {known}",
                )
            )
            continue
        if unseen_met_ok and not Path(met.directory).is_dir():
            continue
        problems += _one_met(config.hysplit.n_hours, str(met_name), met, group, needed)
    if not problems:
        return problems
    # In table order; problems of a met or a file (no row) first.
    ranks = pd.Index(points["sim_id"]).drop_duplicates().get_indexer([p.subject for p in problems])
    return [problems[i] for i in np.argsort(ranks, kind="stable")]


def _one_met(
    n_hours: int,
    name: str,
    met: MetConfig,
    points: pd.DataFrame,
    needed: Needed | None,
) -> list[Problem]:
    directory = Path(met.directory)
    if not directory.is_dir():
        return [Problem(f"mets.{name}", f"met {name!r}: directory {directory} does not exist")]
    problems: list[Problem] = []
    times = pd.DatetimeIndex(points["time"])
    # The files a run needs follow from where its window starts and ends relative to
    # the file periods (and, backward, the hour of its end): one look per such key.
    ends = times + pd.Timedelta(hours=n_hours)
    last = times.where(times >= ends, ends)
    key = pd.DataFrame(
        {
            "start": times.where(times <= ends, ends).floor(met.period),
            "floor": last.floor(met.period),
            "ceil": last.ceil(met.period),
            "hour": last.hour,
        }
    )
    codes = key.groupby(list(key.columns), sort=False).ngroup().to_numpy()
    firsts = pd.Series(np.arange(len(codes))).groupby(codes).first()
    # Keys that still name the same files (e.g. hours inside one period) are merged.
    by_patterns: dict[tuple[str, ...], int] = {}
    group_of = np.empty(len(firsts), dtype=np.int64)
    for code, j in firsts.items():
        patterns = tuple(requested_patterns(times[j], n_hours, met))
        group_of[code] = by_patterns.setdefault(patterns, len(by_patterns))
    bad_files: set[Path] = set()
    for rows in pd.Series(group_of[codes]).groupby(group_of[codes]).indices.values():
        group = points.iloc[rows]
        first_time = times[rows[0]]
        try:
            files = find_met_files(first_time, n_hours, met, name)
        except MeteorologyError as exc:
            problems += _per_simulation(group["sim_id"], str(exc))
            continue
        infos: list[MetFileInfo] = []
        for path in files:
            try:
                infos.append(read_info(path))
            except MeteorologyError as exc:
                if path not in bad_files:
                    bad_files.add(path)
                    problems.append(Problem(str(path), str(exc)))
        if len(infos) < len(files):
            continue  # the file's problem is reported; these runs cannot be judged without it
        problems += _coverage(n_hours, name, infos, group, needed)
        problems += _domain(name, infos, group)
    return problems


def _per_simulation(sim_ids: pd.Series, message: str) -> list[Problem]:
    return [Problem(sim_id, f"{sim_id}: {message}") for sim_id in dict.fromkeys(sim_ids)]


def _coverage(
    n_hours: int,
    name: str,
    infos: Sequence[MetFileInfo],
    points: pd.DataFrame,
    needed: Needed | None,
) -> list[Problem]:
    """Time coverage of every run in a group sharing files, as ``check_coverage`` decides it."""
    available = pd.DatetimeIndex(sorted({t for info in infos for t in info.times}))
    step = available.to_series().diff().min() if len(available) > 1 else pd.Timedelta(hours=1)
    times = pd.DatetimeIndex(points["time"])
    ends = times + pd.Timedelta(hours=n_hours)
    first, last = times.where(times <= ends, ends), times.where(times >= ends, ends)
    low, high = first.floor(step), last.ceil(step)
    # Covered: both ends present, and as many steps between them as the window needs
    # (time steps are at least `step` apart, so that count leaves no gaps).
    i_low = available.searchsorted(low)
    i_high = available.searchsorted(high)
    n = len(available)
    present = (i_low < n) & (i_high < n)
    present &= available[np.minimum(i_low, n - 1)] == low
    present &= available[np.minimum(i_high, n - 1)] == high
    steps = np.asarray((high - low) // step)
    covered = present & (i_high - i_low == steps)
    problems: list[Problem] = []
    sim_ids = points["sim_id"].to_numpy()
    reported: set[str] = set()
    for j in np.flatnonzero(~covered):
        if sim_ids[j] in reported:
            continue
        reported.add(sim_ids[j])
        wanted = pd.date_range(low[j], high[j], freq=step)
        missing = wanted.difference(available)
        shown = ", ".join(t.strftime("%Y-%m-%d %H:%M") for t in missing[:6])
        more = f" and {len(missing) - 6} more" if len(missing) > 6 else ""
        problems.append(
            Problem(
                sim_ids[j],
                f"{sim_ids[j]}: met {name!r} does not cover the run "
                f"{first[j]:%Y-%m-%d %H:%M}–{last[j]:%Y-%m-%d %H:%M}: no data for {shown}{more}",
            )
        )
    if needed is not None:
        spans = set(zip(i_low[covered], i_high[covered], strict=True))
        steps_read = {t for lo, hi in spans for t in available[lo : hi + 1]}
        for info in infos:
            needed.setdefault((name, info.path), set()).update(steps_read.intersection(info.times))
    return problems


def _domain(name: str, infos: Sequence[MetFileInfo], points: pd.DataFrame) -> list[Problem]:
    """Release points outside any file's grid or within EDGE cells of its edge."""
    lon, lat = points["lon"].to_numpy(float), points["lat"].to_numpy(float)
    outside_of = np.full(len(points), -1)
    for k, info in enumerate(infos):
        x, y = info.grid.fractional_indices(lon, lat)
        nx, ny = info.grid.nx, info.grid.ny
        inside = (EDGE <= x) & (x <= nx - 1 - EDGE) & (EDGE <= y) & (y <= ny - 1 - EDGE)
        outside_of[(outside_of < 0) & ~inside] = k
    problems: list[Problem] = []
    sim_ids = points["sim_id"].to_numpy()
    reported: set[str] = set()
    for j in np.flatnonzero(outside_of >= 0):
        if sim_ids[j] in reported:
            continue
        reported.add(sim_ids[j])
        info = infos[outside_of[j]]
        problems.append(
            Problem(
                sim_ids[j],
                f"{sim_ids[j]}: receptor ({float(lon[j])}, {float(lat[j])}) is outside the domain "
                f"of met {name!r}, or within {EDGE} cells of its edge "
                f"({info.path.name}: {info.grid.nx}×{info.grid.ny} grid)",
            )
        )
    return problems
