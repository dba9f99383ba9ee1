"""Receptors: ids that name everything a run depends on, tables read as the user meant."""

from __future__ import annotations

import datetime as dt
import warnings

import pandas as pd
import pytest

from pystilt_dask.errors import ConfigError, ReceptorError
from pystilt_dask.migrate_receptors import migrate_receptors
from pystilt_dask.receptors import (
    ColumnReceptor,
    MultiPointReceptor,
    PointReceptor,
    ReceptorsMerged,
    parse_time,
    read_receptors,
    receptors_from_frame,
)

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
