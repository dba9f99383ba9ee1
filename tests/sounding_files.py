"""Synthetic retrieval product files, laid out as the product specifications describe.

The values are invented (a smooth scene with noise from a seeded generator); the
layout is the products': file names, groups, dimension and variable names, dtypes,
units, fill values, scale factors, quality flags and the order of vertical arrays.

- OCO-2/3 L2 Lite FP v11 (``oco2_LtCO2_*.nc4``, OCO-2 Data Product User's Guide):
  one dimension ``sounding_id`` with the 16-digit ids, 20 ``levels`` from the top
  of the atmosphere down to the surface, ``xco2`` with ``_FillValue`` -999999,
  ``xco2_quality_flag`` (0 good), and the ``Sounding``, ``Retrieval`` and
  ``Meteorology`` groups.
- Sentinel-5P TROPOMI CH4 L2 (``S5P_OFFL_L2__CH4____*.nc``, PUM and ATBD): the
  ``PRODUCT`` group on ``(time, scanline, ground_pixel)`` with ``layer`` (12) and
  ``level`` (13) running from the top down, ``qa_value`` as ``uint8`` with
  ``scale_factor`` 0.01, netCDF default fills, times as ``delta_time`` in ms since
  the ``time`` reference, ``SUPPORT_DATA/{GEOLOCATIONS,DETAILED_RESULTS,INPUT_DATA}``;
  and the TROPOMI+GOSAT blended product (``S5P_BLND_L2__CH4____*.nc``): flat ``nobs``.
- GGG2020 netCDF: a TCCON public file (``*.public.qc.nc``, per-spectrum kernels
  ``ak_<gas>`` on ``ak_altitude`` and their ``extrapolation_flags_ak_<gas>``, wet
  priors per spectrum) and the private file of a run (``*.private.nc``: kernels as a
  table over ``ak_slant_<gas>_bin``, priors on ``prior_time`` chosen by
  ``prior_index``, ``flag``, ``spectrum`` names, the O2 window airmass
  ``o2_7885_am_o2``).
- GGG2020 ``.oof`` text (``*.vav.ada.aia.oof``): the ``nhead ncol`` line, the
  ``missing:`` and ``format:`` lines, the variable table, then one header line of
  column names with units and one line per spectrum.

Run ``python tests/sounding_files.py DIR`` to write one of each into ``DIR``.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from pathlib import Path

import h5netcdf
import h5py
import numpy as np

NC_FILL_FLOAT = np.float32(9.96921e36)
OCO_FILL = np.float32(-999999.0)
SITE = {"longitude": -111.85, "latitude": 40.77, "altitude_km": 1.45}
#: ``qa_value``'s attributes in both TROPOMI CH4 products (its units are "1").
QA = {"_FillValue": np.uint8(255), "scale_factor": np.float32(0.01), "add_offset": np.float32(0.0)}
#: Longitude offsets of a TROPOMI pixel's four corners.
CORNERS = np.array([-0.035, 0.035, 0.035, -0.035])
SECONDS = "seconds since 1970-01-01 00:00:00"


def _var(group, name, dims, data, dtype=None, **attrs):
    data = np.asarray(data)
    fill = attrs.pop("_FillValue", None)
    var = group.create_variable(name, dims, dtype=dtype or data.dtype, data=data, fillvalue=fill)
    for key, value in attrs.items():
        var.attrs[key] = value
    return var


def _vars(group, table: dict, **common) -> None:
    """Write ``table``'s variables, ``name: (dims, data, units[, attrs])``, in its order.

    Each gets the ``common`` attributes (``_FillValue`` sets the fill value), its
    ``units`` unless None, then its own ``attrs``, which win over ``common``.
    """
    for name, (dims, data, units, *attrs) in table.items():
        own = {} if units is None else {"units": units}
        _var(group, name, dims, data, **{**common, **own, **(attrs[0] if attrs else {})})


def _scene(n: int, rng: np.random.Generator, lon0: float, lat0: float) -> tuple:
    lon = lon0 + rng.uniform(-0.4, 0.4, n)
    lat = lat0 + rng.uniform(-0.4, 0.4, n)
    return lon, lat


def write_oco2(directory: Path, n: int = 24, seed: int = 1, orbit: int = 49123) -> Path:
    """An OCO-2 Lite FP v11 file with ``n`` soundings over one overpass.

    Soundings 3 and 7 have ``xco2`` filled; every fifth is flagged bad.
    """
    rng = np.random.default_rng(seed)
    path = Path(directory) / "oco2_LtCO2_231019_B11210Ar_240101000000s.nc4"
    start = datetime(2023, 10, 19, 19, 48, 0)
    times = [start + timedelta(seconds=0.333 * i) for i in range(n)]
    ids = np.array(
        [int(t.strftime("%Y%m%d%H%M%S")) * 100 + (i % 8) + 1 for i, t in enumerate(times)],
        dtype=np.int64,
    )
    epoch = np.array([(t - datetime(1970, 1, 1)).total_seconds() for t in times])
    date = np.array([[t.year, t.month, t.day, t.hour, t.minute, t.second, 0] for t in times])
    lon, lat = _scene(n, rng, -111.9, 40.7)
    vlon = lon[:, None] + np.array([-0.011, 0.011, 0.011, -0.011])
    vlat = lat[:, None] + np.array([-0.009, -0.009, 0.009, 0.009])
    psurf = rng.uniform(840.0, 870.0, n).astype(np.float32)
    sigma = np.linspace(0.0001, 1.0, 20)  # top of the atmosphere first, surface last
    levels = (psurf[:, None] * sigma[None, :]).astype(np.float32)
    ak = (0.4 + 0.7 * sigma[None, :] + rng.normal(0, 0.01, (n, 20))).astype(np.float32)
    apriori = (405.0 + 15.0 * sigma[None, :] + rng.normal(0, 0.2, (n, 20))).astype(np.float32)
    weight = np.full((n, 20), 1.0 / 19.0)
    weight[:, [0, -1]] /= 2.0
    xco2 = (418.0 + rng.normal(0, 0.8, n)).astype(np.float32)
    xco2[[3, 7]] = OCO_FILL
    flag = np.zeros(n, dtype=np.int8)
    flag[::5] = 1

    def uniform(low: float, high: float) -> np.ndarray:
        return rng.uniform(low, high, n).astype(np.float32)

    one, corners, profile = ("sounding_id",), ("sounding_id", "vertices"), ("sounding_id", "levels")
    top_down = {"comment": "Level 1 is the top of the atmosphere, level 20 the surface"}
    modes = {"comment": "0=Nadir, 1=Glint, 2=Target, 3=Transition, 4=SAM"}
    east = {"comment": "degrees East of North"}
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"sounding_id": n, "levels": 20, "vertices": 4, "epoch_dimension": 7}
        f.attrs["title"] = "OCO-2 Level 2 bias-corrected XCO2 and other select fields (Lite)"
        f.attrs["Conventions"] = "CF-1.6"
        coordinates = {
            "sounding_id": (one, ids, "YYYYMMDDhhmmss[frame][footprint]"),
            "levels": (("levels",), np.arange(1, 21, dtype=np.int32), None),
            "vertices": (("vertices",), np.arange(1, 5, dtype=np.int32), None),
            "date": (("sounding_id", "epoch_dimension"), date.astype(np.int16), None),
            "time": (one, epoch, SECONDS),
        }
        _vars(f, coordinates)
        soundings = {
            "latitude": (one, lat.astype(np.float32), "degrees_north"),
            "longitude": (one, lon.astype(np.float32), "degrees_east"),
            "vertex_longitude": (corners, vlon.astype(np.float32), "degrees_east"),
            "vertex_latitude": (corners, vlat.astype(np.float32), "degrees_north"),
            "solar_zenith_angle": (one, uniform(45, 55), "degrees"),
            "sensor_zenith_angle": (one, uniform(0, 25), "degrees"),
            "xco2": (one, xco2, "ppm"),
            "xco2_uncertainty": (one, uniform(0.4, 0.9), "ppm"),
            "xco2_apriori": (one, uniform(414, 416), "ppm"),
        }
        _vars(f, soundings, _FillValue=OCO_FILL)
        flags = {
            "xco2_quality_flag": (one, flag, None, {"comment": "0=Good, 1=Bad"}),
            "xco2_qf_bitflag": (one, flag.astype(np.int32), None),
        }
        _vars(f, flags)
        profiles = {
            "pressure_levels": (profile, levels, "hPa", top_down),
            "pressure_weight": (profile, weight.astype(np.float32), "1"),
            "co2_profile_apriori": (profile, apriori, "ppm"),
            "xco2_averaging_kernel": (profile, ak, "1"),
        }
        _vars(f, profiles, _FillValue=OCO_FILL)
        _var(f, "file_index", one, np.ones(n, dtype=np.int16))
        sounding = f.create_group("Sounding")
        geometry = {
            "altitude": (one, uniform(1280, 1600), "m", {"long_name": "surface altitude"}),
            "altitude_stddev": (one, uniform(5, 40), "m"),
            "solar_azimuth_angle": (one, uniform(190, 210), "degrees"),
            "sensor_azimuth_angle": (one, uniform(80, 110), "degrees", east),
            "land_fraction": (one, np.full(n, 100.0, np.float32), "percent"),
        }
        _vars(sounding, geometry, _FillValue=OCO_FILL)
        modes_and_place = {
            "land_water_indicator": (one, np.zeros(n, np.int8), None),
            "operation_mode": (one, np.zeros(n, np.int8), None, modes),
            "orbit": (one, np.full(n, orbit, np.int32), None),
            "path": (one, np.full(n, 36, np.int16), None),
            "footprint": (one, ((np.arange(n) % 8) + 1).astype(np.int8), None),
        }
        _vars(sounding, modes_and_place)
        retrieval = {"psurf": (one, psurf, "hPa"), "xco2_raw": (one, xco2 + np.float32(0.5), "ppm")}
        _vars(f.create_group("Retrieval"), retrieval, _FillValue=OCO_FILL)
        meteorology = {"psurf_apriori_o2a": (one, psurf + np.float32(1.0), "hPa")}
        _vars(f.create_group("Meteorology"), meteorology, _FillValue=OCO_FILL)
    return path


def _tropomi_profiles(shape: tuple, rng: np.random.Generator) -> dict:
    """Pressure grid, kernel, prior and heights of a TROPOMI CH4 sounding, top first."""
    psurf = rng.uniform(80000.0, 86000.0, shape).astype(np.float32)  # Pa
    interval = (psurf / np.float32(12.0)).astype(np.float32)
    frac = np.linspace(0.0, 1.0, 13)  # level 0 is the top (0 Pa), level 12 the surface
    pres = psurf[..., None] * frac
    surface_altitude = rng.uniform(1300.0, 1900.0, shape).astype(np.float32)
    scale_height = 8000.0
    altitude = surface_altitude[..., None] + scale_height * np.log(
        np.maximum(psurf[..., None] / np.maximum(pres, psurf[..., None] * 4e-4), 1.0)
    )
    mid = np.linspace(1 / 24, 23 / 24, 12)
    ak = 0.7 + 0.37 * np.sqrt(mid) + rng.normal(0, 0.005, (*shape, 12))
    dry = np.full((*shape, 12), 24400.0) + rng.normal(0, 40, (*shape, 12))
    ch4 = (1800.0 + 170.0 * mid) * 1e-9 * dry
    return {
        "surface_pressure": psurf,
        "pressure_interval": interval,
        "surface_altitude": surface_altitude,
        "altitude_levels": altitude.astype(np.float32),
        "column_averaging_kernel": ak.astype(np.float32),
        "dry_air_subcolumns": dry.astype(np.float32),
        "methane_profile_apriori": ch4.astype(np.float32),
    }


#: The vertical dimension (if any) and units of each of ``_tropomi_profiles``' arrays.
PROFILE_VARIABLES = {
    "surface_pressure": ((), "Pa"),
    "pressure_interval": ((), "Pa"),
    "surface_altitude": ((), "m"),
    "altitude_levels": (("level",), "m"),
    "column_averaging_kernel": (("layer",), "1"),
    "dry_air_subcolumns": (("layer",), "mol m-2"),
    "methane_profile_apriori": (("layer",), "mol m-2"),
}


def _profile_table(profiles: dict, pixel: tuple, names: str) -> dict:
    """``_vars`` rows of the profile arrays ``names`` (space-separated), on ``pixel``'s dims."""
    table = {}
    for name in names.split():
        vertical, units = PROFILE_VARIABLES[name]
        table[name] = ((*pixel, *vertical), profiles[name], units)
    return table


