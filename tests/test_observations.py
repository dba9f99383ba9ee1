"""Observations against PYSTILT 0.1.0a25's ``stilt.observations`` on the same inputs.

The product files are written by ``tests/sounding_files.py`` in the layouts the
product specifications give; every reader must return PYSTILT's table on them:
the same columns in the same order, dtypes, values (exactly) and row order.
"""

from __future__ import annotations

import shutil
import warnings

import fsspec
import numpy as np
import pandas as pd
import pytest
import sounding_files

from pystilt_dask import observations as obs
from pystilt_dask.footprint.transforms import AveragingKernel
from pystilt_dask.receptors import receptors_from_frame

pytestmark = pytest.mark.pystilt

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # both packages register a DataArray.stilt accessor
    stilt_obs = pytest.importorskip("stilt.observations")

GASES = ("xch4", "xco2", "xco")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return sounding_files.write_all(tmp_path_factory.mktemp("products"))


def assert_same_table(ours: pd.DataFrame, theirs: pd.DataFrame, skip: tuple[str, ...] = ()):
    """Same columns in order, dtypes, and values (arrays per row, exactly)."""
    assert list(ours.columns) == list(theirs.columns)
    assert len(ours) == len(theirs)
    for column in ours.columns:
        if column in skip:
            continue
        mine, ref = ours[column].reset_index(drop=True), theirs[column].reset_index(drop=True)
        assert mine.dtype == ref.dtype, column
        if mine.dtype == object:
            for a, b in zip(mine, ref, strict=True):
                assert a.dtype == b.dtype, column
                np.testing.assert_array_equal(a, b, err_msg=column)
        else:
            pd.testing.assert_series_equal(mine, ref, check_exact=True, obj=column)


READS = {
    "oco2": [((), {}), ((), {"lon_range": (-112.0, -111.6), "lat_range": (40.5, 41.2)})],
    "tropomi": [((), {}), ((), {"lon_range": (-110.82, -110.5), "lat_range": (39.31, 40.0)})],
    "blended": [((), {}), ((), {"lon_range": (-176.2, -175.8), "lat_range": (0.3, 1.0)})],
    "private": [((gas,), {}) for gas in GASES]
    + [(("xch4",), {"time_range": ("2023-07-15 16:01:53.823999882", "2023-07-15 16:08")})],
    "oof": [((gas,), {}) for gas in GASES],
}
READERS = {
    "oco2": "read_oco2",
    "tropomi": "read_tropomi_ch4",
    "blended": "read_tropomi_ch4",
    "private": "read_ggg_netcdf",
    "tccon": "read_tccon",
    "oof": "read_ggg_oof",
}


@pytest.mark.parametrize(
    ("product", "args", "kwargs"),
    [(product, a, k) for product, calls in READS.items() for a, k in calls],
)
def test_reader_equals_pystilt(files, product, args, kwargs):
    name = READERS[product]
    ours = getattr(obs, name)(files[product], *args, **kwargs)
    theirs = getattr(stilt_obs, name)(files[product], *args, **kwargs)
    assert len(ours) > 0
    assert_same_table(ours, theirs)


@pytest.mark.parametrize("gas", GASES)
def test_tccon_public_equals_pystilt_and_keeps_the_kernel_flags(files, gas):
    ours = obs.read_tccon(files["tccon"], gas)
    theirs = stilt_obs.read_tccon(files["tccon"], gas)
    assert_same_table(ours, theirs, skip=("ak_extrapolated",))
    # PYSTILT leaves a public file's extrapolation_flags_ak_<gas> unread (all False);
    # ours marks the spectra GGG flagged: -2..2 except 0.
    assert not theirs["ak_extrapolated"].any()
    assert ours.index[ours["ak_extrapolated"]].tolist() == [2, 5, 8, 9]


def test_readers_take_fsspec_urls(files):
    memory = fsspec.filesystem("memory")
    for product in ("oco2", "tropomi", "private"):
        url = f"memory://products/{files[product].name}"
        memory.pipe(url, files[product].read_bytes())
        name = READERS[product]
        args = ("xch4",) if product == "private" else ()
        local = getattr(obs, name)(files[product], *args)
        assert_same_table(getattr(obs, name)(url, *args), local)
    url = f"memory://products/{files['oof'].name}"
    memory.pipe(url, files["oof"].read_bytes())
    assert_same_table(obs.read_ggg_oof(url, "xch4"), obs.read_ggg_oof(files["oof"], "xch4"))


