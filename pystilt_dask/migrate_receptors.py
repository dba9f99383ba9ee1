"""A PYSTILT receptor table (``receptors.csv``) rewritten as ours.

PYSTILT's table has one row per release point. Rows sharing an ``r_idx`` (compared
as text) are one receptor: a group of two rows at one horizontal location is a
column from the lower to the higher altitude (the rows in either order), any other
group of two or more rows a multipoint receptor with its points in table order, and
a row of its own a point. Without ``r_idx`` every row is a point. Our table says
the same with one row per column (``bottom``, ``top``) and a ``group`` shared by a
multipoint's rows (:func:`pystilt_dask.receptors.read_receptors`); PYSTILT's
``r_idx`` is kept beside it for reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd

from .errors import ConfigError, ReceptorError
from .receptors import Receptor, parse_time, receptor_rows
from .store.paths import Location

#: PYSTILT's spellings of each column, in any case; the first matching column counts.
PYSTILT_COLUMNS = {
    "r_idx": ("r_idx",),
    "time": ("time",),
    "longitude": ("longitude", "long", "lon"),
    "latitude": ("latitude", "lati", "lat"),
    "altitude": ("altitude", "zagl", "zmsl", "z"),
    "altitude_ref": ("altitude_ref", "height_ref"),
}

#: The columns of the table written here.
COLUMNS = (
    "r_idx", "group", "time", "longitude", "latitude", "altitude", "bottom", "top", "altitude_ref"
)  # fmt: skip


def migrate_receptors(source: str | Path, target: str | Path) -> list[Receptor]:
    """Write PYSTILT's receptor table ``source`` as our table ``target``.

    The file is written atomically, and only when its contents change.

    Parameters
    ----------
    source : str or pathlib.Path
        A PYSTILT ``receptors.csv``.
    target : str or pathlib.Path
        Where to write ours (CSV).

    Returns
    -------
    list of Receptor
        The receptors PYSTILT builds from ``source``, in its order, as ours reads
        them from ``target``; a receptor listed twice appears once, as in PYSTILT.

    Raises
    ------
    ConfigError
        For a table PYSTILT refuses, naming the ``r_idx`` or row at fault.
        Heights above sea level (``zmsl``, ``altitude_ref: msl``) become
        receptors with ``altitude_ref: msl``.
    """
    source, target = Path(source), Path(target)
    try:
        raw = pd.read_csv(source, dtype=str)
    except (OSError, pd.errors.ParserError) as exc:
        _refuse(source, f"cannot be read ({exc})")
    table = _translate(raw, source)
    try:
        receptors = [receptor for _, receptor in receptor_rows(table, source=str(source))]
    except ReceptorError as exc:  # names a row of the table written, not of PYSTILT's
        _refuse(source, f"rewritten for pystilt_dask, {str(exc).removeprefix(f'{source} ')}")
    table = _drop_repeated(table, receptors, source)
    text = table.to_csv(index=False, columns=list(COLUMNS), lineterminator="\n")
    if not target.is_file() or target.read_text() != text:
        Location(str(target.parent)).write_bytes(target.name, text.encode())
    return list({r.sim_id: r for r in receptors}.values())


def _refuse(source: Path, message: str) -> NoReturn:
    raise ConfigError(f"PYSTILT receptors {source}: {message}") from None


def _translate(raw: pd.DataFrame, source: Path) -> pd.DataFrame:
    spelling = {
        field: next((c for c in raw.columns if str(c).lower() in aliases), None)
        for field, aliases in PYSTILT_COLUMNS.items()
    }
    missing = [f for f in ("time", "longitude", "latitude", "altitude") if spelling[f] is None]
    if missing:
        _refuse(source, f"no column for {missing}")
    if spelling["altitude_ref"] is not None:
        reference = raw[spelling["altitude_ref"]].astype(str).str.lower()
    else:
        implied = "msl" if str(spelling["altitude"]).lower() == "zmsl" else "agl"
        reference = pd.Series(implied, index=raw.index)
    keys = (
        raw[spelling["r_idx"]].astype(str)
        if spelling["r_idx"] is not None
        else pd.Series(np.arange(len(raw)).astype(str), index=raw.index)
    )

    def refuse(bad: np.ndarray, message: str) -> None:
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            where = f"r_idx={keys.iloc[row]}" if spelling["r_idx"] else f"row {row + 1}"
            _refuse(source, f"{where}: {message}")

    refuse(~reference.isin(("agl", "msl")).to_numpy(), "altitude_ref must be 'agl' or 'msl'")
    try:
        lon, lat, alt = (
            raw[spelling[f]].astype(float) for f in ("longitude", "latitude", "altitude")
        )
    except (ValueError, TypeError) as exc:
        _refuse(source, str(exc))
    times = []
    for value in raw[spelling["time"]]:
        try:
            times.append(parse_time(value))
        except ValueError as exc:
            refuse(np.arange(len(raw)) == len(times), f"time {value!r}: {exc}")
    time = pd.Series(pd.to_datetime(times), index=raw.index)
    refuse(~lon.between(-180, 180).to_numpy(), "longitude must be within [-180, 180]")
    refuse(~lat.between(-90, 90).to_numpy(), "latitude must be within [-90, 90]")
    msl = (reference == "msl").to_numpy()
    refuse(~msl & ~(alt >= 0).to_numpy(), "heights above ground must be >= 0")
    refuse(msl & ~(alt >= -500).to_numpy(), "heights above sea level must be >= -500 m")

    codes, _ = pd.factorize(keys)
    rows = pd.DataFrame(
        {"code": codes, "time": time, "lon": lon, "lat": lat, "alt": alt, "ref": reference}
    )
    groups = rows.groupby("code", sort=False)
    size = groups["code"].transform("size").to_numpy()
    refuse(groups["time"].transform("nunique").to_numpy() > 1, "rows of one receptor need one time")
    refuse(
        groups["ref"].transform("nunique").to_numpy() > 1,
        "rows of one receptor need one altitude_ref",
    )
    one_place = (groups["lon"].transform("nunique") == 1) & (
        groups["lat"].transform("nunique") == 1
    )
    column = (size == 2) & one_place.to_numpy()
    multipoint = (size > 1) & ~column
    bottom, top = groups["alt"].transform("min"), groups["alt"].transform("max")
    refuse(column & (bottom == top).to_numpy(), "a column's two heights must differ")
    # HYSPLIT joins release points at one location into a line source.
    place = pd.DataFrame({"code": codes, "lon": lon.round(5), "lat": lat.round(5)})
    refuse(
        multipoint & place.duplicated().to_numpy(),
        "a multipoint receptor's points need distinct horizontal locations",
    )

    table = pd.DataFrame(
        {
            "r_idx": keys if spelling["r_idx"] is not None else None,
            "group": codes,
            "time": time.dt.strftime("%Y-%m-%d %H:%M:%S"),
            "longitude": lon,
            "latitude": lat,
            "altitude": alt.where(~column),
            "bottom": bottom.where(column),
            "top": top.where(column),
            "altitude_ref": reference.to_numpy(),
        }
    )
    # A column is one row of ours: its first.
    return table[~(column & pd.Series(codes).duplicated().to_numpy())].reset_index(drop=True)


def _drop_repeated(table: pd.DataFrame, receptors: list[Receptor], source: Path) -> pd.DataFrame:
    """Drop a receptor listed again; refuse two receptors that share one id here."""
    seen: dict[str, Receptor] = {}
    for receptor in receptors:
        other = seen.setdefault(receptor.sim_id, receptor)
        if other != receptor:
            _refuse(
                source,
                f"two receptors become one simulation {receptor.sim_id}: "
                f"{other.describe()} and {receptor.describe()}; keep one of them",
            )
    first = {sim_id: i for i, sim_id in reversed(list(enumerate(r.sim_id for r in receptors)))}
    kept = sorted(first.values())
    # Receptors come in the order of their groups' first rows, numbered 0, 1, ...
    return table[table["group"].isin(pd.unique(table["group"])[kept])]