def write_tropomi_ch4(
    directory: Path, scanlines: int = 6, pixels: int = 5, seed: int = 2, orbit: int = 31176
) -> Path:
    """An operational TROPOMI CH4 L2 orbit cut to ``scanlines`` x ``pixels``.

    Pixels with ``qa_value`` 0 have no methane (netCDF's default fill).
    """
    rng = np.random.default_rng(seed)
    name = (
        f"S5P_OFFL_L2__CH4____20231019T192749_20231019T210918_{orbit:05d}_03_020500_"
        "20231021T113213.nc"
    )
    path = Path(directory) / name
    shape = (1, scanlines, pixels)
    ref = datetime(2023, 10, 19)
    delta = 73_901_885 + 840 * np.arange(scanlines)  # ms, 0.84 s per scanline
    utc = [
        (ref + timedelta(milliseconds=int(ms))).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        for ms in delta
    ]
    lon = -110.9 + 0.08 * np.arange(pixels)[None, :] - 0.015 * np.arange(scanlines)[:, None]
    lat = 39.3 + 0.013 * np.arange(pixels)[None, :] + 0.05 * np.arange(scanlines)[:, None]
    qa = rng.choice(np.array([0, 40, 47, 50, 100], dtype=np.uint8), size=shape)
    qa[0, 0, 0] = 100
    xch4 = (1890.0 + rng.normal(0, 6, shape)).astype(np.float32)
    xch4_bc = (xch4 - np.float32(8.0)).astype(np.float32)
    xch4[qa == 0] = NC_FILL_FLOAT
    xch4_bc[qa == 0] = NC_FILL_FLOAT
    prof = _tropomi_profiles(shape, rng)
    fill = {"_FillValue": NC_FILL_FLOAT}
    lon_bounds = (lon[None, ..., None] + CORNERS).astype(np.float32)
    lat_bounds = (lat[None, ..., None] + np.roll(CORNERS, 1) * 0.7).astype(np.float32)

    def uniform(low: float, high: float) -> np.ndarray:
        return rng.uniform(low, high, shape).astype(np.float32)

    pix = ("time", "scanline", "ground_pixel")
    corners, scan_time, down = (*pix, "corner"), ("time", "scanline"), {"positive": "down"}
    with h5netcdf.File(path, "w") as f:
        f.attrs["Conventions"] = "CF-1.7"
        f.attrs["institution"] = "KNMI/SRON"
        f.attrs["time_reference"] = "2023-10-19T00:00:00Z"
        f.attrs["orbit"] = np.int32(orbit)
        f.attrs["processor_version"] = "2.5.0"
        prod = f.create_group("PRODUCT")
        prod.dimensions = {
            "scanline": scanlines,
            "ground_pixel": pixels,
            "corner": 4,
            "time": 1,
            "layer": 12,
            "level": 13,
        }
        coordinates = {
            "scanline": (("scanline",), np.arange(3022, 3022 + scanlines, dtype=np.int32), None),
            "ground_pixel": (("ground_pixel",), np.arange(125, 125 + pixels, dtype=np.int32), None),
            "time": (("time",), np.int32([435369600]), "seconds since 2010-01-01 00:00:00"),
            "corner": (("corner",), np.arange(4, dtype=np.int32), None),
            "layer": (("layer",), np.arange(12, dtype=np.int32), None, down),
            "level": (("level",), np.arange(13, dtype=np.int32), None, down),
            "delta_time": (scan_time, delta[None, :].astype(np.int32), f"milliseconds since {ref}"),
        }
        _vars(prod, coordinates)
        utc_rows = np.array([utc], dtype=object)
        _var(prod, "time_utc", scan_time, utc_rows, dtype=h5py.string_dtype())
        pixels_table = {
            "qa_value": (pix, qa, "1", QA),
            "latitude": (pix, lat[None].astype(np.float32), "degrees_north"),
            "longitude": (pix, lon[None].astype(np.float32), "degrees_east"),
            "methane_mixing_ratio": (pix, xch4, "1e-9"),
            "methane_mixing_ratio_precision": (pix, uniform(0.8, 2.0), "1e-9"),
            "methane_mixing_ratio_bias_corrected": (pix, xch4_bc, "1e-9"),
        }
        _vars(prod, pixels_table, **fill)
        support = prod.create_group("SUPPORT_DATA")
        geolocations = {
            "solar_zenith_angle": (pix, uniform(50, 56), "degree"),
            "solar_azimuth_angle": (pix, uniform(-160, -150), "degree"),
            "viewing_zenith_angle": (pix, uniform(2, 30), "degree"),
            "viewing_azimuth_angle": (pix, uniform(-100, 80), "degree"),
            "longitude_bounds": (corners, lon_bounds, None),
            "latitude_bounds": (corners, lat_bounds, None),
        }
        _vars(support.create_group("GEOLOCATIONS"), geolocations, **fill)
        kernel = _profile_table(prof, pix, "column_averaging_kernel")
        _vars(support.create_group("DETAILED_RESULTS"), kernel, **fill)
        inputs = _profile_table(
            prof,
            pix,
            "surface_altitude methane_profile_apriori altitude_levels dry_air_subcolumns "
            "surface_pressure pressure_interval",
        )
        _vars(support.create_group("INPUT_DATA"), inputs, **fill)
    return path


