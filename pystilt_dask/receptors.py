"""Receptors: where and when a measurement was made, and their simulation ids.

A receptor's id names everything that changes its run, so two receptors share an
id exactly when they are the same receptor:

- point: ``yyyymmddHHMM_<lon>_<lat>_<altitude>``, R-STILT's id;
- column: ``yyyymmddHHMM_<lon>_<lat>_X<bottom>-<top>``, as PYSTILT writes it;
- multipoint: ``yyyymmddHHMM_multi_<hash>``, ``<hash>`` the first 10 hex digits of
  the SHA-256 of its sorted points (lon, lat rounded to 1e-5 degrees, altitude to
  1 cm); PYSTILT's hash is another.

Numbers print like R's ``as.character`` (15 significant digits, no trailing zeros),
and a receptor keeps its numbers as printed: ``-111.84800000000001`` is
``-111.848``, and longitudes lie in [-180, 180) (``248.152`` is ``-111.848``). A
time with seconds stamps them too (``yyyymmddHHMMSS``): HYSPLIT releases on the
minute, but footprint layers count from the receptor's time, as in R-STILT.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from .errors import ReceptorError

#: Compact digit times, as R-STILT scripts write them (``r_run_time=2019010106``).
_COMPACT = {10: "%Y%m%d%H", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}
_MONTH_FIRST = re.compile(r"\s*(\d{1,2})/(\d{1,2})/\d{4}\b")
_NOT_A_TIME = (
    "not a time: write ISO 8601 (2019-05-30T10:00Z, 2019-05-30 10:00, 20190530T1000), "
    "yyyy/mm/dd HH:MM, mm/dd/yyyy HH:MM or digits yyyymmddHH[MM]"
)


def parse_time(value: Any) -> datetime:
    """A receptor time as a naive UTC datetime.

    Accepts datetimes (aware ones are converted to UTC), ISO 8601 text with or
    without a zone (``Z``, ``+02:00``, `` UTC``), ``yyyy/mm/dd HH:MM``,
    ``mm/dd/yyyy HH:MM`` (month first) and compact digits ``yyyymmddHH``,
    ``yyyymmddHHMM`` or ``yyyymmddHHMMSS``, as text or integer; an integer is never
    read as an epoch.

    Raises
    ------
    ValueError
        For anything else, or a time with a fraction of a second.
    """
    if isinstance(value, float | np.floating) and float(value).is_integer():
        value = int(value)  # an integer column with gaps reads as floats
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        value = str(value)
    try:
        if isinstance(value, str):
            stamp = _parse_text(value.strip())
        elif isinstance(value, datetime | np.datetime64):
            stamp = pd.Timestamp(value)
        else:
            raise ValueError
    except (ValueError, OverflowError):
        raise ValueError(_NOT_A_TIME) from None
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    if stamp.microsecond or stamp.nanosecond:
        raise ValueError("a fraction of a second is not kept: round the time to the second")
    return stamp.to_pydatetime()


def _parse_text(text: str) -> pd.Timestamp:
    if text.isdigit():
        if len(text) not in _COMPACT:
            raise ValueError
        return pd.Timestamp(datetime.strptime(text, _COMPACT[len(text)]))
    if not text[:1].isdigit():  # pandas reads 'now' and 'today'
        raise ValueError
    stamp = pd.Timestamp(text)
    slashed = _MONTH_FIRST.match(text)
    # pandas reads 30/05/2019 day first rather than fail; 05/06/2019 stays ambiguous.
    if slashed and (stamp.month, stamp.day) != (int(slashed[1]), int(slashed[2])):
        raise ValueError
    if pd.isna(stamp):
        raise ValueError
    return stamp


def format_number(value: float) -> str:
    """Format a number as R's ``as.character`` does (15 significant digits)."""
    return f"{float(value) + 0.0:.15g}"  # + 0.0: -0.0 prints as 0


def canonical_number(value: float) -> float:
    """The number a receptor keeps: ``value`` as its id prints it."""
    return float(format_number(value))


def canonical_longitude(value: float) -> float:
    """A longitude in [-180, 180), as its id prints it."""
    if not -180 <= value < 180:
        value = (value + 180) % 360 - 180
    return canonical_number(value)


