"""What a :class:`~pystilt_dask.model.Model` holds: its simulations, particle tables and footprints.

Each view reads the store when asked, through the model it was given; none holds
state of its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import xarray as xr

from . import ensemble
from .errors import StoreError
from .store import layout, packing, particles, records
from .store.completion import State
from .store.paths import Location

if TYPE_CHECKING:
    from .model import Model


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