def write_tropomi_blended(directory: Path, n: int = 20, seed: int = 3, orbit: int = 2818) -> Path:
    """A TROPOMI+GOSAT blended CH4 file with ``n`` pixels (flat ``nobs``, no viewing angles)."""
    rng = np.random.default_rng(seed)
    name = (
        f"S5P_BLND_L2__CH4____20180430T001950_20180430T020120_{orbit:05d}_03_020400_"
        "20230613T235247.nc"
    )
    path = Path(directory) / name
    start = datetime(2018, 4, 30, 1, 5, 31, 873000)
    utc = [
        (start + timedelta(milliseconds=840 * (i // 4))).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        for i in range(n)
    ]
    lon, lat = _scene(n, rng, -176.0, 0.5)
    # The blended product's surface altitude is 0 everywhere.
    prof = {**_tropomi_profiles((n,), rng), "surface_altitude": np.zeros(n, np.float32)}
    fill = {"_FillValue": NC_FILL_FLOAT}
    xch4 = (1790.0 + rng.normal(0, 6, n)).astype(np.float32)
    qa = rng.choice(np.array([40, 100], dtype=np.uint8), size=n)
    precision = rng.uniform(2, 5, n).astype(np.float32)
    lon_bounds = (lon[:, None] + CORNERS).astype(np.float32)
    lat_bounds = (lat[:, None] + np.roll(CORNERS, 1)).astype(np.float32)
    nobs, corners = ("nobs",), ("nobs", "corner")
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"nobs": n, "layer": 12, "corner": 4}
        f.attrs["title"] = "TROPOMI+GOSAT blended methane"
        pixels = {
            "qa_value": (nobs, qa, "1", QA),
            "latitude": (nobs, lat.astype(np.float32), "degrees_north"),
            "longitude": (nobs, lon.astype(np.float32), "degrees_east"),
            "methane_mixing_ratio": (nobs, xch4, "1e-9"),
            "methane_mixing_ratio_precision": (nobs, precision, "1e-9"),
            "methane_mixing_ratio_bias_corrected": (nobs, xch4 + np.float32(7.0), "1e-9"),
            "methane_mixing_ratio_blended": (nobs, xch4 - np.float32(1.5), "1e-9"),
        }
        _vars(f, pixels, **fill)
        _var(f, "time_utc", nobs, np.array(utc, dtype=object), dtype=h5py.string_dtype())
        bounds = {
            "longitude_bounds": (corners, lon_bounds, None),
            "latitude_bounds": (corners, lat_bounds, None),
        }
        _vars(f, bounds, **fill)
        profiles = _profile_table(
            prof,
            nobs,
            "column_averaging_kernel surface_altitude surface_pressure pressure_interval "
            "methane_profile_apriori dry_air_subcolumns",
        )
        _vars(f, profiles, **fill)
    return path


#: GGG2020's 51 prior and kernel altitudes (km above sea level), 0.4 i + 0.02 i² up to 70.
GGG_ALTITUDES = 0.4 * np.arange(51) + 0.02 * np.arange(51) ** 2
GGG_GASES = {"xco2": ("ppm", 419.0, 0.4), "xch4": ("ppm", 1.87, 0.002), "xco": ("ppb", 88.0, 0.6)}


def _ggg_profiles(rng: np.random.Generator, n: int) -> dict:
    z = GGG_ALTITUDES.astype(np.float32)
    pressure_atm = np.exp(-z[None, :] / 7.6) * rng.uniform(0.995, 1.005, (n, 1))
    return {"z": z, "pressure_atm": pressure_atm.astype(np.float32)}


def _ggg_times(n: int, start: datetime) -> tuple[list[datetime], np.ndarray]:
    times = [start + timedelta(seconds=113.824 * i) for i in range(n)]
    epoch = np.array([(t - datetime(1970, 1, 1)).total_seconds() for t in times])
    return times, epoch


def _ggg_common(f, rng: np.random.Generator, times: list[datetime], epoch: np.ndarray) -> None:
    n = len(times)
    hours = [t.hour + t.minute / 60 + (t.second + t.microsecond / 1e6) / 3600 for t in times]
    days = [t.timetuple().tm_yday for t in times]
    spectra = ("time",)

    def at_site(value: float, units: str) -> tuple:
        return (spectra, np.full(n, value, np.float32), units)

    common = {
        "time": (spectra, epoch, SECONDS, {"calendar": "gregorian"}),
        "year": (spectra, np.array([t.year for t in times], np.int16), "years"),
        "day": (spectra, np.array(days, np.int16), "days"),
        "hour": (spectra, np.array(hours, np.float32), "hours"),
        "lat": at_site(SITE["latitude"], "degrees_north"),
        "long": at_site(SITE["longitude"], "degrees_east"),
        "zobs": at_site(SITE["altitude_km"], "km"),
        "zmin": at_site(SITE["altitude_km"] - 0.01, "km"),
        "solzen": (spectra, np.linspace(62, 38, n).astype(np.float32), "degrees"),
        "azim": (spectra, np.linspace(-100, 150, n).astype(np.float32), "degrees"),
        "pout": (spectra, rng.uniform(850, 856, n).astype(np.float32), "hPa"),
        "tout": (spectra, rng.uniform(18, 25, n).astype(np.float32), "degrees_Celsius"),
    }
    for gas, (unit, centre, err) in GGG_GASES.items():
        common[gas] = (spectra, (centre + rng.normal(0, err, n)).astype(np.float32), unit)
        common[f"{gas}_error"] = (spectra, np.full(n, err, np.float32), unit)
    _vars(f, common)


def write_tccon_public(directory: Path, n: int = 12, seed: int = 4) -> Path:
    """A TCCON GGG2020 public qc file: per-spectrum kernels and wet priors, no flag."""
    rng = np.random.default_rng(seed)
    path = Path(directory) / "zz20230715_20230720.public.qc.nc"
    times, epoch = _ggg_times(n, datetime(2023, 7, 15, 15, 51, 13, 824000))
    prof = _ggg_profiles(rng, n)
    z, spectra = prof["z"], ("time",)
    by_altitude = ("time", "prior_altitude")
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"time": n, "prior_altitude": 51, "ak_altitude": 51}
        f.attrs["source"] = "Products retrieved from solar absorption spectra using GGG2020"
        f.attrs["long_name"] = "synthetic01"
        f.attrs["data_revision"] = "R0"
        _ggg_common(f, rng, times, epoch)
        ak_pressure = (np.median(prof["pressure_atm"], axis=0) * 1013.25).astype(np.float32)
        temperature = (290 - 6.5 * np.minimum(z, 11))[None, :].repeat(n, 0).astype(np.float32)
        h2o = (0.01 * np.exp(-z / 2))[None, :].repeat(n, 0).astype(np.float32)
        median = {"description": "Median pressure for the column averaging kernels vertical grid"}
        priors = {
            "prior_time": (spectra, np.floor(epoch / 10800) * 10800, SECONDS),
            "prior_altitude": (("prior_altitude",), z, "km"),
            "ak_altitude": (("ak_altitude",), z, "km"),
            "ak_pressure": (("ak_altitude",), ak_pressure, "hPa", median),
            "prior_pressure": (by_altitude, prof["pressure_atm"], "atm"),
            "prior_temperature": (by_altitude, temperature, "degrees_Kelvin"),
            "prior_h2o": (by_altitude, h2o, ""),
        }
        _vars(f, priors)
        flags = np.zeros(n, np.int8)
        flags[[2, 5, 8, 9]] = [1, -1, 2, -2]
        extrapolation = {
            "flag_values": np.array([-2, -1, 0, 1, 2], np.int8),
            "flag_meanings": "clamped_to_min_slant_xgas extrapolated_below_lowest_slant_xgas_bin "
            "interpolated_normally extrapolated_above_largest_slant_xgas_bin "
            "clamped_to_max_slant_xgas",
        }
        for gas, (unit, centre, _) in GGG_GASES.items():
            shape = 1.0 - 0.002 * z
            prior = (centre * shape[None, :] * rng.uniform(0.999, 1.001, (n, 1))).astype(np.float32)
            ak = 1.3 - 0.01 * z[None, :] + rng.normal(0, 0.01, (n, 51))
            parts = "million" if unit == "ppm" else "billion"
            wet = {"long_units": f"parts per {parts} (wet mole fraction)"}
            ancillary = {"ancillary_variables": f"extrapolation_flags_ak_{gas}"}
            kernels = {
                f"prior_{gas[1:]}": (by_altitude, prior, unit, wet),
                f"ak_{gas}": (("time", "ak_altitude"), ak.astype(np.float32), "1", ancillary),
                f"extrapolation_flags_ak_{gas}": (spectra, flags, None, extrapolation),
            }
            _vars(f, kernels)
    return path


def write_ggg_private(directory: Path, n: int = 8, seed: int = 5) -> Path:
    """The ``*.private.nc`` of a GGG2020 run: kernel tables by slant xgas, shared priors.

    The first and last spectra's slant xgas lie outside the kernel table.
    """
    rng = np.random.default_rng(seed)
    path = Path(directory) / "zz20230715_20230715.private.nc"
    times, epoch = _ggg_times(n, datetime(2023, 7, 15, 16, 0, 0))
    prof = _ggg_profiles(rng, 2)
    z, spectra, prior_dims = prof["z"], ("time",), ("prior_time", "prior_altitude")
    specs = [f"zz20230715s0e00a.{i + 1:04d}" for i in range(n)]
    width = 21
    chars = np.array([list(s.ljust(width)) for s in specs], dtype="S1")
    prior_index = (np.arange(n) >= n // 2).astype(np.int16)
    airmass = np.linspace(1.2, 3.0, n).astype(np.float32)
    flag = np.zeros(n, np.int16)
    flag[1] = 2
    ak_pressure = (prof["pressure_atm"][0] * 1013.25).astype(np.float32)
    prior_times = np.array([epoch[0], epoch[0] + 10800.0])
    index_of = {"description": "Index of the prior profile associated with each measurement"}
    o2 = {"description": "airmass of O2 in window 7885"}
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {
            "time": n,
            "prior_time": 2,
            "prior_altitude": 51,
            "ak_altitude": 51,
            "ak_slant_xgas_bin": 15,
            "specname": width,
        }
        f.attrs["source"] = "Products retrieved from solar absorption spectra using GGG2020"
        f.attrs["long_name"] = "synthetic_site"
        _ggg_common(f, rng, times, epoch)
        header = {
            "spectrum": (("time", "specname"), chars, None),
            "flag": (spectra, flag, None, {"description": "data quality flag, 0 = good"}),
            "prior_time": (("prior_time",), prior_times, SECONDS),
            "prior_index": (spectra, prior_index, None, index_of),
            "prior_altitude": (("prior_altitude",), z, "km"),
            "prior_pressure": (prior_dims, prof["pressure_atm"], "atm"),
            "ak_altitude": (("ak_altitude",), z, "km"),
            "ak_pressure": (("ak_altitude",), ak_pressure, "hPa"),
            "o2_7885_am_o2": (spectra, airmass, None, o2),
        }
        _vars(f, header)
        for gas, (unit, centre, _) in GGG_GASES.items():
            scale = 1e-6 if unit == "ppm" else 1e-9
            shape = 1.0 - 0.002 * z
            prior = centre * scale * shape[None, :] * np.array([[1.0], [1.001]])
            # the bins span slant xgas from the second to the next-to-last spectrum
            slant = np.linspace(centre * airmass[1], centre * airmass[-2], 15).astype(np.float32)
            table = 1.3 - 0.01 * z[:, None] - 0.05 * np.linspace(0, 1, 15)[None, :]
            in_parts = {"description": f"a priori concentration profile of 1{gas[1:]}, in parts"}
            kernels = {
                f"prior_1{gas[1:]}": (prior_dims, prior.astype(np.float32), "", in_parts),
                f"ak_slant_{gas}_bin": (("ak_slant_xgas_bin",), slant, None),
                f"ak_{gas}": (("ak_altitude", "ak_slant_xgas_bin"), table.astype(np.float32), None),
            }
            _vars(f, kernels)
    return path


_OOF_COLUMNS = [
    ("flag", "i3", None),
    ("spectrum", "a57", None),
    ("year", "f7.0", None),
    ("day", "f6.0", None),
    ("hour", "f8.3", None),
    ("lat(deg)", "f9.3", None),
    ("long(deg)", "f10.3", None),
    ("zobs(km)", "f8.2", None),
    ("zmin(km)", "f8.2", None),
    ("solzen(deg)", "f8.2", None),
    ("azim(deg)", "f8.2", None),
    ("tout(C)", "f7.1", None),
    ("pout(hPa)", "f8.1", None),
    ("xluft", "f8.4", "xluft_error"),
    ("xh2o(ppm)", "f9.2", "xh2o(ppm)_error"),
    ("xco(ppb)", "f7.1", "xco(ppb)_error"),
    ("xch4(ppm)", "f8.4", "xch4(ppm)_error"),
    ("xco2(ppm)", "f9.2", "xco2(ppm)_error"),
]


def write_ggg_oof(directory: Path, n: int = 10, seed: int = 6) -> Path:
    """A GGG2020 ``.oof`` for one EM27/SUN day; spectrum 3 is flagged, one value missing."""
    rng = np.random.default_rng(seed)
    path = Path(directory) / "zz20230715.vav.ada.aia.oof"
    missing = 9.8765e35
    names = []
    for name, _, err in _OOF_COLUMNS:
        names.append(name)
        if err:
            names.append(err)
    rows = []
    for i in range(n):
        hour = 16.0 + 0.05 * i
        values = {
            "flag": 2 if i == 3 else 0,
            "spectrum": f"zz20230715s0e00a.{i + 1:04d}",
            "year": 2023,
            "day": 196,
            "hour": hour,
            "lat(deg)": SITE["latitude"],
            "long(deg)": SITE["longitude"],
            "zobs(km)": SITE["altitude_km"],
            "zmin(km)": SITE["altitude_km"] - 0.01,
            "solzen(deg)": 40.0 - 0.5 * i,
            "azim(deg)": 110.0 + 0.8 * i,
            "tout(C)": 19.0 + 0.1 * i,
            "pout(hPa)": 853.3 + rng.normal(0, 0.2),
            "xluft": 0.9988 + 0.0001 * i,
            "xluft_error": 0.0011,
            "xh2o(ppm)": 1920.0 + i,
            "xh2o(ppm)_error": 3.11,
            "xco(ppb)": 87.8 + 0.1 * i,
            "xco(ppb)_error": 0.6,
            "xch4(ppm)": 1.8698 + 0.0001 * i,
            "xch4(ppm)_error": 0.002,
            "xco2(ppm)": missing if i == 6 else 419.42 + rng.normal(0, 0.3),
            "xco2(ppm)_error": missing if i == 6 else 0.43,
        }
        fields = [f"{values['flag']:3d}", f" {values['spectrum']:<57s}"]
        for name in names[2:]:
            value = values[name]
            fields.append(f" {value:12.5E}" if value == missing else f" {value:12.5f}")
        rows.append("".join(fields))
    header = [
        "written by tests/sounding_files.py (pystilt_dask)",
        "SYNTHETIC FILE: invented values on the GGG2020 .oof layout",
        f"missing:  {missing:.4E}",
        f"format:(i3,1x,a57,{len(names) - 2}(1x,f12.5))",
        "",
        " # Variable  Output  Scale  Format   Unit     Vmin     Vmax     Description",
        '  1 "year"        1  1.0E+00 "f7.0" "      "   2014.0   2035.0   Year',
        '  2 "day"         1  1.0E+00 "f6.0" "      "   0        367      Day of the year',
        '  3 "hour"        1  1.0E+00 "f8.3" "      "  -12.0     36.0     Fractional UT Hour',
        "",
        "  " + "  ".join(names),
    ]
    nhead = len(header) + 1
    text = f"{nhead:4d} {len(names):4d}\n" + "\n".join(header) + "\n" + "\n".join(rows) + "\n"
    path.write_text(text)
    return path


def write_all(directory: Path) -> dict[str, Path]:
    """Write one file of each product into ``directory``; their paths by product."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return {
        "oco2": write_oco2(directory),
        "tropomi": write_tropomi_ch4(directory),
        "blended": write_tropomi_blended(directory),
        "tccon": write_tccon_public(directory),
        "private": write_ggg_private(directory),
        "oof": write_ggg_oof(directory),
    }


if __name__ == "__main__":
    for product, written in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else ".")).items():
        print(f"{product}: {written}")