UTCTime = Annotated[datetime, BeforeValidator(parse_time)]
Longitude = Annotated[
    float, Field(ge=-360, le=360, allow_inf_nan=False), AfterValidator(canonical_longitude)
]
Latitude = Annotated[
    float, Field(ge=-90, le=90, allow_inf_nan=False), AfterValidator(canonical_number)
]
Height = Annotated[float, Field(ge=0, allow_inf_nan=False), AfterValidator(canonical_number)]


class _Receptor(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    time: UTCTime
    _registered_id: str | None = PrivateAttr(default=None)

    @property
    def time_id(self) -> str:
        """The time part of the simulation id: ``yyyymmddHHMM``, ``yyyymmddHHMMSS`` with seconds."""
        return self.time.strftime("%Y%m%d%H%M%S" if self.time.second else "%Y%m%d%H%M")

    @property
    def release_points(self) -> list[tuple[float, float, float]]:
        """``(latitude, longitude, height)`` lines for HYSPLIT's CONTROL file."""
        raise NotImplementedError

    @property
    def sim_id(self) -> str:
        """The simulation id (the one it is registered under, when that differs)."""
        return self._registered_id or self._own_id(self.time_id)

    @property
    def legacy_sim_id(self) -> str | None:
        """The id registries written before this id scheme may hold it under, if another.

        Those ids stamped the time to the minute and a column's height as ``X``.
        """
        legacy = self._legacy_id(self.time.strftime("%Y%m%d%H%M"))
        return legacy if legacy != self._own_id(self.time_id) else None

    def _own_id(self, time_id: str) -> str:
        raise NotImplementedError

    def _legacy_id(self, time_id: str) -> str:
        return self._own_id(time_id)

    def _identity(self) -> tuple:
        return tuple(self.model_dump().values())

    def registered_as(self, sim_id: str) -> _Receptor:
        """This receptor, answering ``sim_id`` as its id: a registry entry under an older id."""
        copy = self.model_copy()
        copy._registered_id = sim_id
        return copy

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._identity() == other._identity()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._identity())

    def to_attrs(self) -> dict[str, Any]:
        """Flat attributes describing the receptor (for netCDF/zarr metadata)."""
        data = self.model_dump(mode="json")
        data = {k: (list(v) if isinstance(v, tuple) else v) for k, v in data.items()}
        return {"sim_id": self.sim_id, **data}

    def describe(self) -> str:
        """The receptor's fields in one line, for messages."""
        fields = self.model_dump(exclude={"kind"})
        fields["time"] = f"{self.time:%Y-%m-%d %H:%M:%S}"
        return ", ".join(f"{k}={_shown(v)}" for k, v in fields.items())


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return f"[{', '.join(format_number(v) for v in value)}]"
    return format_number(value) if isinstance(value, float) else str(value)


class PointReceptor(_Receptor):
    """A measurement at one place and height.

    Parameters
    ----------
    time : datetime or str
        Measurement time (UTC; aware times are converted; see :func:`parse_time`).
    longitude, latitude : float
        Position in degrees.
    altitude : float
        Height above ground in metres.
    """

    kind: Literal["point"] = "point"
    longitude: Longitude
    latitude: Latitude
    altitude: Height

    def _own_id(self, time_id: str) -> str:
        lon, lat, z = (format_number(v) for v in (self.longitude, self.latitude, self.altitude))
        return f"{time_id}_{lon}_{lat}_{z}"

    @property
    def release_points(self) -> list[tuple[float, float, float]]:
        return [(self.latitude, self.longitude, self.altitude)]


class ColumnReceptor(_Receptor):
    """A vertical column (e.g. a satellite sounding) released as a HYSPLIT line source.

    Parameters
    ----------
    time : datetime or str
        Measurement time (UTC).
    longitude, latitude : float
        Position in degrees.
    bottom, top : float
        Column bounds above ground in metres.
    """

    kind: Literal["column"] = "column"
    longitude: Longitude
    latitude: Latitude
    bottom: Height
    top: Height

    @model_validator(mode="after")
    def _ordered(self) -> ColumnReceptor:
        if self.top <= self.bottom:
            raise ValueError(f"top ({self.top}) must exceed bottom ({self.bottom})")
        return self

    def _own_id(self, time_id: str) -> str:
        lon, lat, bottom, top = (
            format_number(v) for v in (self.longitude, self.latitude, self.bottom, self.top)
        )
        return f"{time_id}_{lon}_{lat}_X{bottom}-{top}"

    def _legacy_id(self, time_id: str) -> str:
        return f"{time_id}_{format_number(self.longitude)}_{format_number(self.latitude)}_X"

    @property
    def release_points(self) -> list[tuple[float, float, float]]:
        return [
            (self.latitude, self.longitude, self.bottom),
            (self.latitude, self.longitude, self.top),
        ]


