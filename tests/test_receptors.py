"""Receptors: ids that name everything a run depends on, tables read as the user meant."""

from __future__ import annotations

import datetime as dt
import io
import warnings

import numpy as np
import pandas as pd
import pytest

from pystilt_dask.errors import ConfigError, ReceptorError
from pystilt_dask.migrate_receptors import migrate_receptors
from pystilt_dask.receptors import (
    ColumnReceptor,
    MultiPointReceptor,
    PointReceptor,
    ReceptorFrame,
    ReceptorsMerged,
    canonical_number,
    format_number,
    parse_time,
    read_receptor_frame,
    read_receptors,
    receptor_frame,
    receptor_rows,
    receptors_from_frame,
)
from pystilt_dask.receptors.columns import canonical_numbers, format_numbers

TEN = dt.datetime(2019, 5, 30, 10, 0)


def test_simulation_ids():
    point = PointReceptor(time="2015-12-10 00:00", longitude=-112, latitude=40.5, altitude=5)
    assert point.sim_id == "201512100000_-112_40.5_5"  # R-STILT's
    column = ColumnReceptor(
        time="2015-07-05 18:00", longitude=-111.9, latitude=40.7, bottom=0, top=1000
    )
    assert column.sim_id == "201507051800_-111.9_40.7_X0-1000"  # PYSTILT's
    assert column.legacy_sim_id == "201507051800_-111.9_40.7_X"
    assert column.release_points == [(40.7, -111.9, 0), (40.7, -111.9, 1000)]
    half = ColumnReceptor(time=TEN, longitude=-111.9, latitude=40.7, bottom=2.5, top=3000.25)
    assert half.sim_id.endswith("_X2.5-3000.25")


def test_seconds_are_in_the_id_and_fractions_refused():
    at = {"longitude": -111.9, "latitude": 40.7, "altitude": 5}
    assert PointReceptor(time="2019-05-30 10:00:45", **at).sim_id == "20190530100045_-111.9_40.7_5"
    assert PointReceptor(time="2019-05-30 10:00:00", **at).sim_id == "201905301000_-111.9_40.7_5"
    # Ids written before seconds were stamped, which a registry may hold.
    assert PointReceptor(time="2019-05-30 10:00:45", **at).legacy_sim_id == (
        "201905301000_-111.9_40.7_5"
    )
    assert PointReceptor(time="2019-05-30 10:00", **at).legacy_sim_id is None
    with pytest.raises(ValueError, match="fraction of a second"):
        PointReceptor(time="2019-05-30 10:00:00.5", **at)


@pytest.mark.parametrize(
    "written",
    [
        "2019-05-30 10:00", "2019-05-30T10:00", "2019-05-30T10:00:00Z", "2019-05-30T12:00+02:00",
        "2019-05-30T04:00-06:00", "2019-05-30 10:00 UTC", "05/30/2019 10:00", "2019/05/30 10:00",
        "20190530T1000", "2019053010", "201905301000", "20190530100000", 2019053010, 201905301000,
        2019053010.0, pd.Timestamp("2019-05-30 12:00", tz="Europe/Paris"), TEN,
    ],
)  # fmt: skip
def test_accepted_time_formats(written):
    assert parse_time(written) == TEN


@pytest.mark.parametrize(
    "written",
    ["30/05/2019 10:00", "now", "today", "yesterday", "1e5", "20190530100", 1559210400, True],
)
def test_refused_times(written):
    with pytest.raises(ValueError, match="not a time: write ISO 8601"):
        parse_time(written)


def test_integer_times_in_parquet_are_digits_never_an_epoch(tmp_path):
    frame = pd.DataFrame(
        {"time": [201905301000, 2019053011], "lon": [-111.8, -111.8], "lat": [40.7] * 2,
         "zagl": [5, 5]}
    )  # fmt: skip
    frame.to_parquet(tmp_path / "r.parquet")
    times = [r.time for r in read_receptors(tmp_path / "r.parquet")]
    assert times == [TEN, dt.datetime(2019, 5, 30, 11)]


