"""Meteorology settings: the archives of ``mets``, and nests of them."""

from __future__ import annotations

from typing import Annotated, Any

import pandas as pd
from pydantic import Discriminator, Field, Tag, field_validator

from ..errors import MeteorologyError
from ..meteorology.names import name_pattern
from .sections import Section


class MetConfig(Section):
    """Where one meteorology archive lives and how its files are named.

    Parameters
    ----------
    directory : str
        Directory holding ARL files (searched recursively, symlinks followed), or
        the URL of one anywhere fsspec reaches (``s3://bucket/hrrr``,
        ``https://host/arl/``): listed there, headers read with range requests,
        the files a run reads fetched into the node's met cache (``stilt.met-cache``).
    file_format : str
        R-STILT's ``met_file_format``: strftime fields (``%Y %y %m %d %j %H %M %b``)
        inside a regular expression, searched in each file's path relative to
        ``directory``: ``"%Y%m%d_%H"``, ``"%Y/%m/%d/hrrr_%H"``, ``"%Y%m%d.*hrrr"``. A
        file whose path matches belongs to the archive, at the time its fields
        name; which files a run needs is decided from their headers.
    file_tres : str, optional
        R-STILT's ``met_file_tres``. Accepted so that older configs load; not used,
        since the period of each file comes from its header.
    storage_options : dict, optional
        Options of the fsspec filesystem of a URL ``directory`` (credentials,
        ``endpoint_url``, ``anon``…); unused for a local one.
    """

    directory: str
    file_format: str
    file_tres: str | None = None
    storage_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("file_format")
    @classmethod
    def _parse_format(cls, value: str) -> str:
        try:
            name_pattern(value)
        except MeteorologyError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("file_tres")
    @classmethod
    def _parse_tres(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            if pd.Timedelta(value) <= pd.Timedelta(0):
                raise ValueError
        except ValueError:
            raise ValueError(f"file_tres {value!r} is not a positive duration like '6h'") from None
        return value


class NestConfig(Section):
    """Several met archives read together, HYSPLIT's nested grids.

    Parameters
    ----------
    nest : list of str
        Names of archives in ``mets``, finest grid first: HYSPLIT moves a particle
        on the first grid that holds it, so particles leaving the inner grid go on
        on the outer one.
    """

    nest: tuple[str, ...] = Field(min_length=2)


#: The kinds of ``mets`` entries, as pydantic tags them.
MET_KINDS = ("archive", "nest")


def _met_kind(value: Any) -> str:
    nest = isinstance(value, NestConfig) or (isinstance(value, dict) and "nest" in value)
    return MET_KINDS[nest]


#: A ``mets`` entry: one archive, or a nest of archives named in ``mets``.
MetEntry = Annotated[
    Annotated[MetConfig, Tag("archive")] | Annotated[NestConfig, Tag("nest")],
    Discriminator(_met_kind),
]