class MultiPointReceptor(_Receptor):
    """Several release points sharing one time (slant columns, plume transects).

    Two multipoint receptors with the same points in another order are the same
    receptor.

    Parameters
    ----------
    time : datetime or str
        Measurement time (UTC).
    longitudes, latitudes, altitudes : sequence of float
        Release points; heights above ground in metres.
    """

    kind: Literal["multipoint"] = "multipoint"
    longitudes: tuple[Longitude, ...]
    latitudes: tuple[Latitude, ...]
    altitudes: tuple[Height, ...]

    @model_validator(mode="after")
    def _aligned(self) -> MultiPointReceptor:
        n = len(self.longitudes)
        if n < 2 or len(self.latitudes) != n or len(self.altitudes) != n:
            raise ValueError("longitudes, latitudes and altitudes need the same length, at least 2")
        return self

    def _points(self) -> list[tuple[float, float, float]]:
        return list(zip(self.longitudes, self.latitudes, self.altitudes, strict=True))

    def _identity(self) -> tuple:
        return (self.kind, self.time, tuple(sorted(self._points())))

    def _own_id(self, time_id: str) -> str:
        points = sorted(
            (round(lon, 5), round(lat, 5), round(z, 2)) for lon, lat, z in self._points()
        )
        digest = hashlib.sha256(repr(points).encode()).hexdigest()[:10]
        return f"{time_id}_multi_{digest}"

    @property
    def release_points(self) -> list[tuple[float, float, float]]:
        return [(lat, lon, z) for lon, lat, z in self._points()]


Receptor = PointReceptor | ColumnReceptor | MultiPointReceptor


class ReceptorsMerged(UserWarning):
    """Rows of a receptor table that repeat another row's receptor were merged into it.

    Parameters
    ----------
    count : int
        How many rows were merged (dropped) into an earlier row's receptor.
    source : str
        The table.
    """

    def __init__(self, count: int, source: str) -> None:
        rows = f"{count} rows of {source} repeat" if count != 1 else f"1 row of {source} repeats"
        verb = "were" if count != 1 else "was"
        super().__init__(f"{rows} another row's receptor and {verb} merged")
        self.count = count
        self.source = source


#: Column names (any case) of each field of a receptor table.
_ALIASES = {
    "time": ("time",),
    "longitude": ("longitude", "long", "lon"),
    "latitude": ("latitude", "lati", "lat"),
    "altitude": ("altitude", "zagl", "z"),
    "bottom": ("bottom",),
    "top": ("top",),
    "group": ("group",),
}


def read_receptors(path: str | Path, storage_options: dict | None = None) -> list[Receptor]:
    """Read a receptor table (CSV or Parquet; local path or fsspec URL).

    Columns, in any case: ``time``, ``longitude`` (or ``long``/``lon``),
    ``latitude`` (or ``lati``/``lat``) and either ``altitude`` (or ``zagl``/``z``)
    for points or ``bottom`` and ``top`` for columns. Rows sharing a value in an
    optional ``group`` column form one :class:`MultiPointReceptor`. Times are read
    by :func:`parse_time`.

    Returns
    -------
    list of Receptor
        Each receptor once, in the order of its first row. Rows repeating an
        earlier row's receptor are merged into it, said by one
        :class:`ReceptorsMerged` warning.

    Raises
    ------
    ReceptorError
        Naming the row (1-based, as in a spreadsheet after the header) and field at fault.
    """
    path = str(path)
    try:
        if path.endswith(".parquet"):
            table = pd.read_parquet(path, storage_options=storage_options)
        else:
            table = pd.read_csv(path, storage_options=storage_options, dtype=str)
    except FileNotFoundError:
        raise ReceptorError(f"receptor table {path} does not exist") from None
    return receptors_from_frame(table, source=path)


