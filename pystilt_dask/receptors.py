"""Receptors: where and when a measurement was made, and their simulation ids.

Simulation ids follow R-STILT: ``yyyymmddHHMM_<lon>_<lat>_<zagl>`` with numbers
printed like R's ``as.character`` (15 significant digits, no trailing zeros), and
``X`` as the height of a column. A multipoint receptor has no R-STILT form; its id
is ``yyyymmddHHMM_multi_<hash>``, where ``<hash>`` is the first 10 hex digits of
the SHA-256 of its points (lon, lat rounded to 1e-5 degrees, altitude to 1 cm).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ReceptorError


def _utc_naive(value: datetime) -> datetime:
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.to_pydatetime()


UTCTime = Annotated[datetime, AfterValidator(_utc_naive)]
Longitude = Annotated[float, Field(ge=-360, le=360, allow_inf_nan=False)]
Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
Height = Annotated[float, Field(ge=0, allow_inf_nan=False)]


def format_number(value: float) -> str:
    """Format a number as R's ``as.character`` does (15 significant digits)."""
    return f"{float(value):.15g}"


class _Receptor(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    time: UTCTime

    @property
    def time_id(self) -> str:
        """The ``yyyymmddHHMM`` prefix of the simulation id."""
        return self.time.strftime("%Y%m%d%H%M")

    @property
    def release_points(self) -> list[tuple[float, float, float]]:
        """``(latitude, longitude, height)`` lines for HYSPLIT's CONTROL file."""
        raise NotImplementedError

    @property
    def sim_id(self) -> str:
        """The simulation id."""
        raise NotImplementedError

    def to_attrs(self) -> dict[str, Any]:
        """Flat attributes describing the receptor (for netCDF/zarr metadata)."""
        data = self.model_dump(mode="json")
        data = {k: (list(v) if isinstance(v, tuple) else v) for k, v in data.items()}
        return {"sim_id": self.sim_id, **data}


class PointReceptor(_Receptor):
    """A measurement at one place and height.

    Parameters
    ----------
    time : datetime
        Measurement time (UTC; aware times are converted).
    longitude, latitude : float
        Position in degrees.
    altitude : float
        Height above ground in metres.
    """

    kind: Literal["point"] = "point"
    longitude: Longitude
    latitude: Latitude
    altitude: Height

    @property
    def sim_id(self) -> str:
        lon, lat, z = (format_number(v) for v in (self.longitude, self.latitude, self.altitude))
        return f"{self.time_id}_{lon}_{lat}_{z}"

    @property
    def release_points(self) -> list[tuple[float, float, float]]:
        return [(self.latitude, self.longitude, self.altitude)]


class ColumnReceptor(_Receptor):
    """A vertical column (e.g. a satellite sounding) released as a HYSPLIT line source.

    Parameters
    ----------
    time : datetime
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

    @property
    def sim_id(self) -> str:
        return f"{self.time_id}_{format_number(self.longitude)}_{format_number(self.latitude)}_X"

    @property
    def release_points(self) -> list[tuple[float, float, float]]:
        return [
            (self.latitude, self.longitude, self.bottom),
            (self.latitude, self.longitude, self.top),
        ]


class MultiPointReceptor(_Receptor):
    """Several release points sharing one time (slant columns, plume transects).

    Parameters
    ----------
    time : datetime
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

    @property
    def sim_id(self) -> str:
        points = sorted(
            (round(lon, 5), round(lat, 5), round(z, 2))
            for lon, lat, z in zip(self.longitudes, self.latitudes, self.altitudes, strict=True)
        )
        digest = hashlib.sha256(repr(points).encode()).hexdigest()[:10]
        return f"{self.time_id}_multi_{digest}"

    @property
    def release_points(self) -> list[tuple[float, float, float]]:
        return list(zip(self.latitudes, self.longitudes, self.altitudes, strict=True))


Receptor = PointReceptor | ColumnReceptor | MultiPointReceptor

_ALIASES = {
    "longitude": ("longitude", "long", "lon"),
    "latitude": ("latitude", "lati", "lat"),
    "altitude": ("altitude", "zagl", "z"),
}


def read_receptors(path: str | Path, storage_options: dict | None = None) -> list[Receptor]:
    """Read a receptor table (CSV or Parquet; local path or fsspec URL).

    Columns: ``time``, ``longitude`` (or ``long``/``lon``), ``latitude`` (or
    ``lati``/``lat``) and either ``altitude`` (or ``zagl``/``z``) for points or
    ``bottom`` and ``top`` for columns. Rows sharing a value in an optional
    ``group`` column form one :class:`MultiPointReceptor`.

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
    """Build receptors from a DataFrame with the columns :func:`read_receptors` accepts."""
    table = table.rename(columns=_canonical_columns(table.columns, source))
    if "time" not in table.columns:
        raise ReceptorError(f"{source}: missing column 'time'")
    rows = table.to_dict(orient="records")
    if "group" in table.columns:
        return list(_grouped(rows, source))
    return [_row_receptor(i, row, source) for i, row in enumerate(rows, start=1)]


def _canonical_columns(columns: pd.Index, source: str) -> dict[str, str]:
    mapping = {}
    for canonical, aliases in _ALIASES.items():
        present = [c for c in columns if str(c).lower() in aliases]
        if len(present) > 1:
            raise ReceptorError(f"{source}: columns {present} all mean {canonical!r}; keep one")
        if present:
            mapping[present[0]] = canonical
    return mapping


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v for k, v in row.items() if not (v is None or (isinstance(v, float) and np.isnan(v)))
    }


def _row_receptor(index: int, row: dict[str, Any], source: str) -> Receptor:
    row = _clean(row)
    fields = {k: row[k] for k in ("time", "longitude", "latitude") if k in row}
    if "bottom" in row or "top" in row:
        cls: type[_Receptor] = ColumnReceptor
        fields.update({k: row[k] for k in ("bottom", "top") if k in row})
    else:
        cls = PointReceptor
        if "altitude" in row:
            fields["altitude"] = row["altitude"]
    return _validate(cls, fields, f"{source} row {index}")


def _grouped(rows: list[dict[str, Any]], source: str) -> Iterator[Receptor]:
    groups: dict[Any, list[tuple[int, dict[str, Any]]]] = {}
    for i, row in enumerate(rows, start=1):
        groups.setdefault(row["group"], []).append((i, _clean(row)))
    for members in groups.values():
        if len(members) == 1:
            index, row = members[0]
            yield _row_receptor(index, row, source)
            continue
        where = f"{source} rows {', '.join(str(i) for i, _ in members)}"
        times = {row.get("time") for _, row in members}
        if len(times) != 1:
            raise ReceptorError(f"{where}: a multipoint group needs one time, got {sorted(times)}")
        fields = {
            "time": times.pop(),
            "longitudes": [row.get("longitude") for _, row in members],
            "latitudes": [row.get("latitude") for _, row in members],
            "altitudes": [row.get("altitude") for _, row in members],
        }
        yield _validate(MultiPointReceptor, fields, where)


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
