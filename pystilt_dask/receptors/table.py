"""Receptor tables: rows read as the user meant them, repeated receptors merged.

Tables are read as columns (:mod:`.frame`); the functions here are the
one-row-at-a-time path through the receptor models, which decides the rows the
column checks cannot vouch for and names a bad row and field.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from pydantic import ValidationError

from ..buffers import arrow_buffer
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
    MSL_MARK,
    ColumnReceptor,
    MultiPointReceptor,
    PointReceptor,
    Receptor,
    _Receptor,
    _sounding_text,
    parse_time,
)

__all__ = [
    "ReceptorsMerged",
    "read_receptor_frame",
    "read_receptors",
    "receptor_frame",
    "receptor_rows",
    "table_bytes",
]


def read_receptors(path: str | Path, storage_options: dict | None = None) -> list[Receptor]:
    """Read a receptor table (CSV or Parquet; local path or fsspec URL) as receptor objects.

    See :func:`read_receptor_frame`, which reads it as columns without building them.
    """
    return read_receptor_frame(path, storage_options).receptors()


def read_receptor_frame(
    path: str | Path, storage_options: dict | None = None, data: bytes | None = None
) -> ReceptorFrame:
    """Read a receptor table (CSV or Parquet; local path or fsspec URL) as a frame.

    Columns, in any case: ``time``, ``longitude`` (or ``long``/``lon``),
    ``latitude`` (or ``lati``/``lat``) and either ``altitude`` (or ``zagl``/``z``)
    for points or ``bottom`` and ``top`` for columns. Rows sharing a value in an
    optional ``group`` column form one :class:`MultiPointReceptor`. Times are read
    by :func:`parse_time`.

    Parameters
    ----------
    path : str or pathlib.Path
        The table; its suffix says how it is read (``.parquet``, else CSV).
    storage_options : dict, optional
        For fsspec, when ``path`` is a URL.
    data : bytes, optional
        The table's bytes (:func:`table_bytes`), when the caller has read them
        already: those are parsed, and ``path`` is not read again.

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
    if path.endswith(".parquet"):
        try:  # a Parquet dataset may be a folder of files: pandas reads it by its path
            source = path
            if data is not None:
                source = pa.BufferReader(arrow_buffer(data))
            table = pd.read_parquet(source, storage_options=None if data else storage_options)
        except FileNotFoundError:
            raise ReceptorError(f"receptor table {path} does not exist") from None
    else:
        table = _read_csv(data if data is not None else table_bytes(path, storage_options))
    return receptor_frame(table, source=path)


def table_bytes(path: str | Path, storage_options: dict | None = None) -> bytes:
    """The bytes of a receptor table (local path or fsspec URL).

    Raises
    ------
    ReceptorError
        When the table does not exist.
    """
    try:
        with fsspec.open(str(path), "rb", **(storage_options or {})) as f:
            return f.read()
    except FileNotFoundError:
        raise ReceptorError(f"receptor table {path} does not exist") from None


#: pandas' default missing values (``read_csv``'s ``na_values``): cells read as missing.
_MISSING = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
)  # fmt: skip
_CSV_CELLS = pacsv.ConvertOptions(
    null_values=list(_MISSING), strings_can_be_null=True, default_column_type=pa.large_string()
)


def _read_csv(data: bytes) -> pd.DataFrame:
    """A CSV table's cells as text, as ``pandas.read_csv(dtype=str, engine="pyarrow")`` reads them.

    Arrow's reader is what pandas runs; called directly it skips pandas' conversions
    after it (0.08 s of 0.17 s at 10^6 rows). Tables pandas reads otherwise (empty
    or repeated column names, which it renames, or text Arrow refuses, whose error
    pandas words) are read by pandas.
    """
    try:
        table = pacsv.read_csv(pa.py_buffer(data), convert_options=_CSV_CELLS)
    except pa.ArrowInvalid:
        table = None
    names = table.column_names if table is not None else []
    if table is None or "" in names or len(set(names)) < len(names):
        return pd.read_csv(io.BytesIO(data), dtype=str, engine="pyarrow")
    return table.to_pandas(types_mapper=_text)


