"""Receptor tables: rows read as the user meant them, repeated receptors merged.

Tables are read as columns (:mod:`.frame`); the functions here are the
one-row-at-a-time path through the receptor models, which decides the rows the
column checks cannot vouch for and names a bad row and field.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import ValidationError

from ..errors import ReceptorError
from .frame import (
    FLOATS,
    ReceptorFrame,
    ReceptorsMerged,
    _cells,
    _multipoints,
    _single_receptors,
    canonical_table,
)
from .models import (
    ColumnReceptor,
    MultiPointReceptor,
    PointReceptor,
    Receptor,
    _Receptor,
    parse_time,
)

__all__ = [
    "ReceptorsMerged",
    "read_receptor_frame",
    "read_receptors",
    "receptor_frame",
    "receptor_rows",
]


def read_receptors(path: str | Path, storage_options: dict | None = None) -> list[Receptor]:
    """Read a receptor table (CSV or Parquet; local path or fsspec URL) as receptor objects.

    See :func:`read_receptor_frame`, which reads it as columns without building them.
    """
    return read_receptor_frame(path, storage_options).receptors()


def read_receptor_frame(path: str | Path, storage_options: dict | None = None) -> ReceptorFrame:
    """Read a receptor table (CSV or Parquet; local path or fsspec URL) as a frame.

    Columns, in any case: ``time``, ``longitude`` (or ``long``/``lon``),
    ``latitude`` (or ``lati``/``lat``) and either ``altitude`` (or ``zagl``/``z``)
    for points or ``bottom`` and ``top`` for columns. Rows sharing a value in an
    optional ``group`` column form one :class:`MultiPointReceptor`. Times are read
    by :func:`parse_time`.

    Returns
    -------
    ReceptorFrame
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
            # Arrow's reader: five times pandas' on text columns, with pandas' missing values.
            table = pd.read_csv(path, storage_options=storage_options, dtype=str, engine="pyarrow")
    except FileNotFoundError:
        raise ReceptorError(f"receptor table {path} does not exist") from None
    return receptor_frame(table, source=path)


def receptor_frame(table: pd.DataFrame, source: str = "table") -> ReceptorFrame:
    """Read a receptor table (columns as :func:`~.table.read_receptors` takes them) as a frame.

    Each receptor once, in the order of its first row; rows repeating an earlier
    row's receptor are merged into it, said by one :class:`ReceptorsMerged` warning.

    Raises
    ------
    ReceptorError
        Naming the first bad row (1-based, as in a spreadsheet after the header) and field.
    """
    table = canonical_table(table, source).reset_index(drop=True)
    n = len(table)
    grouped = np.zeros(n, dtype=bool)
    members: dict[int, list[int]] = {}
    if "group" in table.columns:
        codes, _ = pd.factorize(table["group"], use_na_sentinel=False)
        grouped = np.bincount(codes)[codes] > 1
        for position in np.flatnonzero(grouped):
            members.setdefault(int(codes[position]), []).append(int(position))
    column, times, numbers, suspect = _cells(table)
    # One by one, in the order of each receptor's first row: the first bad one raises.
    units = [(int(p), [int(p)]) for p in np.flatnonzero(suspect & ~grouped)]
    units += [(positions[0], positions) for positions in members.values()]
    groups: dict[int, tuple[list[int], Receptor]] = {}
    for first, positions in sorted(units):
        rows = [p + 1 for p in positions]
        records = table.iloc[positions].to_dict(orient="records")
        if len(positions) > 1:
            groups[first] = (rows, group_receptor(rows, records, source))
            continue
        single = row_receptor(rows[0], records[0], source)
        column[first] = single.kind == "column"
        times[first] = np.datetime64(single.time, "s")
        for name, value in single.model_dump(include=set(FLOATS)).items():
            numbers[name][first] = value
    singles = np.flatnonzero(~grouped)
    frame, repeated = _single_receptors(singles, column, times, numbers)
    multi, repeated_rows = _multipoints(groups, source)
    firsts = np.concatenate([singles[~repeated], multi.pop("firsts")])
    parts = [frame, ReceptorFrame.from_receptors(multi["receptors"]).table]
    merged = pa.concat_tables(parts).take(pa.array(np.argsort(firsts, kind="stable")))
    count = int(repeated.sum()) + repeated_rows
    if count:
        warnings.warn(ReceptorsMerged(count, source), stacklevel=3)
    return ReceptorFrame(merged, unique=True)


def receptors_from_frame(table: pd.DataFrame, source: str = "table") -> list[Receptor]:
    """Build receptors from a DataFrame with the columns :func:`read_receptors` accepts.

    Repeated receptors are merged as :func:`read_receptors` does.
    """
    return receptor_frame(table, source).receptors()


def receptor_rows(table: pd.DataFrame, source: str = "table") -> list[tuple[list[int], Receptor]]:
    """Each row's (or multipoint group's) receptor with its row numbers, nothing merged."""
    table = canonical_table(table, source)
    rows = table.to_dict(orient="records")
    if "group" in table.columns:
        return list(_grouped(rows, source))
    return [([i], row_receptor(i, row, source)) for i, row in enumerate(rows, start=1)]


def _rows(numbers: list[int]) -> str:
    return f"row {numbers[0]}" if len(numbers) == 1 else f"rows {', '.join(map(str, numbers))}"


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not _missing(v)}


def _missing(value: Any) -> bool:
    # value != value: NaN, without pd.isna's cost on every cell of a large table.
    return value is None or value is pd.NA or value is pd.NaT or value != value


def row_receptor(index: int, row: dict[str, Any], source: str) -> Receptor:
    """The receptor of one table row (``index``: its 1-based number, for messages)."""
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
        groups.setdefault(row["group"], []).append((i, row))
    for members in groups.values():
        numbers = [i for i, _ in members]
        if len(members) == 1:
            yield numbers, row_receptor(numbers[0], members[0][1], source)
        else:
            yield numbers, group_receptor(numbers, [row for _, row in members], source)


def group_receptor(numbers: list[int], rows: list[dict[str, Any]], source: str) -> Receptor:
    """The multipoint receptor of a group's rows (``numbers``: theirs, 1-based)."""
    rows = [_clean(row) for row in rows]
    where = f"{source} {_rows(numbers)}"
    if any("bottom" in row or "top" in row for row in rows):
        raise ReceptorError(f"{where}: a multipoint group's rows need altitude, not bottom/top")
    try:
        times = {parse_time(row.get("time")) for row in rows}
    except ValueError:
        times = {row.get("time") for row in rows}
    if len(times) != 1:
        shown = sorted(str(t) for t in times)
        raise ReceptorError(f"{where}: a multipoint group needs one time, got {shown}")
    fields = {
        "time": rows[0].get("time"),
        "longitudes": [row.get("longitude") for row in rows],
        "latitudes": [row.get("latitude") for row in rows],
        "altitudes": [row.get("altitude") for row in rows],
    }
    return _validate(MultiPointReceptor, fields, where)


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