def test_numbers_are_kept_as_the_id_prints_them():
    a = PointReceptor(time=TEN, longitude=-111.84800000000001, latitude=40.766, altitude=5.0)
    b = PointReceptor(time=TEN, longitude=248.152, latitude=40.766, altitude=5)
    c = PointReceptor(time=TEN, longitude=-111.848, latitude=40.766, altitude=5)
    assert a == b == c and a.longitude == b.longitude == -111.848
    assert a.sim_id == b.sim_id == "201905301000_-111.848_40.766_5"
    assert PointReceptor(time=TEN, longitude=-0.0, latitude=-0.0, altitude=0).sim_id == (
        "201905301000_0_0_0"
    )
    assert PointReceptor(time=TEN, longitude=180, latitude=0, altitude=0).longitude == -180


def test_multipoint_id_and_identity_are_order_independent():
    a = MultiPointReceptor(
        time=TEN, longitudes=[-111.8, -111.9], latitudes=[40.7, 40.8], altitudes=[5, 50]
    )
    b = MultiPointReceptor(
        time=TEN, longitudes=[-111.9, -111.8], latitudes=[40.8, 40.7], altitudes=[50, 5]
    )
    assert a.sim_id == b.sim_id and a.sim_id.startswith("201905301000_multi_")
    assert a == b


def test_read_table_with_aliases_columns_and_groups(tmp_path):
    path = tmp_path / "receptors.csv"
    path.write_text(
        "TIME,Lon,LAT,zagl,Bottom,TOP,Group\n"
        "2019-05-30 10:00,-111.848,40.766,5,,,a\n"
        "2019-05-30 10:00,-111.9,40.7,,0,1000,b\n"
        "2019-05-30 11:00,-111.8,40.7,5,,,c\n"
        "2019-05-30T11:00Z,-111.9,40.8,50,,,c\n"
    )
    point, column, multi = read_receptors(path)
    assert isinstance(point, PointReceptor) and point.altitude == 5
    assert isinstance(column, ColumnReceptor) and column.top == 1000
    assert isinstance(multi, MultiPointReceptor) and multi.altitudes == (5, 50)
    pd.DataFrame({"Time": ["2019-05-30 10:00"], "LONGITUDE": [-111.8], "Latitude": [40.7],
                  "altitude": [5.0]}).to_parquet(tmp_path / "r.parquet")  # fmt: skip
    assert read_receptors(tmp_path / "r.parquet")[0].latitude == 40.7


def test_repeated_receptors_merge_with_one_warning(tmp_path):
    path = tmp_path / "receptors.csv"
    path.write_text(
        "time,longitude,latitude,altitude\n"
        "2019-05-30 10:00,-111.848,40.766,5\n"
        "2019-05-30T12:00+02:00,-111.848,40.766,5\n"
        "201905301000,-111.84800000000001,40.766,5.0\n"
        "2019-05-30 10:00,248.152,40.766,5\n"
        "2019-05-30 11:00,-111.848,40.766,5\n"
    )
    with pytest.warns(ReceptorsMerged) as caught:
        receptors = read_receptors(path)
    assert [r.time.hour for r in receptors] == [10, 11]
    (warning,) = caught
    assert warning.message.count == 3
    assert str(warning.message) == (
        f"3 rows of {path} repeat another row's receptor and were merged"
    )
    one = pd.DataFrame(
        {"time": ["2019-05-30 10:00"] * 2, "lon": [1, 1], "lat": [2, 2], "z": [3, 3]}
    )
    with pytest.warns(ReceptorsMerged, match="^1 row of t repeats .* and was merged$"):
        assert len(receptors_from_frame(one, "t")) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(receptors_from_frame(one.iloc[:1], "t")) == 1  # nothing merged: no warning