def _text(kind: pa.DataType) -> pd.StringDtype | None:
    return pd.StringDtype(na_value=np.nan) if pa.types.is_large_string(kind) else None


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
    msl, bad_reference = _references(table)
    suspect |= bad_reference
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
        msl[first] = single.altitude_ref == "msl"
        times[first] = np.datetime64(single.time, "s")
        for name, value in single.model_dump(include=set(FLOATS)).items():
            numbers[name][first] = value
    parts, firsts, count = [], [], 0
    # Receptors above sea level apart: the same numbers are another receptor there.
    for above_sea in (False, True):
        singles = np.flatnonzero(~grouped & (msl == above_sea))
        if above_sea and not len(singles):
            continue
        frame, repeated = _single_receptors(singles, column, times, numbers)
        parts.append(_marked(frame) if above_sea else frame)
        firsts.append(singles[~repeated])
        count += int(repeated.sum())
    multi, repeated_rows = _multipoints(groups, source)
    firsts.append(multi.pop("firsts"))
    if multi["receptors"]:
        parts.append(ReceptorFrame.from_receptors(multi["receptors"]).table)
    firsts = np.concatenate(firsts)
    merged = pa.concat_tables(parts)
    if "sounding_id" in table.columns:  # each receptor's from its first row
        cells = table["sounding_id"].iloc[firsts].map(_sounding_text, na_action="ignore")
        at = merged.schema.get_field_index("sounding_id")
        merged = merged.set_column(
            at, "sounding_id", pa.array(cells.to_numpy(object), pa.string(), from_pandas=True)
        )
    if np.any(firsts[1:] < firsts[:-1]):
        merged = merged.take(pa.array(np.argsort(firsts, kind="stable")))
    elif any(column.num_chunks > 1 for column in merged.columns):
        merged = merged.combine_chunks()
    # else in row order in one piece already (a table of points alone): not copied, which
    # is 0.1 s of CPU at 10^6 receptors for a peak 10-40 MB higher.
    count += repeated_rows
    if count:
        warnings.warn(ReceptorsMerged(count, source), stacklevel=3)
    return ReceptorFrame(merged, unique=True)


def _references(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``(msl, suspect)`` of the ``altitude_ref`` cells (absent or empty: ``agl``)."""
    n = len(table)
    if "altitude_ref" not in table.columns:
        return np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    cells = table["altitude_ref"]
    text = cells.astype("string").str.strip().str.lower()
    msl = (text == "msl").fillna(False).to_numpy(dtype=bool)
    agl = (text == "agl").fillna(False).to_numpy(dtype=bool)
    return msl, ~(msl | agl | cells.isna().to_numpy())


def _marked(frame: pa.Table) -> pa.Table:
    """Point and column receptors of ``frame`` (written as AGL) as receptors above sea level."""
    n = frame.num_rows
    ids = pc.binary_join_element_wise(frame["sim_id"], MSL_MARK, "")
    frame = frame.set_column(0, "sim_id", ids)
    # No registry written before ids carried a column's extent held a receptor above sea level.
    frame = frame.set_column(1, "legacy_id", pa.nulls(n, pa.string()))
    at = frame.schema.get_field_index("altitude_ref")
    return frame.set_column(at, "altitude_ref", pa.repeat(pa.scalar("msl"), n))


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
    fields.update(_labels(row))
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
    references = {_labels(row).get("altitude_ref", "agl") for row in rows}
    if len(references) != 1:
        raise ReceptorError(
            f"{where}: a multipoint group needs one altitude_ref, got {sorted(references)}"
        )
    fields = {
        **_labels(rows[0]),
        "time": rows[0].get("time"),
        "longitudes": [row.get("longitude") for row in rows],
        "latitudes": [row.get("latitude") for row in rows],
        "altitudes": [row.get("altitude") for row in rows],
    }
    return _validate(MultiPointReceptor, fields, where)


def _labels(row: dict[str, Any]) -> dict[str, Any]:
    """A cleaned row's ``altitude_ref`` (as written, in any case) and ``sounding_id``."""
    labels = {k: row[k] for k in ("altitude_ref", "sounding_id") if k in row}
    if isinstance(labels.get("altitude_ref"), str):
        labels["altitude_ref"] = labels["altitude_ref"].strip().lower()
    return labels


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