def receptors_from_frame(table: pd.DataFrame, source: str = "table") -> list[Receptor]:
    """Build receptors from a DataFrame with the columns :func:`read_receptors` accepts.

    Repeated receptors are merged as :func:`read_receptors` does.
    """
    unique: dict[str, tuple[list[int], Receptor]] = {}
    merged = 0
    for rows, receptor in receptor_rows(table, source):
        first = unique.setdefault(receptor.sim_id, (rows, receptor))
        if first[1] is receptor:
            continue
        if first[1] != receptor:
            raise ReceptorError(
                f"{source} {_rows(first[0])} and {_rows(rows)} are different receptors with "
                f"one simulation id {receptor.sim_id}; keep one"
            )
        merged += len(rows)
    if merged:
        warnings.warn(ReceptorsMerged(merged, source), stacklevel=3)
    return [receptor for _, receptor in unique.values()]


def receptor_rows(table: pd.DataFrame, source: str = "table") -> list[tuple[list[int], Receptor]]:
    """Each row's (or multipoint group's) receptor with its row numbers, nothing merged."""
    table = table.rename(columns=_canonical_columns(table.columns, source))
    if "time" not in table.columns:
        raise ReceptorError(f"{source}: missing column 'time'")
    rows = table.to_dict(orient="records")
    if "group" in table.columns:
        return list(_grouped(rows, source))
    return [([i], _row_receptor(i, row, source)) for i, row in enumerate(rows, start=1)]


def _rows(numbers: list[int]) -> str:
    return f"row {numbers[0]}" if len(numbers) == 1 else f"rows {', '.join(map(str, numbers))}"


def _canonical_columns(columns: pd.Index, source: str) -> dict[str, str]:
    mapping = {}
    for canonical, aliases in _ALIASES.items():
        present = [c for c in columns if str(c).strip().lower() in aliases]
        if len(present) > 1:
            raise ReceptorError(f"{source}: columns {present} all mean {canonical!r}; keep one")
        if present:
            mapping[present[0]] = canonical
    return mapping


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not (v is None or (np.ndim(v) == 0 and pd.isna(v)))}


def _row_receptor(index: int, row: dict[str, Any], source: str) -> Receptor:
    row = _clean(row)
    fields = {k: row[k] for k in ("time", "longitude", "latitude") if k in row}
    if "bottom" in row or "top" in row:
        if "altitude" in row:
            raise ReceptorError(
                f"{source} row {index}: both altitude (a point) and bottom/top (a column) "
                "are given; keep one"
            )
        cls: type[_Receptor] = ColumnReceptor
        fields.update({k: row[k] for k in ("bottom", "top") if k in row})
    else:
        cls = PointReceptor
        if "altitude" in row:
            fields["altitude"] = row["altitude"]
    return _validate(cls, fields, f"{source} row {index}")


def _grouped(rows: list[dict[str, Any]], source: str) -> Iterator[tuple[list[int], Receptor]]:
    groups: dict[Any, list[tuple[int, dict[str, Any]]]] = {}
    for i, row in enumerate(rows, start=1):
        groups.setdefault(row["group"], []).append((i, _clean(row)))
    for members in groups.values():
        numbers = [i for i, _ in members]
        if len(members) == 1:
            index, row = members[0]
            yield numbers, _row_receptor(index, row, source)
            continue
        where = f"{source} {_rows(numbers)}"
        if any("bottom" in row or "top" in row for _, row in members):
            raise ReceptorError(f"{where}: a multipoint group's rows need altitude, not bottom/top")
        try:
            times = {parse_time(row.get("time")) for _, row in members}
        except ValueError:
            times = {row.get("time") for _, row in members}
        if len(times) != 1:
            shown = sorted(str(t) for t in times)
            raise ReceptorError(f"{where}: a multipoint group needs one time, got {shown}")
        fields = {
            "time": members[0][1].get("time"),
            "longitudes": [row.get("longitude") for _, row in members],
            "latitudes": [row.get("latitude") for _, row in members],
            "altitudes": [row.get("altitude") for _, row in members],
        }
        yield numbers, _validate(MultiPointReceptor, fields, where)


def _validate(cls: type[_Receptor], fields: dict[str, Any], where: str) -> Receptor:
    try:
        return cls.model_validate(fields)  # type: ignore[return-value]
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "receptor"
        value = fields.get(str(err["loc"][0])) if err["loc"] else None
        message = err["msg"].removeprefix("Value error, ")
        shown = f" (got {value!r})" if value is not None else ""
        raise ReceptorError(f"{where}, field {field!r}: {message}{shown}") from None
