"""The user-facing project: register receptors, see what is done, run, load results.

A :class:`Model` is a view of a project store (see :mod:`pystilt_dask.store.layout`)
plus its configuration. It holds no state of its own: every answer is read from
the store when asked.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from . import ensemble, preflight
from .config import ModelConfig, load_yaml
from .errors import ConfigError, StoreError
from .receptors import Receptor, ReceptorFrame, read_receptor_frame, receptor_frame
from .receptors.table import table_bytes
from .store import footprints, layout, packing, particles, records, registry
from .store.completion import CompletionRule, State
from .store.paths import Location
from .store.registry import Registry
from .store.status import Status, status
from .store.verify import VerifyReport, verify

if TYPE_CHECKING:
    from .execution.run import Run
    from .store.compact import CompactReport

ReceptorsLike = Sequence[Receptor] | pd.DataFrame | str | Path


class Model:
    """A STILT project: its configuration, receptors and output store.

    Parameters
    ----------
    project : str or pathlib.Path
        The project store: a local directory or an fsspec URL (``s3://…``, ``memory://…``).
    receptors : sequence of receptors, DataFrame, or path, optional
        Receptors to register; default: the table ``config.receptors`` names.
    config : ModelConfig or path, optional
        The configuration; default: the project's stored ``config.yaml``.
    storage_options : dict, optional
        fsspec options for a remote ``project``; default: the configuration's.

    Examples
    --------
    >>> model = Model.from_yaml("config.yaml")  # doctest: +SKIP
    >>> model.register_pending()  # doctest: +SKIP
    >>> model.status().counts()  # doctest: +SKIP
    >>> foot = model.footprints["default"].load()  # doctest: +SKIP
    """

    def __init__(
        self,
        project: str | Path,
        receptors: ReceptorsLike | None = None,
        config: ModelConfig | str | Path | None = None,
        *,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        if config is not None and not isinstance(config, ModelConfig):
            config = ModelConfig.from_yaml(config)
        if storage_options is None and config is not None:
            storage_options = config.storage_options or None
        self.location = Location(str(project), storage_options)
        if self.location.is_local and Path(self.location.root).is_file():
            raise StoreError(f"{self.location.root} is a file: a project store is a folder")
        if config is None:
            config = _stored_config(self.location)
            if config is None:
                raise StoreError(
                    f"{self.location.root} has no {layout.CONFIG}: not a project "
                    "(give its config.yaml, or pass config=)"
                )
        for settings in (config, *(config.variant(v) for v in config.variants)):
            for name in settings.footprints:
                footprints.check_name(name)
        self.config = config
        self._receptors = receptors

    @classmethod
    def from_yaml(cls, path: str | Path, **kwargs: Any) -> Model:
        """Open the project a config file describes (its ``output`` is the store)."""
        config = ModelConfig.from_yaml(path)
        return cls(config.output, config=config, **kwargs)

    def __repr__(self) -> str:
        names = ", ".join(self.config.footprints) or "none"
        return f"<Model {self.location.root} footprints: {names}>"

    @property
    def completion(self) -> CompletionRule:
        """The keys that make this project's simulations complete."""
        return CompletionRule.from_config(self.config)

    def registry(self) -> Registry:
        """The registered simulations and their rows, as committed now."""
        return registry.read(self.location)

    @property
    def has_receptors(self) -> bool:
        """Whether receptors were given or the configuration names a receptor table."""
        return self._receptors is not None or bool(self.config.receptors)

    def receptors(self) -> list[Receptor]:
        """The receptors given to this model (or read from ``config.receptors``)."""
        return self.receptor_frame().receptors()

    def receptor_frame(self) -> ReceptorFrame:
        """:meth:`receptors` as columns, without building receptor objects."""
        given = self._receptors
        if given is None:
            if not self.config.receptors:
                raise ConfigError("no receptors given and config.receptors is not set")
            return read_receptor_frame(self.config.receptors)
        if isinstance(given, str | Path):
            return read_receptor_frame(given)
        if isinstance(given, pd.DataFrame):
            return receptor_frame(given)
        return ReceptorFrame.from_receptors(given)

    def register_pending(self, scene_id: str | None = None, met: str | None = None) -> list[str]:
        """Register receptors not registered yet; return the new simulation ids.

        Registration is a commit (see :mod:`pystilt_dask.store.registry`): any
        number of processes may register at once, and each receptor is registered
        exactly once. Existing results are never touched. Also stores
        ``config.yaml``, refusing settings that would change existing results.

        Parameters
        ----------
        scene_id : str, optional
            A label stored with the new simulations (e.g. a satellite scene).
        met : str, optional
            The meteorology name; default: the first in ``config.mets``.
        """
        return self.register(scene_id, met)[0]

    def register(
        self, scene_id: str | None = None, met: str | None = None
    ) -> tuple[list[str], Registry]:
        """:meth:`register_pending`, also returning the registry as of this registration.

        A run plans from that registry, so it reads the store's registry once.
        """
        met = met or next(iter(self.config.mets))
        if met not in self.config.mets:
            raise ConfigError(f"unknown met {met!r} (config has {', '.join(self.config.mets)})")
        path = self._table_path()
        digest = known = None
        if path:
            # The table's bytes are read once, digested and parsed: the commit records
            # the digest of exactly the bytes it registered, even if the file changes.
            data = table_bytes(path)
            with ThreadPoolExecutor(1) as pool:
                # hashlib releases the GIL: the digest is taken beside the registry read
                # and, when no commit recorded any table, beside the parse.
                digesting = pool.submit(registry.table_digest, data, path)
                known = registry.read(self.location)
                if known.tables and known.holds_table(digesting.result()):
                    self._store_config()  # a commit registered this very table
                    return [], self.sync(known)
                receptors = read_receptor_frame(path, data=data)
                digest = digesting.result()
        else:
            receptors = self.receptor_frame()
        _check_heights(receptors, self.config.hysplit.z_top)
        self._store_config()
        new, committed = registry.register(
            self.location, receptors, met, list(self.config.footprints), scene_id, digest, known
        )
        return new, self.sync(committed)

    def _table_path(self) -> str | None:
        """The receptor table the receptors come from, if they come from one."""
        given = self._receptors
        if given is None:
            return str(self.config.receptors) if self.config.receptors else None
        return str(given) if isinstance(given, str | Path) else None

    def sync(self, known: Registry | None = None) -> Registry:
        """Make every footprint group describe the registry for plain zarr readers.

        Repeated until no registrant committed meanwhile, so whoever syncs last
        writes the newest state. Returns the registry synced to.
        """
        current = registry.read(self.location, since=known)
        while True:
            ensemble.sync(self.location, self.config, current)
            newest = registry.versions(self.location)
            if not newest or newest[-1] == current.version:
                return current
            current = registry.read(self.location, since=current)

    def _store_config(self) -> None:
        text = self.config.to_yaml().encode()
        try:
            stored = self.location.read_bytes(layout.CONFIG)
        except FileNotFoundError:
            stored = None
        if stored == text:
            return  # nothing new to write: a read-only store stays usable
        if stored is not None:
            changes = _parse_config(stored, self.location).result_changes(self.config)
            if changes:
                raise ConfigError(
                    f"{self.location.root} was made with other settings that change results "
                    f"({'; '.join(changes)}); use a new project for them"
                )
        self.location.write_bytes(layout.CONFIG, text)

    def check(self) -> preflight.Report:
        """Everything that would stop a run, found without running anything.

        See :func:`pystilt_dask.preflight.check`: one problem per receptor, met file
        or setting at fault; nothing is registered and no cluster is started.
        """
        return preflight.check(self)

    def verify(self, repair: bool = False) -> VerifyReport:
        """Read back every result and name the simulations whose results are damaged.

        Parameters
        ----------
        repair : bool
            Remove damaged results (so the next ``run`` recomputes exactly those)
            and restore lost registry entries from the commits' copies, the
            checkpoints or the particle files; entries nothing holds are named as
            lost (``report.ok`` stays false, and ``stilt-dask verify --repair``
            exits 1).

        Every realization and variant is checked against the one registry, its
        simulations named ``<prefix><sim_id>`` (``realizations/2/<sim_id>``).
        See :func:`pystilt_dask.store.verify.verify`.
        """
        members = [
            (m.prefix, m.location(self.location), m.config)
            for m in ensemble.members(self.config)
            if m.prefix
        ]
        return verify(self.location, self.config, repair, members)

    def compact(self, break_lock: bool = False) -> CompactReport:
        """Pack completed simulations into a few objects per 1,024 rows (``stilt-dask compact``).

        Runs may go on meanwhile; see ``docs/store.md`` ("Packing") and
        :func:`pystilt_dask.store.compact.compact`.
        """
        from .store.compact import compact

        return compact(self.location, self.config, self.registry(), break_lock)

    def status(self, variant: str | None = None, realization: int = 0) -> Status:
        """Every simulation's state (and its footprints'), derived from the store.

        ``running`` comes from live claims, so it is right from any process,
        whichever coordinator runs the simulations.

        Parameters
        ----------
        variant : str, optional
            The variant (see ``variants`` in the configuration); default: the plain settings.
        realization : int
            The realization of an ensemble (``hysplit.realizations``); 0 is the plain run.
        """
        if variant is None and realization == 0:
            return status(self.location, self.registry(), self.completion)
        member = ensemble.find(self.config, variant, realization)
        return ensemble.member_status(self.location, member, self.registry())

    def ensemble_status(self) -> pd.DataFrame:
        """Simulations per state of every variant and realization, one row each.

        See :func:`pystilt_dask.ensemble.counts`.
        """
        return ensemble.counts(self.location, self.config, self.registry())

    def unregistered(self, known: Registry | None = None) -> int:
        """How many of this model's receptors are not registered yet (0 without receptors).

        ``known``: the registry to compare with; default: read now.
        """
        if not self.has_receptors:
            return 0
        known = self.registry() if known is None else known
        path = self._table_path()
        if path and known.holds_table(_table_digest(path)):
            return 0  # a commit registered this very table: every receptor of it is registered
        return len(known.pending(self.receptor_frame()))

    @property
    def simulations(self) -> Simulations:
        """Registered simulations: ids, and which are incomplete or failed."""
        return Simulations(self)

    @property
    def trajectories(self) -> Trajectories:
        """Stored particle tables."""
        return Trajectories(self)

    @property
    def footprints(self) -> Footprints:
        """Named footprints, each loadable as a lazy xarray object."""
        return Footprints(self)

    def background(
        self, field: xr.DataArray, footprint: str | None = None, *, batch_size: int = 64
    ) -> xr.DataArray:
        """Every registered simulation's background: ``field`` at its particles' endpoints.

        Lazy, one dask computation; see :func:`pystilt_dask.background.background`.

        Parameters
        ----------
        field : xarray.DataArray
            A mole-fraction field (CarbonTracker, CAMS, ...), lazy or in memory.
        footprint : str, optional
            The footprint whose transforms weight the particles; default: none.
        batch_size : int
            Simulations per task.
        """
        from .background import background  # dask.array: only for analysis

        return background(self, field, footprint, batch_size=batch_size)

    def modelled_columns(
        self,
        soundings: pd.DataFrame,
        flux: xr.DataArray,
        *,
        receptors: pd.DataFrame,
        background: xr.DataArray | None = None,
        footprint: str | None = None,
    ) -> xr.Dataset:
        """Every sounding's modelled column beside the observed one, lazily.

        See :func:`pystilt_dask.observations.modelled_columns`.
        """
        from .observations.modelled import modelled_columns

        return modelled_columns(
            self, soundings, flux, receptors=receptors, background=background, footprint=footprint
        )

    def modelled_points(
        self,
        observations: pd.DataFrame,
        flux: xr.DataArray,
        *,
        background: xr.DataArray | None = None,
        footprint: str | None = None,
    ) -> xr.Dataset:
        """Every point observation's modelled value beside the observed one, lazily.

        See :func:`pystilt_dask.observations.modelled_points`.
        """
        from .observations.modelled import modelled_points

        return modelled_points(self, observations, flux, background=background, footprint=footprint)

    def plan(self, profile: str | None = None, skip_existing: bool = True, **overrides: Any) -> Run:
        """Register pending receptors and plan a run: see :meth:`pystilt_dask.execution.Run.plan`.

        Parameters
        ----------
        profile : str, optional
            Name of an execution profile in the configuration.
        skip_existing : bool
            Run only incomplete simulations; ``False`` redoes every one.
        **overrides
            Execution settings to override (``backend``, ``n_workers``, ``retries``, …).
        """
        from .execution.run import Run

        return Run.plan(self, profile, skip_existing, **overrides)

    def run(
        self,
        client: Any = None,
        skip_existing: bool = True,
        wait: bool = True,
        profile: str | None = None,
        quiet: bool = False,
    ) -> dict[str, str] | list[Any]:
        """Register pending receptors and run every incomplete simulation on Dask.

        One task per simulation, keyed ``stilt-sim-<project token>-<id>``; at most a
        few per worker thread are in flight at once, so memory stays flat at any
        scale. Works with any cluster: workers still starting, scaled later,
        adaptive, with one or several threads.

        Parameters
        ----------
        client : distributed.Client or cluster, optional
            Where to run; default: the current default client, else a cluster
            built from the configuration (``execution`` or ``profiles[profile]``),
            closed when the run ends.
        skip_existing : bool
            Skip complete simulations; ``False`` redoes everything.
        wait : bool
            Wait and return the states; ``False`` submits every simulation and
            returns the futures at once (no waves: the scheduler holds them all).
            A cluster built for them then stays up, its client becoming the default
            client, until you close it (``distributed.default_client().close()``)
            or the process exits.
        profile : str, optional
            Name of an execution profile in the configuration.
        quiet : bool
            No dashboard link and no progress bar (shown in terminals and Jupyter).

        Returns
        -------
        dict or list
            The resulting state of each simulation run (``wait``), else its futures.

        Examples
        --------
        >>> from distributed import Client, LocalCluster  # doctest: +SKIP
        >>> model.run(client=Client(LocalCluster()))  # doctest: +SKIP
        {'202407150600_-100_40_10': 'complete', ...}
        """
        from .execution.run import start_client

        run = self.plan(profile, skip_existing)
        if not wait:
            return run.futures(client or start_client(run.execution)) if len(run) else []
        return run.execute(client, quiet=quiet)

    def to_delayed(self, skip_existing: bool = True) -> list[Any]:
        """One ``dask.delayed`` per incomplete simulation, for any Dask scheduler.

        Registers pending receptors first. ``dask.compute(*model.to_delayed())``
        runs them with the current scheduler (threads by default; ``processes`` or
        a distributed client alike) and returns their states; the objects also
        compose with a graph of your own. Keys are the same as :meth:`run`'s.
        """
        return self.plan(skip_existing=skip_existing).to_delayed()


class Simulations:
    """The registered simulations of a :class:`Model`."""

    def __init__(self, model: Model) -> None:
        self._model = model

    def ids(self) -> list[str]:
        """Every registered simulation id, in registration order."""
        return self._model.registry().sim_ids

    def incomplete(self) -> list[str]:
        """Ids of simulations that are not complete (pending, running or failed)."""
        return self._model.status().ids(State.PENDING, State.RUNNING, State.FAILED)

    def failed(self) -> list[str]:
        """Ids of simulations whose last attempt failed."""
        return self._model.status().ids(State.FAILED)

    def failure(
        self, sim_id: str, variant: str | None = None, realization: int = 0
    ) -> dict[str, Any] | None:
        """The failure record of a simulation's last failed attempt, or ``None``."""
        return records.read_failure(_where(self._model, variant, realization), sim_id)

    def log(self, sim_id: str, variant: str | None = None, realization: int = 0) -> str | None:
        """HYSPLIT's output of a simulation's last run, or ``None``."""
        return records.read_log(_where(self._model, variant, realization), sim_id)

    def __len__(self) -> int:
        return len(self.ids())


class Trajectories:
    """The stored particle tables of a :class:`Model`."""

    def __init__(self, model: Model) -> None:
        self._model = model

    def paths(
        self, error: bool = False, variant: str | None = None, realization: int = 0
    ) -> dict[str, str]:
        """Path or URL of every stored particle file, by simulation id.

        Parameters
        ----------
        error : bool
            List the transport-error particles instead.
        variant, realization :
            Whose particles (see :meth:`Model.status`); default: the plain run.
        """
        location = _where(self._model, variant, realization)
        folder = layout.ERROR_PARTICLES if error else layout.PARTICLES
        names = location.list_names(folder)
        key = layout.error_particles_key if error else layout.particles_key
        found: dict[str, str] = {}
        for block in layout.blocks_in(names):
            url = location.url(layout.block_key(folder, block))
            found |= dict.fromkeys(packing.block_ids(location, folder, block), url)
        unpacked = layout.strip_suffix(names, layout.PARQUET_SUFFIX)
        found |= {sim_id: location.url(key(sim_id)) for sim_id in unpacked}
        return dict(sorted(found.items()))

    def load(
        self, sim_id: str, error: bool = False, variant: str | None = None, realization: int = 0
    ) -> pd.DataFrame:
        """Read the particles of one simulation (``error=True``: its transport-error run).

        ``variant`` and ``realization`` say whose (see :meth:`Model.status`).
        """
        location = _where(self._model, variant, realization)
        key = layout.error_particles_key(sim_id) if error else layout.particles_key(sim_id)
        try:
            return particles.read(location, key)
        except FileNotFoundError:
            raise StoreError(f"simulation {sim_id!r} has no stored particles") from None


class Footprints(Mapping[str, "Footprint"]):
    """The named footprints of a :class:`Model`, by name."""

    def __init__(self, model: Model) -> None:
        self._model = model

    def _names(self) -> list[str]:
        # The plain settings' names, then those only variants have.
        config = self._model.config
        names = dict.fromkeys(config.footprints)
        for variant in config.variants:
            names.update(dict.fromkeys(config.variant(variant).footprints))
        return list(names)

    def __getitem__(self, name: str) -> Footprint:
        if name not in self._names():
            known = ", ".join(self._names()) or "none configured"
            raise KeyError(f"no footprint named {name!r} ({known})")
        return Footprint(self._model, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


class Footprint:
    """One named footprint of every simulation."""

    def __init__(self, model: Model, name: str) -> None:
        self._model = model
        self.name = name
        config = model.config
        owners = (config.variant(v) for v in config.variants)
        self.config = next(c.footprints[name] for c in (config, *owners) if name in c.footprints)

    def __repr__(self) -> str:
        return f"<Footprint {self.name!r} of {self._model.location.root}>"

    def load(self, variant: str | None = None, realization: int | None = None) -> xr.DataArray:
        """Open this footprint for every registered simulation, lazily.

        Parameters
        ----------
        variant : str, optional
            The variant whose footprint to open; default: the plain settings.
        realization : int, optional
            One realization of an ensemble; default: every one, along a
            ``realization`` dimension (first) when ``hysplit.realizations`` > 1.

        Returns
        -------
        xarray.DataArray
            ``foot(simulation, lag, lat, lon)`` (``y, x`` when projected), backed by
            dask with one chunk per simulation; nothing is read until computed.
            Simulations not yet computed read as NaN; an empty footprint reads as
            zeros; a damaged chunk raises :class:`~pystilt_dask.errors.StoreError`
            naming its simulation. ``time(simulation, lag)`` is the absolute start
            of each layer; receptor fields (``receptor_time``, ``receptor_longitude``,
            …, ``scene_id``, ``met``, ``sounding_id``, ``altitude_ref``) are
            coordinates along ``simulation``, so results join back to soundings.
        """
        model = self._model
        return ensemble.open_footprints(
            model.location, model.config, self.name, model.registry(), variant, realization
        )

    def to_rstilt_netcdf(self, sim_id: str, path: str | Path) -> None:
        """Write one simulation's footprint as R-STILT's ``<sim_id>_foot.nc``.

        The file equals the one :func:`~pystilt_dask.footprint.to_rstilt_netcdf`
        writes for a fresh ``calc_footprint`` of the same particles, variable for
        variable and byte for byte (``time_created`` aside): the same layers
        (those the particles reached), coordinates, values and attributes.

        Parameters
        ----------
        sim_id : str
            A registered simulation whose footprint is complete.
        path : str or path-like
            Destination file or fsspec URL; replaced if present.

        Raises
        ------
        StoreError
            If the simulation is not registered, its footprint is not computed
            yet, or it is empty (R-STILT writes no file for an empty footprint).
        """
        self.check_exportable([sim_id])
        from .footprint import to_rstilt_netcdf  # numba: only when writing

        to_rstilt_netcdf(self.load(realization=0).sel(simulation=sim_id), path)

    def check_exportable(self, sim_ids: Sequence[str]) -> None:
        """Raise one :class:`~pystilt_dask.errors.StoreError` naming every id that has no file.

        Each simulation must be registered and have this footprint complete and
        not empty (R-STILT writes no file for an empty footprint).
        """
        states = self._model.status().table
        unknown = [i for i in sim_ids if i not in states.index]
        if unknown:
            raise StoreError(f"no simulation {_ids(unknown)} in {self._model.location.root}")
        column = states.loc[list(sim_ids), self.name]
        missing = column.index[~column.isin([State.COMPLETE, State.COMPLETE_EMPTY])].tolist()
        if missing:
            raise StoreError(
                f"footprint {self.name!r} is not computed yet for {_ids(missing)}; "
                "run them first (`stilt-dask run`)"
            )
        empty = column.index[column == State.COMPLETE_EMPTY].tolist()
        if empty:
            raise StoreError(
                f"footprint {self.name!r} is empty for {_ids(empty)}: "
                "R-STILT writes no file for an empty footprint"
            )


def _where(model: Model, variant: str | None, realization: int) -> Location:
    """Where a variant's realization keeps its results (the root for the plain run)."""
    if variant is None and realization == 0:
        return model.location
    return ensemble.find(model.config, variant, realization).location(model.location)


def _ids(sim_ids: Sequence[str], shown: int = 10) -> str:
    """Simulation ids for a message: the first ``shown`` of them, and how many more."""
    more = f" and {len(sim_ids) - shown} more" if len(sim_ids) > shown else ""
    return ", ".join(repr(i) for i in sim_ids[:shown]) + more


def _table_digest(path: str) -> str:
    """The registry's digest of the receptor table at ``path`` (local or fsspec URL)."""
    return registry.table_digest(table_bytes(path), path)


def _check_heights(receptors: ReceptorFrame, z_top: float) -> None:
    """Refuse receptors released at or above HYSPLIT's model top (it would stop at once)."""
    high = np.flatnonzero(receptors.max_heights() >= z_top)
    if len(high):
        shown = receptors.table["sim_id"].take(high[:3]).to_pylist()
        more = f" and {len(high) - 3} more" if len(high) > 3 else ""
        raise ConfigError(
            f"receptors released at or above hysplit.z_top ({z_top:g} m above ground): "
            f"{_ids(shown, 3)}{more} ({len(high)} in all); raise z_top or lower them"
        )


def _stored_config(location: Location) -> ModelConfig | None:
    try:
        text = location.read_bytes(layout.CONFIG)
    except FileNotFoundError:
        return None
    return _parse_config(text, location)


def _parse_config(text: bytes, location: Location) -> ModelConfig:
    return ModelConfig.from_dict(load_yaml(text.decode(), location.url(layout.CONFIG)) or {})
