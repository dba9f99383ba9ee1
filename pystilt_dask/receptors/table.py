"""Receptor tables: rows read as the user meant them, repeated receptors merged."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from ..errors import ReceptorError
from .models import (
    ColumnReceptor,
    MultiPointReceptor,
    PointReceptor,
    Receptor,
    _Receptor,
    parse_time,
)


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
    return {k: v for k, v in row.items() if not _missing(v)}


def _missing(value: Any) -> bool:
    # value != value: NaN, without pd.isna's cost on every cell of a large table.
    return value is None or value is pd.NA or value is pd.NaT or value != value


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
