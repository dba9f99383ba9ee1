"""Modelled observations in one call: every sounding's modelled column, and towers' values.

A real project on the idealized met (HYSPLIT, column receptors from a synthetic
OCO-2 file, an X-STILT footprint with the soundings' kernels) against a hand
computation from ``load()``, ``convolve``, ``background`` and ``modelled_column``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.optimize import brentq
from store_helpers import RaiseIfComputes

from pystilt_dask import observations as obs
from pystilt_dask.background import background
from pystilt_dask.config import ModelConfig
from pystilt_dask.errors import ConfigError
from pystilt_dask.model import Model

sys.path.insert(0, str(Path(__file__).parent))
from sounding_files import write_oco2  # noqa: E402

pytest.importorskip("h5netcdf", reason="the product readers need the observations extra")

VARSIWANT = ["time", "indx", "long", "lati", "zagl", "foot", "pres", "mlht", "dens", "samt",
             "sigw", "tlgr"]  # fmt: skip
GRID = {"xmin": -112.6, "xmax": -111.2, "ymin": 40.2, "ymax": 41.3, "xres": 0.02}
TOP = 2000.0
#: The overpass, moved into the idealized met's hours (2019-05-30 00-11 UTC).
OVERPASS = pd.Timestamp("2019-05-30 10:00")
TOWERS = pd.DataFrame(
    {
        "time": ["2019-05-30 09:00", "2019-05-30 10:00", "2019-05-30 10:00"],
        "longitude": [-111.85, -111.85, -111.7],
        "latitude": [40.77, 40.77, 40.65],
        "altitude": [10.0, 10.0, 30.0],
        "value": [412.5, 415.0, 409.0],
    },
    index=pd.Index([101, 102, 103], name="observation"),
)


def field(seed: int = 3) -> xr.DataArray:
    """A CO2 field over the met's domain by time and pressure, random so a wrong cell shows."""
    rng = np.random.default_rng(seed)
    coords = {
        "time": pd.date_range("2019-05-30 00:00", periods=5, freq="3h"),
        "pres": [1000.0, 900.0, 800.0, 700.0, 500.0, 300.0, 100.0, 10.0],
        "lat": 39.6 + 0.1 * np.arange(24),
        "lon": -113.1 + 0.1 * np.arange(24),
    }
    shape = tuple(len(v) for v in coords.values())
    return xr.DataArray(
        405.0 + rng.normal(0, 2, shape), dims=tuple(coords), coords=coords, attrs={"units": "ppm"}
    )


def flux(foot: xr.DataArray) -> xr.DataArray:
    """An hourly flux on the footprint grid: a city plume with a diurnal cycle."""
    hours = pd.date_range("2019-05-30 00:00", "2019-05-30 11:00", freq="h")
    city = 5 * np.exp(-(((foot.lon + 111.9) / 0.15) ** 2 + ((foot.lat - 40.7) / 0.1) ** 2))
    cycle = xr.DataArray(1 + 0.3 * np.arange(len(hours)) / len(hours), coords={"time": hours})
    return (0.2 + city * cycle).transpose("time", "lat", "lon").rename("flux")


@pytest.fixture(scope="module")
def project(tmp_path_factory, idealized_met):
    """Four good soundings as column receptors, kernels as a table, run with HYSPLIT; an
    X-STILT footprint and a plain one."""
    folder = tmp_path_factory.mktemp("modelled")
    soundings = obs.read_oco2(write_oco2(folder, n=12))
    soundings = soundings[soundings.good & soundings.value.notna()].head(4)
    soundings = soundings.reset_index(drop=True)
    soundings["time"] = OVERPASS + (soundings["time"] - soundings["time"].iloc[0])
    receptors, kernels = obs.receptors_from_soundings(soundings, "column", top=TOP)
    kernels.to_parquet(folder / "kernels.parquet")
    config = ModelConfig.from_dict(
        {
            "mets": {"idealized": idealized_met},
            "hysplit": {"n_hours": -2, "numpar": 50, "seed": 7, "varsiwant": VARSIWANT},
            "footprints": {
                "xco2": {
                    **GRID,
                    "transforms": [
                        {"kind": "pressure_weighting"},
                        {
                            "kind": "averaging_kernel",
                            "table": str(folder / "kernels.parquet"),
                            "coordinate": "pres",
                        },
                    ],
                },
                "surface": GRID,
            },
        }  # fmt: skip
    )
    model = Model(folder / "columns", receptors, config)
    model.register_pending()
    assert set(dask.compute(*model.to_delayed(), scheduler="threads")) == {"complete"}
    return model, soundings, receptors