def test_schema_and_check_soundings(files):
    assert {k: w for k, (w, _) in obs.SOUNDING_SCHEMA.items()} == {
        k: w for k, (w, _) in stilt_obs.SOUNDING_SCHEMA.items()
    }
    for product in ("oco2", "tropomi", "blended", "tccon", "private"):
        args = ("xco2",) if product in ("tccon", "private") else ()
        obs.check_soundings(getattr(obs, READERS[product])(files[product], *args))
    day = obs.read_ggg_oof(files["oof"], "xch4")
    obs.check_soundings(day, kernel=False)
    with pytest.raises(ValueError, match=r"\['ak_pressure', 'ak', 'pressure_levels'\]"):
        obs.check_soundings(day)


def test_unknown_species_is_one_line(files):
    with pytest.raises(ValueError, match="has no 'xhcl' column"):
        obs.read_ggg_netcdf(files["private"], "xhcl")
    with pytest.raises(ValueError, match="has no 'xhcl' column"):
        obs.read_ggg_oof(files["oof"], "xhcl")


def _pystilt_kernels_by_our_ids(kernels, theirs, ours):
    mapping = {r.id: o.sim_id for r, o in zip(theirs, ours, strict=True)}
    out = kernels.copy()
    out["receptor"] = out["receptor"].map(mapping).astype("str")
    return out


def test_column_receptors_and_kernels(files, tmp_path):
    soundings = obs.read_tropomi_ch4(files["tropomi"])
    soundings = soundings[soundings.good]
    table, kernels = obs.receptors_from_soundings(soundings, "column", top=3000)
    theirs, their_kernels = stilt_obs.receptors_from_soundings(
        stilt_obs.read_tropomi_ch4(files["tropomi"]).pipe(lambda d: d[d.good]), "column", top=3000
    )
    receptors = receptors_from_frame(table)
    assert len(receptors) == len(theirs) == len(soundings)
    assert table["sounding_id"].tolist() == soundings["sounding_id"].tolist()
    assert (table["altitude_ref"] == "agl").all()
    assert table["sim_id"].tolist() == [r.sim_id for r in receptors]
    for mine, ref, row in zip(receptors, theirs, soundings.itertuples(), strict=True):
        assert (mine.bottom, mine.top) == (ref.bottom, ref.top) == (0.0, 3000.0)
        assert (row.longitude, row.latitude) == (ref.longitude, ref.latitude)
        assert mine.time == pd.Timestamp(ref.time).floor("s")
        assert mine.sim_id.startswith(ref.time.strftime("%Y%m%d%H%M"))
    pd.testing.assert_frame_equal(
        kernels, _pystilt_kernels_by_our_ids(their_kernels, theirs, receptors), check_exact=True
    )
    # the averaging_kernel transform reads the table as written, by simulation id
    path = tmp_path / "kernels.parquet"
    kernels.to_parquet(path)
    transform = AveragingKernel(table=str(path), coordinate="pres")
    for receptor, row in zip(receptors, soundings.itertuples(), strict=True):
        levels, values = transform.kernel(receptor)
        np.testing.assert_array_equal(levels, row.ak_pressure)
        np.testing.assert_array_equal(values, row.ak)
    # and the receptor table survives a CSV round trip with the same ids
    csv = tmp_path / "receptors.csv"
    table.to_csv(csv, index=False)
    assert [r.sim_id for r in receptors_from_frame(pd.read_csv(csv))] == table["sim_id"].tolist()


def _with_altitudes(soundings):
    soundings = soundings.copy()
    soundings["altitude_levels"] = [
        obs.pressure_altitudes(
            row.pressure_levels,
            surface_pressure=row.surface_pressure,
            surface_altitude=row.surface_altitude,
        )
        for row in soundings.itertuples()
    ]
    return soundings


