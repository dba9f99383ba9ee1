"""Met crops as shared tasks: one per batch of simulations, which run on its result.

With ``execution.crop`` set, a run groups its simulations into batches (one met,
one UTC window of ``batch_hours``, at most ``batch_size`` each) and sends, per
batch, one task that cuts the met those simulations read
(:func:`~pystilt_dask.meteorology.crop.cropped_config`) into a place every worker
reads. Each simulation task of the batch takes that task's result, the
configuration with the batch's met pointing at the crop, as its ``config``
argument: Dask runs the crop first, once, and HYSPLIT reads the crop. A crop is
content-addressed (its source files and box), so a batch run again reuses it.

Realizations and variants run on the same crop: a member's task takes its own
settings with the crop's ``mets`` (:func:`member_config`, a small task per batch
and member). A crop is cut for the plain ``n_hours``, so every member must run
as long (checked when the run is planned).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
from dask.base import tokenize

from ..config import CropConfig, ModelConfig
from ..errors import ConfigError
from ..store import registry as registry_module

if TYPE_CHECKING:
    from ..store.paths import Location
    from ..store.registry import Registry

#: Prefix of every crop task key (and of the small per-member config tasks).
CROP_PREFIX = "stilt-crop-"

#: Where crops go in the project store when ``execution.crop.destination`` is unset.
CROPS_FOLDER = "met-crops"


def batches(
    sim_ids: Sequence[str], times: Sequence[Any], mets: Sequence[str], hours: int, size: int
) -> dict[str, tuple[str, ...]]:
    """Group simulations by met and UTC window of ``hours``, at most ``size`` per group.

    Parameters
    ----------
    sim_ids, times, mets : sequences of equal length
        Each simulation's id, receptor time and met name.
    hours : int
        Length of a window; windows start at multiples of it from the epoch.
    size : int
        Most simulations per batch: a larger group is split in time order.

    Returns
    -------
    dict
        Batch id (``<met>-<window start>-<part>``, stable for the same input) to
        its simulation ids, in time order.
    """
    frame = pd.DataFrame({"sim_id": sim_ids, "time": pd.to_datetime(times), "met": mets})
    frame["window"] = frame["time"].dt.floor(f"{hours}h")
    out: dict[str, tuple[str, ...]] = {}
    for (met, window), group in frame.sort_values("time", kind="stable").groupby(
        ["met", "window"], sort=True
    ):
        ids = group["sim_id"].tolist()
        for part, start in enumerate(range(0, len(ids), size)):
            out[f"{met}-{window:%Y%m%dT%H}-{part}"] = tuple(ids[start : start + size])
    return out


def member_config(settings: ModelConfig, cropped: ModelConfig) -> ModelConfig:
    """``settings`` reading the met of ``cropped`` (a crop task's result)."""
    return settings.model_copy(update={"mets": cropped.mets})


@dataclass(frozen=True)
class CropPlan:
    """A run's batches and where their crops go.

    Attributes
    ----------
    crop : CropConfig
        The settings.
    destination : str
        Folder or URL of the crops.
    storage_options : dict
        fsspec options of ``destination``.
    batch_of : dict
        Each simulation's batch id.
    members : dict
        Each batch's simulation ids.
    tasks : dict
        How many tasks of the run (simulations of every member) take each batch's crop.
    """

    crop: CropConfig
    destination: str
    storage_options: dict[str, Any]
    batch_of: dict[str, str]
    members: dict[str, tuple[str, ...]]
    tasks: dict[str, int]
    _sent: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(
        cls,
        crop: CropConfig,
        root: Location,
        config: ModelConfig,
        others: Sequence[ModelConfig],
        snapshot: Registry,
        items: Sequence[tuple[str, str]],
    ) -> CropPlan:
        """Batch the simulations of ``items`` (``(prefix, sim_id)``, every task of the run).

        Raises
        ------
        ConfigError
            When a realization or variant runs another ``n_hours`` than the project.
        """
        longer = {c.hysplit.n_hours for c in others} - {config.hysplit.n_hours}
        if longer:
            raise ConfigError(
                f"execution.crop cuts the met for hysplit.n_hours {config.hysplit.n_hours}; "
                f"a variant runs {sorted(longer)}: run it in a project of its own, or without crop"
            )
        if crop.destination is None:
            destination, options = root.url(CROPS_FOLDER), dict(root.storage_options or {})
        else:
            destination, options = crop.destination, dict(crop.storage_options)
        sim_ids = list(dict.fromkeys(sim_id for _, sim_id in items))
        entries = [snapshot.entry(sim_id) for sim_id in sim_ids]
        grouped = batches(
            sim_ids,
            [entry["time"] for entry in entries],
            [str(entry["met"]) for entry in entries],
            crop.batch_hours,
            crop.batch_size,
        )
        batch_of = {sim_id: batch for batch, ids in grouped.items() for sim_id in ids}
        tasks: dict[str, int] = {}
        for _, sim_id in items:
            tasks[batch_of[sim_id]] = tasks.get(batch_of[sim_id], 0) + 1
        return cls(crop, destination, options, batch_of, grouped, tasks)

    def arguments(self, batch: str, config: ModelConfig, snapshot: Registry) -> tuple:
        """The arguments of ``cropped_config`` for ``batch``."""
        points = []
        met = None
        for sim_id in self.members[batch]:
            entry = snapshot.entry(sim_id)
            receptor = registry_module.receptor(entry)
            met = str(entry["met"])
            points.append((receptor.time, receptor.release_points))
        return (config, met, points, self.crop.reach_km, self.destination, self.storage_options)

    def key(self, token: str, batch: str, prefix: str = "") -> str:
        """The task key of ``batch``'s crop (``prefix``: a member's config from it)."""
        digest = tokenize(token, batch, self.members[batch], self.crop, self.destination)[:10]
        suffix = "-" + prefix.strip("/").replace("/", "-") if prefix else ""
        return f"{CROP_PREFIX}{digest}-{batch}{suffix}"

    def sent(self, batch: str) -> bool:
        """Count one task of ``batch`` sent; whether every task of it has been.

        The sender then lets go of the batch's crop futures: the scheduler keeps a
        crop while tasks depending on it hold it. A task sent again afterwards (a
        requeue) sends its crop again, which finds the crop already cut.
        """
        done = self._sent.get(batch, 0) + 1
        self._sent[batch] = done
        return done >= self.tasks[batch]