def test_receptors_before_1970_are_told_apart_and_merged_like_any_other():
    table = pd.DataFrame(
        {
            "time": [
                "1960-01-01 00:00",
                "1960-01-01 00:00",
                "2020-01-01 00:00",
                "1969-12-31 23:00",
            ],
            "lon": [1, 1, 1, 1],
            "lat": [2, 2, 2, 2],
            "z": [5, 5, 5, 5],
        }
    )
    with pytest.warns(ReceptorsMerged, match="^1 row of t repeats"):
        frame = receptor_frame(table, "t")
    assert frame.sim_ids == ["196001010000_1_2_5", "202001010000_1_2_5", "196912312300_1_2_5"]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("yesterday,-111.8,40.7,5,,", r"row 2, field 'time': not a time.*\(got 'yesterday'\)"),
        ("30/05/2019 10:00,-111.8,40.7,5,,", r"row 2, field 'time': not a time"),
        ("2019-05-30 10:00,-111.8,95,5,,", r"row 2, field 'latitude'.*less than or equal to 90"),
        ("2019-05-30 10:00,-111.8,40.7,,,", r"row 2, field 'altitude': Field required"),
        (
            "2019-05-30 10:00,-111.8,40.7,5,0,3000",
            r"row 2: both altitude \(a point\) and bottom/top \(a column\) are given; keep one$",
        ),
    ],
)
def test_bad_rows_name_row_and_field(tmp_path, row, message):
    path = tmp_path / "receptors.csv"
    path.write_text(
        f"time,longitude,latitude,altitude,bottom,top\n2019-05-30 10:00,-111.8,40.7,5,,\n{row}\n"
    )
    with pytest.raises(ReceptorError, match=message):
        read_receptors(path)


def test_bad_multipoint_groups(tmp_path):
    path = tmp_path / "receptors.csv"
    path.write_text(
        "time,lon,lat,z,bottom,top,group\n"
        "2019-05-30 10:00,-111.8,40.7,5,,,g\n2019-05-30 10:00,-111.9,40.7,,0,100,g\n"
    )
    with pytest.raises(ReceptorError, match="rows 1, 2: a multipoint group's rows need altitude"):
        read_receptors(path)
    path.write_text(
        "time,lon,lat,z,group\n2019-05-30 10:00,-111.8,40.7,5,g\n2019-05-30 11:00,-111.9,40.7,5,g\n"
    )
    with pytest.raises(ReceptorError, match="rows 1, 2: a multipoint group needs one time"):
        read_receptors(path)


def test_different_multipoints_sharing_an_id_are_refused():
    frame = pd.DataFrame(
        {"time": ["2019-05-30 10:00"] * 4, "lon": [-111.8, -111.9, -111.8, -111.9000001],
         "lat": [40.7] * 4, "z": [5] * 4, "group": ["a", "a", "b", "b"]}
    )  # fmt: skip
    with pytest.raises(ReceptorError, match=r"t rows 1, 2 and rows 3, 4 are different receptors"):
        receptors_from_frame(frame, "t")


#: Ids PYSTILT 0.1.0a25 gives these receptors (``stilt.ColumnReceptor(...).id``), copied
#: here: importing ``stilt`` would replace our ``.stilt`` accessor for the whole session.
PYSTILT_IDS = [
    ({"longitude": -111.848, "latitude": 40.766, "altitude": 5.0},
     "201905301000_-111.848_40.766_5"),
    ({"longitude": -111.9, "latitude": 40.7, "bottom": 0, "top": 3000},
     "201905301000_-111.9_40.7_X0-3000"),
    ({"longitude": -111.848, "latitude": 40.766, "bottom": 2.5, "top": 3000.25},
     "201905301000_-111.848_40.766_X2.5-3000.25"),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "pystilt_id"), PYSTILT_IDS)
def test_point_and_column_ids_are_pystilts(fields, pystilt_id):
    kind = ColumnReceptor if "top" in fields else PointReceptor
    assert kind(time="2019-05-30 10:00", **fields).sim_id == pystilt_id


def test_two_pystilt_columns_at_one_place_migrate_as_two(tmp_path):
    source = tmp_path / "receptors.csv"
    source.write_text(
        "r_idx,time,lon,lat,z\n"
        "a,201905301000,-111.9,40.7,0\na,201905301000,-111.9,40.7,3000\n"
        "b,2019-05-30 10:00,-111.9,40.7,6000\nb,2019-05-30 10:00,-111.9,40.7,3000\n"
    )
    receptors = migrate_receptors(source, tmp_path / "ours.csv")
    assert [r.sim_id for r in receptors] == [
        "201905301000_-111.9_40.7_X0-3000",
        "201905301000_-111.9_40.7_X3000-6000",
    ]
    assert read_receptors(tmp_path / "ours.csv") == receptors


