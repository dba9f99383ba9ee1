"""Receptor models, their simulation ids, and the times and numbers they keep."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

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
Height = Annotated[float, Field(allow_inf_nan=False), AfterValidator(canonical_number)]
#: What a receptor's heights are measured from: the ground or mean sea level (PYSTILT's names).
AltitudeRef = Literal["agl", "msl"]
#: The lowest height above sea level a receptor may have: the lowest land on Earth,
#: the Dead Sea shore, is at about -430 m.
LOWEST_MSL = -500.0
#: The end of the id of a receptor above sea level (PYSTILT's marker).
MSL_MARK = "msl"


def check_height(value: float, altitude_ref: str) -> float:
    """``value`` if it is a height a receptor of ``altitude_ref`` may have.

    Raises
    ------
    ValueError
        For a height below the ground (``agl``) or below :data:`LOWEST_MSL` (``msl``).
    """
    if altitude_ref == "msl":
        if value < LOWEST_MSL:
            raise ValueError(
                f"a height above sea level must be at least {LOWEST_MSL:g} m "
                "(the lowest land is the Dead Sea shore, about -430 m)"
            )
    elif value < 0:
        raise ValueError(
            "a height above ground must be at least 0; heights above sea level need "
            "altitude_ref 'msl'"
        )
    return value


def _sounding_text(value: Any) -> Any:
    """A sounding id as text: integer ids (OCO's 16 digits) as their digits."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        value = int(value)
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return str(int(value))
    return value


class _Receptor(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    time: UTCTime
    #: Whether heights are above ground (``agl``) or mean sea level (``msl``; HYSPLIT's
    #: ``KMSL=1`` for this simulation, and ``msl`` at the end of its id).
    altitude_ref: AltitudeRef = "agl"
    #: The sounding the receptor was made from (a label: not part of its identity).
    sounding_id: Annotated[str | None, BeforeValidator(_sounding_text)] = Field(
        default=None, repr=False
    )
    #: The id a registry holds this receptor under, when an older id scheme gave it
    #: another (set by :func:`pystilt_dask.store.registry.receptor`); not part of it.
    registered_id: str | None = Field(default=None, exclude=True, repr=False)

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # The defaults are left out, so an AGL receptor dumps (into messages, particle
        # files, netCDF attributes) exactly as it did before it had these fields.
        data = handler(self)
        if data.get("altitude_ref") == "agl":
            del data["altitude_ref"]
        if "sounding_id" in data and data["sounding_id"] is None:
            del data["sounding_id"]
        return data

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
        """The simulation id (the one it is registered under, when that differs).

        A receptor above sea level ends it with ``msl``.
        """
        if self.registered_id:
            return self.registered_id
        own = self._own_id(self.time_id)
        return own + MSL_MARK if self.altitude_ref == "msl" else own

    @property
    def legacy_sim_id(self) -> str | None:
        """The id registries written before this id scheme may hold it under, if another.

        Those ids stamped the time to the minute and a column's height as ``X``; they
        had no receptors above sea level.
        """
        if self.altitude_ref == "msl":
            return None
        legacy = self._legacy_id(self.time.strftime("%Y%m%d%H%M"))
        return legacy if legacy != self._own_id(self.time_id) else None

    def _own_id(self, time_id: str) -> str:
        raise NotImplementedError

    def _legacy_id(self, time_id: str) -> str:
        return self._own_id(time_id)

    def _identity(self) -> tuple:
        return tuple(self.model_dump(exclude={"sounding_id"}).values())

    def registered_as(self, sim_id: str) -> _Receptor:
        """This receptor, answering ``sim_id`` as its id: a registry entry under an older id."""
        return self.model_copy(update={"registered_id": sim_id})

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
        fields = self.model_dump(exclude={"kind", "sounding_id"})
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
        Height in metres above ground, or above sea level with ``altitude_ref="msl"``.
    altitude_ref : {"agl", "msl"}
        What ``altitude`` is measured from.
    sounding_id : str, optional
        The sounding it was made from; a label, not part of the receptor.
    """

    kind: Literal["point"] = "point"
    longitude: Longitude
    latitude: Latitude
    altitude: Height

    @field_validator("altitude")
    @classmethod
    def _height(cls, value: float, info: ValidationInfo) -> float:
        return check_height(value, info.data.get("altitude_ref", "agl"))

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
        Column bounds in metres above ground, or above sea level with ``altitude_ref="msl"``.
    altitude_ref : {"agl", "msl"}
        What ``bottom`` and ``top`` are measured from.
    sounding_id : str, optional
        The sounding it was made from; a label, not part of the receptor.
    """

    kind: Literal["column"] = "column"
    longitude: Longitude
    latitude: Latitude
    bottom: Height
    top: Height

    @field_validator("bottom", "top")
    @classmethod
    def _height(cls, value: float, info: ValidationInfo) -> float:
        return check_height(value, info.data.get("altitude_ref", "agl"))

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
        Release points; heights in metres above ground, or above sea level with
        ``altitude_ref="msl"`` (a slant line of sight).
    altitude_ref : {"agl", "msl"}
        What ``altitudes`` are measured from.
    sounding_id : str, optional
        The sounding it was made from; a label, not part of the receptor.
    """

    kind: Literal["multipoint"] = "multipoint"
    longitudes: tuple[Longitude, ...]
    latitudes: tuple[Latitude, ...]
    altitudes: tuple[Height, ...]

    @field_validator("altitudes")
    @classmethod
    def _heights(cls, values: tuple[float, ...], info: ValidationInfo) -> tuple[float, ...]:
        for value in values:
            check_height(value, info.data.get("altitude_ref", "agl"))
        return values

    @model_validator(mode="after")
    def _aligned(self) -> MultiPointReceptor:
        n = len(self.longitudes)
        if n < 2 or len(self.latitudes) != n or len(self.altitudes) != n:
            raise ValueError("longitudes, latitudes and altitudes need the same length, at least 2")
        return self

    def _points(self) -> list[tuple[float, float, float]]:
        return list(zip(self.longitudes, self.latitudes, self.altitudes, strict=True))

    def _identity(self) -> tuple:
        return (self.kind, self.time, self.altitude_ref, tuple(sorted(self._points())))

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