@pytest.mark.parametrize("product", ["tropomi", "oco2", "private"])
def test_slant_receptors_equal_pystilt(files, product):
    args = ("xch4",) if product == "private" else ()
    reader = READERS[product]
    ours = getattr(obs, reader)(files[product], *args)
    theirs = getattr(stilt_obs, reader)(files[product], *args)
    ours, theirs = ours[ours.good], theirs[theirs.good]
    if product == "oco2":
        with pytest.raises(ValueError, match="pressure_altitudes"):
            obs.receptors_from_soundings(ours, "slant", top=3000)
        ours, theirs = _with_altitudes(ours), _with_altitudes(theirs)
    table, kernels = obs.receptors_from_soundings(ours, "slant", top=3000)
    their_receptors, their_kernels = stilt_obs.receptors_from_soundings(theirs, "slant", top=3000)
    assert (table["altitude_ref"] == "msl").all()
    assert [r.altitude_ref for r in their_receptors] == ["msl"] * len(their_receptors)
    receptors = receptors_from_frame(table)
    assert len(receptors) == len(their_receptors)
    groups = [points for _, points in table.groupby("group", sort=False)]
    for points, ref in zip(groups, their_receptors, strict=True):
        assert points["sounding_id"].nunique() == 1
        assert ref.attrs["sounding_id"] == points["sounding_id"].iloc[0]
        np.testing.assert_array_equal(points["longitude"], ref.longitudes)
        np.testing.assert_array_equal(points["latitude"], ref.latitudes)
        np.testing.assert_array_equal(points["altitude"], ref.altitudes)
    pd.testing.assert_frame_equal(
        kernels,
        _pystilt_kernels_by_our_ids(their_kernels, their_receptors, receptors),
        check_exact=True,
    )


def test_slant_needs_the_line_of_sight(files):
    blended = obs.read_tropomi_ch4(files["blended"])
    with pytest.raises(ValueError, match=r"\['altitude_levels', 'zenith', 'azimuth'\]"):
        obs.receptors_from_soundings(blended, "slant", top=3000)
    with pytest.raises(ValueError, match="kind must be"):
        obs.receptors_from_soundings(blended, "point", top=3000)


def test_no_kernels_without_a_kernel(files):
    day = obs.read_ggg_oof(files["oof"], "xch4")
    table, kernels = obs.receptors_from_soundings(day, "column", top=2000)
    assert kernels is None
    assert stilt_obs.receptors_from_soundings(day, "column", top=2000)[1] is None
    # one instrument, one place: spectra a second apart differ only in time
    assert table["sim_id"].is_unique


def test_placement_equals_pystilt(files):
    soundings = obs.read_oco2(files["oco2"])
    temperature = np.linspace(290.0, 210.0, 20)
    for row in soundings.itertuples():
        for kwargs in ({}, {"temperature": temperature}, {"top": row.surface_altitude + 3000}):
            args = {
                "surface_pressure": row.surface_pressure,
                "surface_altitude": row.surface_altitude,
                **kwargs,
            }
            mine = obs.pressure_altitudes(row.pressure_levels[::-1], **args)
            ref = stilt_obs.pressure_altitudes(row.pressure_levels[::-1], **args)
            np.testing.assert_array_equal(mine, ref)
        for anchor in (None, row.surface_altitude - 50.0):
            args = {"zenith": row.zenith, "azimuth": row.azimuth, "anchor": anchor}
            assert obs.slant_points(
                row.longitude, row.latitude, mine, **args
            ) == stilt_obs.slant_points(row.longitude, row.latitude, mine, **args)
        corners = list(zip(row.longitude_bounds, row.latitude_bounds, strict=True))
        for n in (1, 4, 7):
            assert obs.jitter_points(corners, n) == stilt_obs.jitter_points(corners, n)
        random = obs.jitter_points(corners, 5, method="random", seed=1)
        assert random == obs.jitter_points(corners, 5, method="random", seed=1)
        import shapely

        assert all(shapely.Polygon(corners).covers(shapely.Point(p)) for p in random)
    with pytest.raises(ValueError, match="zenith"):
        obs.slant_points(0.0, 0.0, [0.0, 1.0], zenith=95.0, azimuth=0.0)


def test_modelled_column_equals_pystilt(files):
    for row in obs.read_oco2(files["oco2"]).itertuples():
        p = row.pressure_levels
        weight = -np.diff(np.append(p, 0.0)) / p[0]
        args = {"ak": row.ak, "pressure_weight": weight, "prior": row.apriori}
        assert obs.modelled_column(1.5, 412.0, **args) == stilt_obs.modelled_column(
            1.5, 412.0, **args
        )
    assert obs.modelled_column(1.5, 412.0) == stilt_obs.modelled_column(1.5, 412.0) == 413.5
    with pytest.raises(ValueError, match="all of ak"):
        obs.modelled_column(1.0, 2.0, ak=[1.0])
    with pytest.raises(ValueError, match="differ in length"):
        obs.modelled_column(1.0, 2.0, ak=[1.0], pressure_weight=[1.0], prior=[1.0, 2.0])