def test_a_pystilt_time_we_cannot_read_names_its_receptor(tmp_path):
    source = tmp_path / "receptors.csv"
    source.write_text(
        "r_idx,time,lon,lat,z\na,201905301000,-111.9,40.7,5\nb,30/05/2019,-111.9,40.7,5\n"
    )
    with pytest.raises(ConfigError, match=r"receptors.csv: r_idx=b: time '30/05/2019': not a time"):
        migrate_receptors(source, tmp_path / "ours.csv")
    assert not (tmp_path / "ours.csv").exists()


def _numbers(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    """Numbers as tables hold them: rounded, full-precision, float32, integral, tiny, huge."""
    kind = rng.integers(0, 7, n)
    return np.select(
        [kind == k for k in range(6)],
        [
            np.round(rng.uniform(-1, 1, n) * scale, 3),
            rng.uniform(-1, 1, n) * scale,
            rng.uniform(-1, 1, n).astype(np.float32).astype(float) * scale,
            rng.integers(-100, 100, n).astype(float),
            10.0 ** rng.uniform(-12, -5, n) * rng.choice([-1, 1], n),
            rng.uniform(-1, 1, n) * 1e-7 + np.sign(rng.uniform(-1, 1, n)) * scale,
        ],
        0.1 + 0.2 * rng.integers(0, 3, n),  # 0.30000000000000004 and friends
    )


def _random_table(n: int, seed: int) -> pd.DataFrame:
    """Points, columns and multipoint groups, times with and without seconds, repeats.

    A fifth of the rows are above sea level (some below it), in any case, and some
    of them repeat an AGL row's numbers; every row names its sounding.
    """
    rng = np.random.default_rng(seed)
    column = rng.random(n) < 0.3
    msl = rng.random(n) < 0.2
    bottom = np.abs(_numbers(rng, n, 1000))
    stamps = pd.to_datetime(
        np.datetime64("2019-05-30T10:00") + rng.integers(0, 10**7, n).astype("timedelta64[s]")
    )
    stamps = stamps.where(rng.random(n) < 0.5, stamps.floor("min"))
    layouts = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%SZ", "%Y%m%d%H%M%S", "%Y/%m/%d %H:%M:%S"]
    layout = rng.integers(0, len(layouts), n)
    times = np.select([layout == k for k in range(4)], [stamps.strftime(f) for f in layouts], "")
    table = pd.DataFrame(
        {
            "time": times,
            "lon": _numbers(rng, n, 359.0),
            "lat": np.clip(_numbers(rng, n, 89.0), -90, 90),
            "zagl": np.where(column, np.nan, np.abs(_numbers(rng, n, 3000))),
            "bottom": np.where(column, bottom, np.nan),
            "top": np.where(column, bottom + np.abs(_numbers(rng, n, 5000)) + 1e-3, np.nan),
            "group": np.arange(n).astype(str),
            "altitude_ref": np.where(msl, rng.choice(["msl", "MSL", " msl"], n), "agl"),
            "sounding_id": np.arange(n) + 2019053010000000,
        }
    )
    table.loc[~msl & (rng.random(n) < 0.1), "altitude_ref"] = None  # agl
    # The same numbers above sea level: another receptor.
    twins = rng.choice(np.flatnonzero(~msl & ~column), n // 50)
    table.loc[twins, "altitude_ref"] = "msl"
    # Multipoint groups: runs of points sharing a time.
    starts = rng.choice(np.flatnonzero(~column[:-2] & ~column[1:-1] & ~column[2:]), n // 50)
    for start in starts:
        for column in ("group", "time", "altitude_ref"):
            table.loc[start + 1 : start + 2, column] = table.loc[start, column]
    below = (table["altitude_ref"].str.strip().str.lower() == "msl").to_numpy(bool, copy=True)
    below[twins] = False
    table.loc[below, ["zagl", "bottom", "top"]] -= 400
    agl_twins = table.loc[twins].assign(altitude_ref="agl", group="twin-" + table["group"])
    table = pd.concat([table, agl_twins], ignore_index=True)
    again = table.sample(n // 10, random_state=seed)
    again["group"] = "again-" + again["group"]  # the same rows, or part of a group, repeated
    return pd.concat([table, again], ignore_index=True)


@pytest.mark.parametrize("as_text", [True, False], ids=["csv", "parquet"])
def test_column_ids_and_numbers_equal_the_models_on_a_random_table(tmp_path, as_text):
    table = _random_table(5000, seed=int(as_text))
    if as_text:  # every number as its shortest text, as a CSV writer keeps it
        path = tmp_path / "r.csv"
        table.to_csv(path, index=False)
    else:
        path = tmp_path / "r.parquet"
        table.to_parquet(path)
    with pytest.warns(ReceptorsMerged) as merged:
        frame = read_receptor_frame(path)
    read = pd.read_csv(path, dtype=str) if as_text else pd.read_parquet(path)
    expected: dict[str, object] = {}
    for _, receptor in receptor_rows(read, str(path)):
        assert expected.setdefault(receptor.sim_id, receptor) == receptor
    assert frame.sim_ids == list(expected)
    assert frame.table.equals(ReceptorFrame.from_receptors(expected.values()).table)
    assert {r.kind for r in expected.values()} == {"point", "column", "multipoint"}
    assert {(r.kind, r.altitude_ref) for r in expected.values()} == {
        (kind, ref) for kind in ("point", "column", "multipoint") for ref in ("agl", "msl")
    }
    assert merged[0].message.count == len(read) - len(expected) - sum(
        len(r.longitudes) - 1 for r in expected.values() if r.kind == "multipoint"
    )


def test_format_numbers_is_format_number_element_by_element():
    rng = np.random.default_rng(3)
    values = np.concatenate(
        [
            _numbers(rng, 20000, 400.0),
            10.0 ** rng.uniform(-30, 30, 20000) * rng.choice([-1, 1], 20000),
            [0.0, -0.0, 1e15, 1e16, 999999999999999.9, 1e-5, 1e-4, 1e22, 1e23, 5e-324, 2.5],
        ]
    )
    assert format_numbers(values).to_pylist() == [format_number(v) for v in values]
    expected = [canonical_number(v) for v in values]
    assert canonical_numbers(values).tolist() == expected


def test_csv_cells_are_read_as_pandas_reads_them():
    from pystilt_dask.receptors.table import _read_csv

    missing = ["", "NA", "N/A", "n/a", "NaN", "nan", "-nan", "NULL", "null", "None", "<NA>", "#N/A"]
    kept = ["none", "inf", " 5", "+5", "1e5", '"a, b"', "0x10"]
    rows = "\n".join(f"{cell},{cell},{i}" for i, cell in enumerate(missing + kept))
    tables = {
        "cells": f"time,lon,z\n{rows}\n",
        "header alone": "time,lon,z\n",
        "repeated names": "time,lon,lon,z\n1,2,3,4\n",  # pandas renames: lon, lon.1
        "empty name": "time,,z\n1,2,3\n",
    }
    for name, text in tables.items():
        expected = pd.read_csv(io.BytesIO(text.encode()), dtype=str, engine="pyarrow")
        pd.testing.assert_frame_equal(_read_csv(text.encode()), expected, obj=name)
    with pytest.raises(pd.errors.ParserError):  # pandas' error, as before
        _read_csv(b"time,lon,z\n1,2,3\n1,2,3,4\n")


def test_a_table_is_parsed_from_the_bytes_given(tmp_path):
    path = tmp_path / "receptors.csv"
    path.write_text("time,longitude,latitude,altitude\n2019-05-30 10:00,-111.8,40.7,5\n")
    data = path.read_bytes()
    path.write_text("time,longitude,latitude,altitude\n2019-05-30 11:00,-111.8,40.7,5\n")
    assert read_receptor_frame(path, data=data).sim_ids == ["201905301000_-111.8_40.7_5"]
    with pytest.raises(ReceptorError, match="does not exist"):
        read_receptor_frame(tmp_path / "absent.csv")