@pytest.fixture(scope="module")
def towers(tmp_path_factory, idealized_met):
    """A tower project (a plain footprint) run with HYSPLIT."""
    config = ModelConfig.from_dict(
        {
            "mets": {"idealized": idealized_met},
            "hysplit": {"n_hours": -2, "numpar": 50, "seed": 7, "varsiwant": VARSIWANT},
            "footprints": {"surface": GRID},
        }
    )
    model = Model(tmp_path_factory.mktemp("towers"), TOWERS.drop(columns="value"), config)
    model.register_pending()
    assert set(dask.compute(*model.to_delayed(), scheduler="threads")) == {"complete"}
    return model


def test_columns_equal_a_hand_computation(project):
    model, soundings, receptors = project
    co2 = field()
    foot = model.footprints["xco2"].load()
    f = flux(foot)
    result = obs.modelled_columns(
        model, soundings, f, receptors=receptors, background=co2, footprint="xco2"
    ).compute(scheduler="threads")

    enhancement = foot.stilt.convolve(f).compute(scheduler="threads")
    endpoints = background(model, co2, "xco2").compute(scheduler="threads")
    assert list(result.sounding_id.values) == soundings["sounding_id"].tolist()
    partial = 0
    for row, receptor in zip(soundings.itertuples(), receptors.itertuples(), strict=True):
        got = result.sel(sounding_id=row.sounding_id)
        assert got.simulation.item() == receptor.sim_id
        enh = enhancement.sel(simulation=receptor.sim_id).item()
        bg = endpoints.sel(simulation=receptor.sim_id).item()
        # the field above the receptor's top: the pressure TOP m above the surface (found
        # by inverting pressure_altitudes), and each level's layer halfway to its neighbours
        p = row.ak_pressure
        p_top = brentq(
            lambda x, r=row: obs.pressure_altitudes(
                [x], surface_pressure=r.surface_pressure, surface_altitude=r.surface_altitude
            )[0] - r.surface_altitude - TOP,
            1.0, row.surface_pressure,
        )  # fmt: skip
        edges = np.concatenate(([p[0]], (p[:-1] + p[1:]) / 2, [p[-1]]))
        share = np.clip((np.minimum(edges[:-1], p_top) - edges[1:]) / -np.diff(edges), 0, 1)
        partial += int(((share > 0) & (share < 1)).sum())
        at = co2.sel(lon=row.longitude, lat=row.latitude, time=row.time, method="nearest")
        values = at.sel(pres=p, method="nearest").values
        bg_above = float(np.sum(share * row.pressure_weight * row.ak * values))
        expected = obs.modelled_column(
            enh, bg + bg_above, ak=row.ak, pressure_weight=row.pressure_weight, prior=row.apriori
        )
        prior = obs.modelled_column(
            0.0, 0.0, ak=row.ak, pressure_weight=row.pressure_weight, prior=row.apriori
        )
        assert got.enhancement.item() == pytest.approx(enh, rel=1e-12)
        assert got.enhancement.item() > 0
        assert got.background_endpoints.item() == pytest.approx(bg, rel=1e-12)
        assert got.background_above.item() == pytest.approx(bg_above, rel=1e-12)
        assert got.prior.item() == pytest.approx(prior, rel=1e-12)
        assert got.modelled.item() == pytest.approx(expected, rel=1e-12)
        assert got.observed.item() == row.value
        assert got.residual.item() == pytest.approx(row.value - expected, rel=1e-9)
    assert partial == len(soundings)  # one layer each is cut by the receptor's top
    # one row per sounding, joined back on its id
    joined = soundings.join(result.to_dataframe(), on="sounding_id")
    assert joined["modelled"].notna().all() and len(joined) == len(soundings)


