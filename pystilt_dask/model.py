"""The user-facing project: register receptors, see what is done, run, load results.

A :class:`Model` is a view of a project store (see :mod:`pystilt_dask.store.layout`)
plus its configuration. It holds no state of its own: every answer is read from
the store when asked. It is the façade: registration is
:mod:`pystilt_dask.registration`, and the views of results it hands out
(:class:`Simulations`, :class:`Trajectories`, :class:`Footprints`) are
:mod:`pystilt_dask.results`, importable from here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import xarray as xr

from . import ensemble, preflight, registration
from .config import ModelConfig
from .errors import StoreError
from .receptors import Receptor, ReceptorFrame
from .registration import ReceptorsLike
from .results import Footprint, Footprints, Simulations, Trajectories
from .store import footprints, layout, registry
from .store.completion import CompletionRule
from .store.paths import Location
from .store.registry import Registry
from .store.status import Status, status
from .store.verify import VerifyReport, verify

if TYPE_CHECKING:
    from .execution.run import Run
    from .store.compact import CompactReport

# docs/api.md documents the result views under this module's name.
__all__ = ["Footprint", "Footprints", "Model", "ReceptorsLike", "Simulations", "Trajectories"]


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
            config = registration.stored_config(self.location)
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
        return registration.frame(self._receptors, self.config)

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
        return registration.register(self.location, self.config, self._receptors, scene_id, met)

    def sync(self, known: Registry | None = None) -> Registry:
        """Make every footprint group describe the registry for plain zarr readers.

        Repeated until no registrant committed meanwhile, so whoever syncs last
        writes the newest state. Returns the registry synced to.
        """
        return registration.sync(self.location, self.config, known)

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

    def compact(self, break_lock: bool = False, client: Any = None) -> CompactReport:
        """Pack completed simulations into a few objects per 1,024 rows (``stilt-dask compact``).

        Every result prefix is packed (realizations and variants too), each block
        of rows by a task of its own. Runs may go on meanwhile; see
        ``docs/store.md`` ("Packing") and :func:`pystilt_dask.store.compact.compact`.

        Parameters
        ----------
        break_lock : bool
            Take over ``.stilt/compact.lock`` whoever holds it.
        client : distributed.Client, cluster or str, optional
            Where blocks are packed, as :meth:`run` runs: default: the current
            default client, else a cluster built from the configuration, closed
            when the compaction ends (none is started when nothing is to be packed).
        """
        from .store.compact import compact

        return compact(self.location, self.config, self.registry(), break_lock, client)

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
        return registration.unregistered(self.config, self._receptors, known)

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
