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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import arlmet
import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .config import MetConfig, ModelConfig
from .errors import HysplitNotFoundError, MeteorologyError, ReceptorError, StoreError
from .hysplit.executable import resolve_hysplit
from .meteorology.coverage import inside, outside_message, verify_checksums
from .meteorology.files import (
    ArchiveIndex,
    archive_index,
    by_grid,
    grid_step,
    missing_message,
    select_files,
)
from .meteorology.headers import MetFileInfo, UnreadableMetFile, read_info
from .meteorology.manifest import verify_met_files
from .meteorology.remote import RemoteFile, fetch_infos, is_remote
from .receptors import Receptor
from .store.paths import Location
from .store.registry import Registry

if TYPE_CHECKING:
    from .model import Model

#: Problems listed in the error of a run's pre-flight; ``stilt-dask check`` lists all.
SHOWN = 20
#: Per (met name, met file): the time steps the checked runs read from it.
Needed = dict[tuple[str, Path | RemoteFile], set[pd.Timestamp]]


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
                met = config.mets[met_name]
                if isinstance(path, RemoteFile):  # fetched, and checked against its manifest
                    info = read_info(path)
                    path = fetch_infos([info], archive_index(met).manifest, met_name)[path].path
                else:
                    verify_met_files([path], met.directory, met_name)
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
    process (a remote archive's with range requests); no data record is read. A met
    directory this process does not see (a folder that does not exist here, a URL
    it cannot list) is left to the workers, which may mount it or hold credentials
    where the client does not (Kubernetes); :func:`check` reports it.

    Parameters
    ----------
    model : Model
        The project.
    known : Registry
        The registry the run was planned from.
    sim_ids : sequence of str
        The simulations the run will send: registered in ``known``, each once.

    Returns
    -------
    list of Problem
        One per simulation (or met) that would fail; empty when all would run.
    """
    if not len(sim_ids):
        return []
    # Positions into the Arrow entries: the pandas view of a million entries, and a
    # .loc over it, cost seconds.
    entries = known.entries.select(_POINT_COLUMNS)
    if len(sim_ids) != len(known):  # else every registered simulation (ids given once each)
        ids = pa.array(list(sim_ids), pa.string())
        entries = entries.take(pc.index_in(ids, value_set=known.entries["sim_id"].combine_chunks()))
    table = entries.to_pandas(types_mapper=_arrow_lists).set_index("sim_id")
    return _met_problems(model.config, _registry_points(table), unseen_met_ok=True)


_POINT_COLUMNS = [
    "sim_id",
    "kind",
    "time",
    "met",
    "longitude",
    "latitude",
    "longitudes",
    "latitudes",
]


def _run_lengths(config: ModelConfig) -> list[int]:
    """Every ``hysplit.n_hours`` the project runs: its own and its variants' (each once)."""
    lengths = [config.hysplit.n_hours]
    lengths += [config.variant(name).hysplit.n_hours for name in config.variants]
    return list(dict.fromkeys(lengths))


def _arrow_lists(kind: pa.DataType) -> pd.ArrowDtype | None:
    return pd.ArrowDtype(kind) if pa.types.is_list(kind) else None


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
    registered = points["sim_id"].map(mets)
    points["met"] = np.where(registered.notna(), registered.astype(object), default_met)
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

    ``needed`` collects, per archive name and file, the time steps the covered runs
    read; ``unseen_met_ok`` passes a met whose directory does not exist here.
    """
    problems: list[Problem] = []
    for met_name, group in points.groupby("met", sort=False):
        if str(met_name) not in config.mets:
            known = ", ".join(config.mets)
            problems.append(
                Problem(
                    f"mets.{met_name}",
                    f"met {met_name!r}: simulations registered with it, but config.mets "
                    f"has only {known}",
                )
            )
            continue
        archives = config.archives(str(met_name))
        if unseen_met_ok and not all(_visible(met) for _, met in archives):
            continue
        # A variant running longer needs more met: each run length is checked.
        found = (p for n in _run_lengths(config) for p in _one_met(n, archives, group, needed))
        problems += dict.fromkeys(found)
    if not problems:
        return problems
    # In table order; problems of a met or a file (no row) first.
    ranks = pd.Index(points["sim_id"]).drop_duplicates().get_indexer([p.subject for p in problems])
    return [problems[i] for i in np.argsort(ranks, kind="stable")]


def _visible(met: MetConfig) -> bool:
    """Whether this process sees an archive: a local folder that exists, a URL it can list."""
    if not is_remote(met.directory):
        return Path(met.directory).is_dir()
    try:
        archive_index(met)
    except MeteorologyError:
        return False
    return True


def _one_met(
    n_hours: int,
    archives: Sequence[tuple[str, MetConfig]],
    points: pd.DataFrame,
    needed: Needed | None,
) -> list[Problem]:
    """Problems of the points of one met (an archive or a nest), decided per archive.

    Every archive must hold every step of each run window; each point must lie
    inside one grid of one of them. Runs whose windows fall between the same file
    name times share candidate files, whose headers decide for all of them at once
    with array operations; a run found uncovered is looked at alone, to name
    exactly the steps it lacks.
    """
    absent = [
        Problem(f"mets.{name}", f"met {name!r}: directory {met.directory} does not exist")
        for name, met in archives
        if not is_remote(met.directory) and not Path(met.directory).is_dir()
    ]
    if absent:
        return absent
    times = pd.DatetimeIndex(points["time"])
    ends = times + pd.Timedelta(hours=n_hours)
    first = times.where(times <= ends, ends)
    last = times.where(times >= ends, ends)
    lon, lat = points["lon"].to_numpy(float), points["lat"].to_numpy(float)
    sim_ids = points["sim_id"].to_numpy()
    judged = np.ones(len(points), dtype=bool)  # False where a file could not be read
    inside_any = np.zeros(len(points), dtype=bool)
    # For messages: per archive, the grids (and a file of each) of each candidate group.
    listings: list[list[tuple[str, arlmet.Grid, str]]] = []
    listing_of = np.full((len(archives), len(points)), -1)
    problems: list[Problem] = []
    reported: set[str] = set()
    for k, (name, met) in enumerate(archives):
        try:
            index = archive_index(met)
            if not index.paths:
                index = archive_index(met, relist=True)
        except MeteorologyError as exc:  # a remote archive that cannot be listed
            return [Problem(f"mets.{name}", f"met {name!r}: {exc}")]
        if not index.paths:
            message = f"no file under {met.directory} matches file_format {met.file_format!r}"
            return [Problem(f"mets.{name}", f"met {name!r}: {message}")]
        for rows, infos in _candidate_groups(index, first, last, problems):
            if infos is None:
                judged[rows] = False
                continue
            covered = np.ones(len(rows), dtype=bool)
            listing_of[k, rows] = len(listings)
            listings.append([])
            for grid, members in by_grid(infos).items():
                listings[-1].append((name, grid, members[0].path.name))
                available = pd.DatetimeIndex(
                    sorted({t for info in members for t in info.times})
                ).as_unit("ns")
                step = grid_step(members, index.spacing)
                low, high = _span(available, step, first[rows], last[rows])
                here = low.isin(available) & high.isin(available)
                i_low, i_high = available.searchsorted(low), available.searchsorted(high)
                here &= i_high - i_low == np.asarray((high - low) // step)
                covered &= here
                inside_any[rows] |= inside(grid, lon[rows], lat[rows])
                if needed is not None:
                    spans = set(zip(i_low[here], i_high[here], strict=True))
                    read = {t for lo, hi in spans for t in available[lo : hi + 1]}
                    for info in members:
                        if steps := read.intersection(info.times):
                            needed.setdefault((name, info.path), set()).update(steps)
            for j in rows[~covered]:
                if sim_ids[j] in reported:
                    continue
                message = _missing(name, met, (first[j], last[j]), needed)
                if message is not None:
                    reported.add(sim_ids[j])
                    problems.append(Problem(sim_ids[j], f"{sim_ids[j]}: {message}"))
    for j in np.flatnonzero(judged & ~inside_any):
        if sim_ids[j] not in reported:
            reported.add(sim_ids[j])
            listed = [grid for group in listing_of[:, j] for grid in listings[group]]
            message = outside_message(lon[j], lat[j], listed)
            problems.append(Problem(sim_ids[j], f"{sim_ids[j]}: {message}"))
    return problems


def _candidate_groups(
    index: ArchiveIndex,
    first: pd.DatetimeIndex,
    last: pd.DatetimeIndex,
    problems: list[Problem],
) -> Iterator[tuple[np.ndarray, list[MetFileInfo] | None]]:
    """Rows of windows sharing candidate files, with those files' headers (None: unreadable).

    An unreadable file is reported once, as its own problem.
    """
    name_times = index.name_times
    if len(name_times):
        n = len(name_times)
        lo = np.maximum(name_times.searchsorted(first, "right") - 1, 0)
        hi = np.minimum(name_times.searchsorted(last, "right"), n - 1)
    else:  # an untimed file_format: every file is a candidate of every run
        lo = hi = np.zeros(len(first), dtype=np.int64)
    reported = {p.subject for p in problems}
    for (a, b), rows in pd.DataFrame({"lo": lo, "hi": hi}).groupby(["lo", "hi"]).indices.items():
        try:
            infos = index.infos(int(a), int(b))
        except UnreadableMetFile as exc:
            if str(exc.path) not in reported:
                reported.add(str(exc.path))
                problems.append(Problem(str(exc.path), str(exc)))
            infos = None
        yield rows, infos


def _span(
    available: pd.DatetimeIndex,
    step: pd.Timedelta,
    first: pd.DatetimeIndex,
    last: pd.DatetimeIndex,
) -> tuple[pd.DatetimeIndex, pd.DatetimeIndex]:
    """The steps on the grid of ``available``'s times at or before ``first``, at or after ``last``.

    As :func:`pystilt_dask.meteorology.files.series_of` decides for one window.
    """
    step = step.value  # nanoseconds, as Timestamp.value
    anchor = available[0].value
    low = anchor + np.floor_divide(first.as_unit("ns").asi8 - anchor, step) * step
    high = anchor - np.floor_divide(anchor - last.as_unit("ns").asi8, step) * step
    return pd.DatetimeIndex(low, dtype="datetime64[ns]"), pd.DatetimeIndex(
        high, dtype="datetime64[ns]"
    )


def _missing(
    name: str, met: MetConfig, window: tuple[pd.Timestamp, pd.Timestamp], needed: Needed | None
) -> str | None:
    """Why one run's window is not covered, from its own selection; None when it is.

    The selection looks further out than the shared candidates (file names need not
    be the files' first steps) and lists the directory afresh before naming a step.
    """
    try:
        selection = select_files(window, met, name)
    except MeteorologyError as exc:
        return str(exc)
    if selection.missing:
        return missing_message(name, window, selection.missing)
    if needed is not None:
        for series in selection.series:
            for info in series.infos:
                steps = set(series.needed).intersection(info.times)
                needed.setdefault((name, info.path), set()).update(steps)
    return None