def test_selection_equals_pystilt(files):
    times = pd.Series(
        pd.to_datetime(
            ["2020-01-01 10:00", "2020-01-01 10:20", "2020-01-01 12:00", "2020-01-02 09:00"]
        ),
        index=[5, 3, 9, 1],
    )
    for t in (times, times.to_numpy(), [str(x) for x in times]):
        pd.testing.assert_series_equal(obs.group_by_overpass(t), stilt_obs.group_by_overpass(t))
    pd.testing.assert_series_equal(
        obs.group_by_overpass(times, max_gap="10min"),
        stilt_obs.group_by_overpass(times, max_gap="10min"),
    )
    rng = np.random.default_rng(0)
    lon, lat = rng.uniform(-112, -111, 400), rng.uniform(40, 41, 400)
    for cols, rows in ((5, 7), (1, 1), (2, 3)):
        grid = {
            "site_longitude": -111.5,
            "site_latitude": 40.5,
            "near_field_dlon": 0.1,
            "near_field_dlat": 0.2,
            "near_field_cols": cols,
            "near_field_rows": rows,
            "background_cols": 4,
            "background_rows": 6,
            "domain_lon_range": (-112.0, -111.0),
            "domain_lat_range": (40.0, 41.0),
        }
        np.testing.assert_array_equal(
            obs.select_observations_spatial(lon, lat, **grid),
            stilt_obs.select_observations_spatial(lon, lat, **grid),
        )


def test_plumes_equal_pystilt():
    rng = np.random.default_rng(0)
    px = -111 + 0.3 * rng.random(3000)
    py = 40 + 0.1 * px + 11.1 + rng.normal(0, 0.03, 3000)
    ours, theirs = obs.plume_polygon(px, py), stilt_obs.plume_polygon(px, py)
    np.testing.assert_array_equal(ours.density.values, theirs.density.values)
    assert ours.density.dims == theirs.density.dims == ("lat", "lon")
    assert ours.polygon.symmetric_difference(theirs.polygon).area < 1e-9 * theirs.polygon.area
    for n in (600, 40):
        sx, sy = rng.uniform(-111.8, -110.3, n), rng.uniform(39.5, 40.6, n)
        sv, su = 1900 + rng.normal(0, 5, n), rng.uniform(3, 6, n)
        for kwargs in (
            {},
            {"side": "west"},
            {"trim": None},
            {"uncertainties": su, "side": "north", "width": 0.2, "pad": 0.3, "trim": 0.5},
        ):
            mine = obs.plume_background(sx, sy, sv, ours, **kwargs)
            ref = stilt_obs.plume_background(sx, sy, sv, theirs, **kwargs)
            np.testing.assert_array_equal(
                [mine.value, mine.uncertainty], [ref.value, ref.uncertainty]
            )
            assert mine.n == ref.n
            np.testing.assert_array_equal(mine.in_plume, ref.in_plume)
            np.testing.assert_array_equal(mine.used, ref.used)
            pd.testing.assert_frame_equal(
                mine.sides.reset_index(drop=True), ref.sides.reset_index(drop=True)
            )
    with pytest.raises(ValueError, match="inside the plume"):
        obs.plume_background([0.0], [0.0], [1.0], ours)


def test_read_soundings_reads_files_in_parallel(files, tmp_path):
    from distributed import Client, LocalCluster

    paths = [files["tropomi"]]
    for orbit in (31177, 31178):
        copy = tmp_path / files["tropomi"].name.replace("31176", str(orbit))
        shutil.copy(files["tropomi"], copy)
        paths.append(copy)
    box = {"lon_range": (-111.0, -110.5)}
    frame = obs.read_soundings(paths, obs.read_tropomi_ch4, **box)
    assert frame.npartitions == 3
    expected = pd.concat([obs.read_tropomi_ch4(p, **box) for p in paths], ignore_index=True)
    with (
        LocalCluster(n_workers=2, processes=False, dashboard_address=None) as cluster,
        Client(cluster),
    ):
        table = frame.compute()
    assert_same_table(table.reset_index(drop=True), expected)
    assert table["sounding_id"].str[:5].unique().tolist() == ["31176", "31177", "31178"]
