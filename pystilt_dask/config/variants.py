"""Transport variants: the project's settings with some changed, run beside the plain ones."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, ValidationError

from .describe import describe
from .footprints import FootprintConfig, check_footprints
from .hysplit import HysplitConfig
from .sections import Section

#: Letters, digits, ``_`` and ``-``: a variant's name is a folder of the store.
_VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class VariantConfig(Section):
    """A named transport variant: the project's settings with some changed.

    Its results live under ``variants/<name>/`` in the store, with their own
    settings fingerprint and completion keys; see :doc:`/execution`.

    Parameters
    ----------
    hysplit : dict
        ``hysplit`` keys that differ from the project's (``numpar``, ``ziscale``,
        ``realizations``…), validated as :class:`HysplitConfig` merged with it.
    footprints : dict of FootprintConfig or None
        The variant's named footprints; ``None`` (default): the project's. A
        variant whose transport settings equal the plain run's (or an earlier
        variant's) uses those particles, as named footprints do.
    """

    hysplit: dict[str, Any] = Field(default_factory=dict)
    footprints: dict[str, FootprintConfig] | None = None


def variant_footprints(data: dict[str, Any], variant: VariantConfig) -> dict[str, FootprintConfig]:
    """A variant's footprints: its own, else the project's (``data["footprints"]``)."""
    if variant.footprints is not None:
        return variant.footprints
    return data.get("footprints") or {}


def variant_hysplit(base: HysplitConfig, variant: VariantConfig, name: str) -> HysplitConfig:
    """The project's HYSPLIT settings with a variant's changes, validated as one.

    Raises
    ------
    ValueError
        Naming the variant and the setting at fault.
    """
    merged = {**base.model_dump(exclude_unset=True), **variant.hysplit}
    try:
        return HysplitConfig.model_validate(merged)
    except ValidationError as exc:
        message = describe(exc)
        where = message.removeprefix("config: ")
        where = f"hysplit: {where}" if where != message else f"hysplit.{message}"
        raise ValueError(f"variant {name!r}: {where}") from None


def check_variant(name: str, variant: VariantConfig, data: dict[str, Any]) -> None:
    """Refuse a variant whose name is no folder name or whose settings do not validate.

    ``data`` holds the project's sections validated so far (pydantic's
    ``info.data``): the variant's HYSPLIT settings are merged with its
    ``hysplit``, and its footprints checked against them.

    Raises
    ------
    ValueError
        Naming the variant and the setting at fault.
    """
    if not _VARIANT_NAME.match(name):
        raise ValueError(f"variant name {name!r} must be letters, digits, '_' or '-'")
    base = data.get("hysplit")
    if base is None:
        return  # hysplit itself is invalid, and named
    hysplit = variant_hysplit(base, variant, name)
    check_footprints(variant_footprints(data, variant), hysplit, f"{name}: footprint")