def test_nothing_is_computed_until_asked(project, towers):
    model, soundings, receptors = project
    co2 = field()
    with dask.config.set(scheduler=RaiseIfComputes()):
        f = flux(model.footprints["xco2"].load())
        columns = obs.modelled_columns(
            model, soundings, f, receptors=receptors, background=co2, footprint="xco2"
        )
        points = obs.modelled_points(
            towers, TOWERS, flux(towers.footprints["surface"].load()), background=co2
        )
    for result in (columns, points):
        for name, variable in result.data_vars.items():
            assert isinstance(variable.data, dask.array.Array), name
    with dask.config.set(scheduler="threads"):
        assert np.isfinite(columns.modelled.values).all()


def test_points_are_enhancement_plus_background(towers):
    model = towers
    co2 = field()
    foot = model.footprints["surface"].load()
    f = flux(foot)
    result = obs.modelled_points(model, TOWERS, f, background=co2)
    result = result.compute(scheduler="threads")
    enhancement = foot.stilt.convolve(f).compute(scheduler="threads")
    endpoints = background(model, co2, "surface").compute(scheduler="threads")
    assert list(result.observation.values) == [101, 102, 103]
    for index, row in TOWERS.iterrows():
        got = result.sel(observation=index)
        sim_id = got.simulation.item()
        enh = enhancement.sel(simulation=sim_id).item()
        bg = endpoints.sel(simulation=sim_id).item()
        assert got.enhancement.item() == pytest.approx(enh, rel=1e-12)
        assert got.background.item() == pytest.approx(bg, rel=1e-12)
        assert got.modelled.item() == pytest.approx(enh + bg, rel=1e-12)
        assert got.residual.item() == pytest.approx(row.value - enh - bg, rel=1e-9)
    joined = TOWERS.join(result.to_dataframe())
    assert joined["modelled"].notna().all()


def test_without_a_field_there_is_no_background(project):
    model, soundings, receptors = project
    f = flux(model.footprints["xco2"].load())
    result = obs.modelled_columns(model, soundings, f, receptors=receptors, footprint="xco2")
    assert set(result.data_vars) == {"enhancement", "prior", "observed"}


def test_bad_asks_are_named_before_computing(project):
    model, soundings, receptors = project
    f = flux(model.footprints["xco2"].load())
    with dask.config.set(scheduler=RaiseIfComputes()):
        with pytest.raises(ConfigError, match="name the footprint to use"):
            obs.modelled_columns(model, soundings, f, receptors=receptors)
        with pytest.raises(ValueError, match="soundings without a receptor"):
            obs.modelled_columns(
                model, soundings, f, receptors=receptors.iloc[1:], footprint="xco2"
            )
        other = soundings.assign(time=soundings["time"] + pd.Timedelta("1h"))
        moved, _ = obs.receptors_from_soundings(other, "column", top=TOP)
        with pytest.raises(ValueError, match="not registered"):
            obs.modelled_columns(model, other, f, receptors=moved, footprint="xco2")
        with pytest.raises(ValueError, match="vertical dimension 'level'"):
            obs.modelled_columns(
                model, soundings, f, receptors=receptors,
                background=field().rename(pres="level"), footprint="xco2",
            )  # fmt: skip
        with pytest.raises(ValueError, match=r"missing columns \['value'\]"):
            obs.modelled_points(model, TOWERS.drop(columns="value"), f, footprint="surface")
        with pytest.raises(ValueError, match="not registered"):
            obs.modelled_points(model, TOWERS, f, footprint="surface")


def test_the_demo_overpass_reads_as_an_oco2_file(tmp_path):
    from pystilt_dask.observations.demo import write_demo_overpass

    soundings = obs.read_oco2(write_demo_overpass(tmp_path, frames=10))
    obs.check_soundings(soundings)
    assert len(soundings) == 80 and soundings["sounding_id"].is_unique
    assert soundings["sounding_id"].str.len().eq(16).all()  # as OCO-2 numbers soundings
    assert np.isnan(soundings["value"].iloc[3]) and (~soundings["good"]).sum() == 11
    weights = np.stack(soundings["pressure_weight"])
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)
    assert (np.stack(soundings["pressure_levels"])[:, 0] == 1000.0).all()  # surface first
