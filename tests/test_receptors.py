"""Receptors: R-STILT simulation ids and receptor tables with row-level errors."""

from __future__ import annotations

import pandas as pd
import pytest

from pystilt_dask.errors import ReceptorError
from pystilt_dask.receptors import (
    ColumnReceptor,
    MultiPointReceptor,
    PointReceptor,
    read_receptors,
)


def test_rstilt_simulation_ids():
    point = PointReceptor(time="2015-12-10 00:00", longitude=-112, latitude=40.5, altitude=5)
    assert point.sim_id == "201512100000_-112_40.5_5"
    column = ColumnReceptor(
        time="2015-07-05 18:00:30", longitude=-111.9, latitude=40.7, bottom=0, top=1000
    )
    assert column.sim_id == "201507051800_-111.9_40.7_X"
    assert column.release_points == [(40.7, -111.9, 0), (40.7, -111.9, 1000)]


def test_aware_times_become_utc():
    r = PointReceptor(time="2019-05-30T04:00-06:00", longitude=-111.8, latitude=40.7, altitude=5)
    assert r.sim_id.startswith("201905301000_")


def test_multipoint_id_is_order_independent():
    a = MultiPointReceptor(
        time="2019-05-30 10:00",
        longitudes=[-111.8, -111.9],
        latitudes=[40.7, 40.8],
        altitudes=[5, 50],
    )
    b = MultiPointReceptor(
        time="2019-05-30 10:00",
        longitudes=[-111.9, -111.8],
        latitudes=[40.8, 40.7],
        altitudes=[50, 5],
    )
    assert a.sim_id == b.sim_id and a.sim_id.startswith("201905301000_multi_")


def test_read_table_with_aliases_columns_and_groups(tmp_path):
    path = tmp_path / "receptors.csv"
    path.write_text(
        "time,lon,lat,zagl,bottom,top,group\n"
        "2019-05-30 10:00,-111.848,40.766,5,,,a\n"
        "2019-05-30 10:00,-111.9,40.7,,0,1000,b\n"
        "2019-05-30 11:00,-111.8,40.7,5,,,c\n"
        "2019-05-30 11:00,-111.9,40.8,50,,,c\n"
    )
    point, column, multi = read_receptors(path)
    assert isinstance(point, PointReceptor) and point.altitude == 5
    assert isinstance(column, ColumnReceptor) and column.top == 1000
    assert isinstance(multi, MultiPointReceptor) and multi.altitudes == (5, 50)
    pd.DataFrame({"time": ["2019-05-30 10:00"], "longitude": [-111.8], "latitude": [40.7],
                  "altitude": [5.0]}).to_parquet(tmp_path / "r.parquet")  # fmt: skip
    assert read_receptors(tmp_path / "r.parquet")[0].latitude == 40.7


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("yesterday,-111.8,40.7,5", r"row 2, field 'time'.*\(got 'yesterday'\)"),
        ("2019-05-30 10:00,-111.8,95,5", r"row 2, field 'latitude'.*less than or equal to 90"),
        ("2019-05-30 10:00,-111.8,40.7,", r"row 2, field 'altitude': Field required"),
    ],
)
def test_bad_rows_name_row_and_field(tmp_path, row, message):
    path = tmp_path / "receptors.csv"
    path.write_text(f"time,longitude,latitude,altitude\n2019-05-30 10:00,-111.8,40.7,5\n{row}\n")
    with pytest.raises(ReceptorError, match=message):
        read_receptors(path)
