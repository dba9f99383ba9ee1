"""What changes a project's results, decided in one place.

Every part of the project that must know whether two configurations give the
same results asks here: the stored ``config.yaml`` (a project refuses settings
that would change what it already holds), each footprint array (its settings
attribute) and the Dask task keys of a run. Run-control settings
(:data:`RUN_CONTROL`, the ``execution`` section and its profiles, storage
options, where inputs live) never enter it.

The settings are split as results depend on them: the *transport* (the HYSPLIT
settings that make the particles) and each named *footprint* (grid, transforms
and the run length that sets its layers). Input tables enter by their content,
so a kernel table copied to another mount keeps the fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import fsspec

from .errors import ConfigError

if TYPE_CHECKING:
    from .config import FootprintConfig, HysplitConfig, ModelConfig

#: HYSPLIT settings that control how a run is carried out, not what it computes:
#: they may change in an existing project.
RUN_CONTROL = ("executable", "timeout")

#: How many runs an ensemble makes: each realization's own seed is in its settings,
#: and realization 0 is the plain run, so the count may grow in an existing project.
ENSEMBLE_SIZE = ("realizations",)

#: File name of the stand-in transport (:mod:`pystilt_dask.hysplit.standin`), whose
#: particles are invented: the one executable that changes results.
STANDIN = "hycs_std-standin"


def transport_settings(hysplit: HysplitConfig) -> dict[str, Any]:
    """The HYSPLIT settings that change particles: all but run control and ensemble size.

    The executable is run control, with one exception: the stand-in transport
    (:mod:`pystilt_dask.hysplit.standin`, a test double) invents its particles, so
    a store it filled never passes for one HYSPLIT filled.
    """
    settings = hysplit.model_dump(mode="json", exclude={*RUN_CONTROL, *ENSEMBLE_SIZE})
    if hysplit.executable and PurePath(hysplit.executable).name == STANDIN:
        settings["transport"] = "standin"
    return settings


def footprint_settings(footprint: FootprintConfig, hysplit: HysplitConfig) -> dict[str, Any]:
    """The settings a footprint array is made with: its own and the run length.

    Transforms are left out when there are none (so arrays made before transforms
    existed still match), and a transform's ``table`` is named by the digest of
    its contents instead of its path.
    """
    exclude = set() if footprint.transforms else {"transforms"}
    dumped = footprint.model_dump(mode="json", exclude=exclude)
    for transform in dumped.get("transforms", ()):
        if transform.get("table"):
            transform["table"] = content_digest(transform["table"])
    return {"footprint": dumped, "n_hours": hysplit.n_hours}


def transport_changes(old: HysplitConfig, new: HysplitConfig) -> list[str]:
    """The transport settings in which ``new`` differs from ``old``, as ``"hysplit.key: a → b"``."""
    mine, theirs = transport_settings(old), transport_settings(new)
    return [
        f"hysplit.{key}: {mine.get(key)!r} → {theirs.get(key)!r}"
        for key in sorted(set(mine) | set(theirs))
        if mine.get(key) != theirs.get(key)
    ]


@lru_cache(maxsize=64)
def content_digest(path: str) -> str:
    """``sha256:<hex>`` of a file's bytes (a path or fsspec URL), read once per process.

    Raises
    ------
    ConfigError
        When the file cannot be read.
    """
    try:
        with fsspec.open(path, "rb") as handle:
            return "sha256:" + hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None


@dataclass(frozen=True)
class Fingerprint:
    """The result-changing settings of a configuration.

    Attributes
    ----------
    transport : dict
        :func:`transport_settings`.
    footprints : dict
        :func:`footprint_settings` of each named footprint.
    """

    transport: dict[str, Any]
    footprints: dict[str, dict[str, Any]]

    @classmethod
    def of(cls, config: ModelConfig) -> Fingerprint:
        """The fingerprint of ``config``."""
        return cls(
            transport_settings(config.hysplit),
            {
                name: footprint_settings(footprint, config.hysplit)
                for name, footprint in config.footprints.items()
            },
        )

    @property
    def token(self) -> str:
        """A short hex digest, equal in every process for equal settings."""
        text = json.dumps(
            {"transport": self.transport, "footprints": self.footprints}, sort_keys=True
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]
