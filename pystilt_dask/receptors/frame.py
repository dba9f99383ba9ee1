"""Receptors as columns: a receptor table read, checked and given ids without a Python loop.

:func:`~.table.receptor_frame` turns a table into a :class:`ReceptorFrame` (one
Arrow row per receptor, in the order of its first row) from the parts here, with
the ids and numbers of :mod:`.models`, byte for byte. Rows whose cells the array
checks cannot vouch for (a missing or out-of-range value, text that is not a
plain number or a common time layout, a multipoint group) go through the
receptor models one by one, in row order, so a bad row is named with exactly the
message a model gives, and the first bad row is the one named.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ReceptorError
from .columns import canonical_codes, canonical_numbers, time_ids
from .models import (
    ColumnReceptor,
    MultiPointReceptor,
    PointReceptor,
    Receptor,
    parse_time,
)

FLOATS = ("longitude", "latitude", "altitude", "bottom", "top")
LISTS = ("longitudes", "latitudes", "altitudes")
_KINDS = {"point": PointReceptor, "column": ColumnReceptor, "multipoint": MultiPointReceptor}

#: The columns of a :class:`ReceptorFrame`.
SCHEMA = pa.schema(
    [
        ("sim_id", pa.string()),
        ("legacy_id", pa.string()),
        ("kind", pa.string()),
        ("time", pa.timestamp("us")),
        *[(name, pa.float64()) for name in FLOATS],
        *[(name, pa.list_(pa.float64())) for name in LISTS],
        ("altitude_ref", pa.string()),
        ("sounding_id", pa.string()),
    ]
)

#: Text the array path reads as a number; anything else goes through the models.
_NUMBER = r"^[+-]?(?:[0-9]{1,20}(?:\.[0-9]{0,30})?|\.[0-9]{1,30})(?:[eE][+-]?[0-9]{1,2})?$"
#: Time layouts the array path reads, each with the format it is read with.
_TIME_LAYOUTS = (
    (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2})?Z?$", "ISO8601"),
    (r"^[0-9]{10}$", "%Y%m%d%H"),
    (r"^[0-9]{12}$", "%Y%m%d%H%M"),
    (r"^[0-9]{14}$", "%Y%m%d%H%M%S"),
)


@dataclass(frozen=True)
class ReceptorFrame:
    """Receptors as one Arrow table, one row each (see :data:`SCHEMA`).

    Receptor objects are built only when asked for (:meth:`receptors`).

    Attributes
    ----------
    table : pyarrow.Table
        ``sim_id``, ``legacy_id`` (the id registries written before ids carried
        seconds or a column's extent may hold it under, else null), ``kind``,
        ``time`` (naive UTC), the numbers as the ids print them, the point
        lists of multipoint receptors, ``altitude_ref`` (``agl`` or ``msl``) and
        ``sounding_id`` (null when none).
    unique : bool
        Whether no id appears twice (true of what :func:`~.table.receptor_frame` returns).
    """

    table: pa.Table
    unique: bool = False

    def __len__(self) -> int:
        return self.table.num_rows

    @property
    def sim_ids(self) -> list[str]:
        """The simulation ids, in order."""
        return self.table["sim_id"].to_pylist()

    def receptor(self, index: int) -> Receptor:
        """The receptor of row ``index``, as a model object."""
        return _build(self.table.slice(index, 1).to_pylist()[0])

    def receptors(self) -> list[Receptor]:
        """Every receptor, as model objects."""
        return [_build(row) for row in self.table.to_pylist()]

    def take(self, indices: Sequence[int] | np.ndarray) -> ReceptorFrame:
        """The receptors at ``indices``, in that order."""
        return ReceptorFrame(self.table.take(pa.array(np.asarray(indices, dtype=np.int64))))

    def max_heights(self) -> np.ndarray:
        """The highest release point of each receptor, in metres above ground."""
        kind = self.table["kind"]
        heights = _floats(self.table["altitude"])
        heights = np.where(_is(kind, "column"), _floats(self.table["top"]), heights)
        multi = np.flatnonzero(_is(kind, "multipoint"))
        if len(multi):
            lists = self.table["altitudes"].take(pa.array(multi)).to_pylist()
            heights[multi] = [max(values) for values in lists]
        return heights

    @classmethod
    def from_receptors(cls, receptors: Iterable[Receptor]) -> ReceptorFrame:
        """The frame of receptor objects (their ids as they answer them)."""
        rows = []
        for receptor in receptors:
            fields = receptor.model_dump()
            rows.append(
                {
                    "sim_id": receptor.sim_id,
                    "legacy_id": receptor.legacy_sim_id,
                    "kind": fields["kind"],
                    "time": fields["time"],
                    **{name: fields.get(name) for name in FLOATS},
                    **{name: list(fields[name]) if name in fields else None for name in LISTS},
                    "altitude_ref": receptor.altitude_ref,
                    "sounding_id": receptor.sounding_id,
                }
            )
        return cls(pa.Table.from_pylist(rows, schema=SCHEMA))


def as_frame(receptors: ReceptorFrame | Iterable[Receptor]) -> ReceptorFrame:
    """``receptors`` as a frame (receptor objects are converted)."""
    if isinstance(receptors, ReceptorFrame):
        return receptors
    return ReceptorFrame.from_receptors(receptors)


def _build(row: dict[str, Any]) -> Receptor:
    kind = row["kind"]
    fields: dict[str, Any] = {"time": row["time"], "sounding_id": row.get("sounding_id")}
    fields["altitude_ref"] = row.get("altitude_ref") or "agl"
    if kind == "multipoint":
        fields.update({name: row[name] for name in LISTS})
    else:
        names = ("longitude", "latitude", "bottom", "top") if kind == "column" else (
            "longitude", "latitude", "altitude")  # fmt: skip
        fields.update({name: row[name] for name in names})
    built = _KINDS[kind].model_validate(fields)
    if built.sim_id != row["sim_id"]:
        built = built.registered_as(row["sim_id"])
    return built  # type: ignore[return-value]


def _is(column: pa.ChunkedArray | pa.Array, value: str) -> np.ndarray:
    """Where the text ``column`` is ``value``, as booleans (no Python string per row)."""
    return pc.fill_null(pc.equal(column, value), False).to_numpy(zero_copy_only=False)


def _floats(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return pc.fill_null(column, np.nan).to_numpy()


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
ALIASES = {
    "time": ("time",),
    "longitude": ("longitude", "long", "lon"),
    "latitude": ("latitude", "lati", "lat"),
    "altitude": ("altitude", "zagl", "z"),
    "bottom": ("bottom",),
    "top": ("top",),
    "group": ("group",),
    "altitude_ref": ("altitude_ref", "height_ref"),
    "sounding_id": ("sounding_id",),
}


def canonical_table(table: pd.DataFrame, source: str) -> pd.DataFrame:
    """``table`` with its columns renamed to the field names (``lon`` → ``longitude``, …).

    Raises
    ------
    ReceptorError
        When two columns mean one field, or ``time`` is missing.
    """
    mapping = {}
    for canonical, aliases in ALIASES.items():
        present = [c for c in table.columns if str(c).strip().lower() in aliases]
        if len(present) > 1:
            raise ReceptorError(f"{source}: columns {present} all mean {canonical!r}; keep one")
        if present:
            mapping[present[0]] = canonical
    table = table.rename(columns=mapping)
    if "time" not in table.columns:
        raise ReceptorError(f"{source}: missing column 'time'")
    return table


def _single_receptors(
    rows: np.ndarray, column: np.ndarray, times: np.ndarray, numbers: dict[str, np.ndarray]
) -> tuple[pa.Table, np.ndarray]:
    """The point and column receptors of ``rows``, each once; and which rows repeat one.

    A point's or column's id prints its time and every number as the receptor
    keeps them, so equal ids are equal receptors: receptors are told apart by the
    codes of their kept values, and ids are written for the distinct ones only.
    """
    column, times = _at(column, rows), _at(times, rows)
    n = len(rows)
    kept, codes, texts = {}, {}, {}
    for name in FLOATS:
        if _held(name, column):
            kept[name], codes[name], texts[name] = canonical_codes(
                _at(numbers[name], rows), longitude=name == "longitude"
            )
        else:  # every row holds the placeholder 0
            kept[name], codes[name], texts[name] = np.zeros(n), np.zeros(n, int), pa.array(["0"])
    seconds = times.astype(np.int64)
    since = seconds - (seconds.min() if len(seconds) else 0)  # digits are never negative
    key = _row_key([since, column.astype(np.int64), *codes.values()])
    repeated = pd.Series(key).duplicated().to_numpy()
    first = np.flatnonzero(~repeated)
    column, times = _at(column, first), _at(times, first)
    # Texts of the fields some id prints: a column's extent only where there are columns.
    printed = [name for name in FLOATS if name == "altitude" or _held(name, column)]
    text = {name: texts[name].take(pa.array(_at(codes[name], first))) for name in printed}
    kept = {name: _at(values, first) for name, values in kept.items()}
    return _ids_table(column, times, kept, text), repeated


def _held(name: str, column: np.ndarray) -> bool:
    """Whether some receptor has field ``name`` (``column``: which are columns)."""
    if name in ("bottom", "top"):
        return bool(column.any())
    return name != "altitude" or not column.all()


def _at(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``values[positions]`` for ascending distinct ``positions``; no copy when they are all."""
    return values if len(positions) == len(values) else values[positions]


def _row_key(parts: list[np.ndarray]) -> np.ndarray:
    """One integer per row, equal exactly where every one of ``parts`` (codes ``>= 0``) is equal.

    The parts are digits of one mixed-radix number; when the next digit would
    overflow 64 bits the number so far is renumbered densely first, so a table
    of a million distinct receptors needs one hash pass (to find repeats), not
    one per part.
    """
    key = np.zeros(len(parts[0]), dtype=np.int64)
    size = 1
    for part in parts:
        radix = int(part.max(initial=0)) + 1
        if size * radix >= 2**63:
            key, distinct = pd.factorize(key)
            size = len(distinct)
        key = key * radix + part
        size *= radix
    return key


def _ids_table(
    column: np.ndarray, times: np.ndarray, kept: dict[str, np.ndarray], text: dict[str, pa.Array]
) -> pa.Table:
    """Point and column receptors with their ids, from their kept values and texts."""
    n = len(column)
    # Each distinct time formatted once; ids to the minute taken only where some id needs them.
    codes, distinct = pd.factorize(np.asarray(times, dtype="datetime64[s]").astype(np.int64))
    stamps, minute_stamps, seconds = time_ids(distinct.astype("datetime64[s]"))
    take = pa.array(codes)
    time_id, has_seconds = stamps.take(take), seconds[codes]
    if has_seconds.any() or column.any():
        minute_id = minute_stamps.take(take)
    # Each id joined in one pass over its parts: a million strings per pass.
    place = (text["longitude"], text["latitude"])
    sim_id = pc.binary_join_element_wise(time_id, *place, text["altitude"], "_")
    legacy = pa.nulls(n, pa.string())
    if has_seconds.any():
        minute_point = pc.binary_join_element_wise(minute_id, *place, text["altitude"], "_")
        legacy = pc.if_else(pa.array(has_seconds), minute_point, legacy)
    is_column = pa.array(column)
    if column.any():
        extent = pc.binary_join_element_wise(text["bottom"], text["top"], "-")
        at = pc.binary_join_element_wise(time_id, *place, "_")
        sim_id = pc.if_else(is_column, pc.binary_join_element_wise(at, extent, "_X"), sim_id)
        minute_column = pc.binary_join_element_wise(minute_id, *place, "X", "_")
        legacy = pc.if_else(is_column, minute_column, legacy)
    absent = {"altitude": column, "bottom": ~column, "top": ~column}
    return pa.table(
        {
            "sim_id": sim_id,
            "legacy_id": legacy,
            "kind": pc.if_else(is_column, "column", "point"),
            "time": pa.array(times.astype("datetime64[us]")),
            "longitude": kept["longitude"],
            "latitude": kept["latitude"],
            **{name: pa.array(kept[name], mask=absent[name]) for name in absent},
            **{name: pa.nulls(n, pa.list_(pa.float64())) for name in LISTS},
            "altitude_ref": pa.repeat(pa.scalar("agl"), n),
            "sounding_id": pa.nulls(n, pa.string()),
        },
        schema=SCHEMA,
    )


def _multipoints(groups: dict[int, tuple[list[int], Receptor]], source: str) -> tuple[dict, int]:
    """Multipoint receptors each once (with their first rows), and how many rows repeat one.

    A multipoint's id hashes its rounded points, so receptors sharing one are compared.
    """
    unique: dict[str, tuple[list[int], Receptor]] = {}
    firsts, receptors, repeated_rows = [], [], 0
    for first, (rows, receptor) in groups.items():
        earlier = unique.setdefault(receptor.sim_id, (rows, receptor))
        if earlier[1] is receptor:
            firsts.append(first)
            receptors.append(receptor)
        elif earlier[1] != receptor:
            raise ReceptorError(
                f"{source} {_rows(earlier[0])} and {_rows(rows)} are different receptors with "
                f"one simulation id {receptor.sim_id}; keep one"
            )
        else:
            repeated_rows += len(rows)
    return {"firsts": np.asarray(firsts, dtype=np.int64), "receptors": receptors}, repeated_rows


def first_occurrences(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Mask of the elements whose value has not appeared before them."""
    codes = pc.dictionary_encode(values).combine_chunks().indices.to_numpy(zero_copy_only=False)
    # Codes are handed out in order of first appearance.
    seen = np.maximum.accumulate(np.concatenate([[-1], codes[:-1]]))
    return codes > seen


def _rows(numbers: list[int]) -> str:
    return f"row {numbers[0]}" if len(numbers) == 1 else f"rows {', '.join(map(str, numbers))}"


def _cells(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """``(column, times, numbers, suspect)``: each row read as a point or column receptor.

    ``suspect`` marks the rows the checks cannot vouch for; their values (and
    absent fields) are placeholders, and the models decide those rows.
    """
    n = len(table)
    suspect = np.zeros(n, dtype=bool)
    raw, missing = {}, {}
    for name in FLOATS:
        if name in table.columns:
            raw[name], missing[name], bad = _numbers(table[name])
            suspect |= bad
        else:
            raw[name], missing[name] = np.full(n, np.nan), np.ones(n, dtype=bool)
    times, bad = _times(table["time"])
    suspect |= bad
    column = ~missing["bottom"] | ~missing["top"]
    suspect |= missing["longitude"] | missing["latitude"]
    suspect |= np.where(column, ~missing["altitude"] | missing["bottom"] | missing["top"],
                        missing["altitude"])  # fmt: skip
    with np.errstate(invalid="ignore"):
        lon, lat = raw["longitude"], raw["latitude"]
        suspect |= ~((lon >= -360) & (lon <= 360)) & ~missing["longitude"]
        suspect |= ~((lat >= -90) & (lat <= 90)) & ~missing["latitude"]
        for name in ("altitude", "bottom", "top"):
            suspect |= ~((raw[name] >= 0) & np.isfinite(raw[name])) & ~missing[name]
    # The model compares a column's kept heights.
    bottom, top = (canonical_numbers(raw[h][column]) for h in ("bottom", "top"))
    suspect[column] |= ~(top > bottom)
    numbers = {name: _placeheld(raw[name], suspect | missing[name]) for name in FLOATS}
    return column, np.where(suspect, np.datetime64(0, "s"), times), numbers, suspect


def _placeheld(values: np.ndarray, unknown: np.ndarray) -> np.ndarray:
    """``values`` with ``0`` where ``unknown`` (a copy only where some are)."""
    if unknown.all():
        return np.zeros(len(values))
    return np.where(unknown, 0.0, values) if unknown.any() else values


def _numbers(column: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(values, missing, suspect)`` of one numeric field's cells."""
    missing = column.isna().to_numpy()
    n = len(column)
    if pd.api.types.is_bool_dtype(column.dtype):
        return np.full(n, np.nan), missing, ~missing
    if pd.api.types.is_numeric_dtype(column.dtype):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        return values, missing, np.zeros(n, dtype=bool)
    try:
        array = pa.array(column, from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError):
        return np.full(n, np.nan), missing, ~missing
    if pa.types.is_floating(array.type) or pa.types.is_integer(array.type):
        return _floats(array.cast(pa.float64())), missing, np.zeros(n, dtype=bool)
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        return np.full(n, np.nan), missing, ~missing
    # Each distinct text is checked and read once (tables repeat their sites and heights):
    # a sixth of the time of checking every cell at 10^6 rows.
    encoded = pc.dictionary_encode(array)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    texts = encoded.dictionary
    plain = pc.fill_null(pc.match_substring_regex(texts, _NUMBER), False)
    plain = plain.to_numpy(zero_copy_only=False)
    numbers = pc.if_else(pa.array(plain), texts, pa.nulls(len(texts), texts.type))
    codes = pc.fill_null(encoded.indices, len(texts)).to_numpy()  # a missing cell: the last
    values = np.append(_floats(numbers.cast(pa.float64())), np.nan)[codes]
    return values, missing, np.append(~plain, False)[codes]


def _times(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(times as datetime64[s], suspect)`` of the time cells; suspect times are placeholders."""
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        column = column.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(column.dtype):
        stamps = column.to_numpy(dtype="datetime64[ns]")
        whole = stamps.astype("datetime64[s]")
        suspect = np.isnat(stamps) | (whole != stamps)
        return np.where(suspect, np.datetime64(0, "s"), whole), suspect
    codes, uniques = pd.factorize(column)
    parsed, bad = _parse_unique(np.asarray(uniques, dtype=object))
    parsed = np.append(parsed, np.datetime64(0, "s"))  # code -1: a missing cell
    bad = np.append(bad, True)
    return parsed[codes], bad[codes]


def _parse_unique(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct time cells parsed as :func:`~.models.parse_time` does; ``bad`` where it refuses."""
    out = np.zeros(len(values), dtype="datetime64[s]")
    bad = np.zeros(len(values), dtype=bool)
    texts = np.array([isinstance(v, str) for v in values], dtype=bool)
    done = np.zeros(len(values), dtype=bool)
    if texts.any():
        strings = pa.array(values[texts].tolist(), pa.string())
        where = np.flatnonzero(texts)
        for pattern, layout in _TIME_LAYOUTS:
            match = pc.match_substring_regex(strings, pattern).to_numpy(zero_copy_only=False)
            match &= ~done[where]
            if not match.any():
                continue
            chosen = pd.Series(values[where[match]]).str.removesuffix("Z")
            stamps = pd.to_datetime(chosen, format=layout, errors="coerce").to_numpy(
                dtype="datetime64[s]"
            )
            ok = ~np.isnat(stamps)
            out[where[match][ok]] = stamps[ok]
            done[where[match][ok]] = True
    for i in np.flatnonzero(~done):
        try:
            out[i] = np.datetime64(parse_time(values[i]), "s")
        except ValueError:
            bad[i] = True
    return out, bad
