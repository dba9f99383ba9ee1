"""Configuration: validation messages, defaults, YAML round trip, path anchoring."""

from __future__ import annotations

import pytest

from pystilt_dask.config import FootprintConfig, HysplitConfig, ModelConfig
from pystilt_dask.errors import ConfigError

MET = {"hrrr": {"directory": "met", "file_format": "%Y%m%d_%H", "file_tres": "6h"}}


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(ConfigError, match=r"hysplit: unknown key 'numparr'.*did you mean 'numpar'"):
        ModelConfig.from_dict({"mets": MET, "hysplit": {"numparr": 100}})


def test_rstilt_defaults():
    cfg = HysplitConfig()
    assert (cfg.numpar, cfg.kmix0, cfg.frvs, cfg.krand, cfg.n_hours, cfg.veght) == (
        1000, 150, 0.01, 4, -24, 0.5,
    )  # fmt: skip
    assert cfg.varsiwant[:6] == ("time", "indx", "long", "lati", "zagl", "foot")


def test_seed_implies_krand_2_and_rejects_other_krand():
    assert HysplitConfig(seed=1).krand == 2
    with pytest.raises(ValueError, match="seed needs krand=2"):
        HysplitConfig(seed=1, krand=4)


def test_hnf_plume_needs_its_variables():
    with pytest.raises(ValueError, match="hnf_plume needs varsiwant"):
        HysplitConfig(varsiwant=("time", "indx", "long", "lati", "foot"))
    HysplitConfig(varsiwant=("time", "indx", "long", "lati", "foot"), hnf_plume=False)


def test_transport_error_parameters_come_together():
    with pytest.raises(ValueError, match="missing \\['horcoruverr'\\]"):
        HysplitConfig(siguverr=2.6, tluverr=260, zcoruverr=450)
    assert HysplitConfig(siguverr=2.6, tluverr=260, zcoruverr=450, horcoruverr=14).winderrtf == 1


def test_footprint_yres_defaults_to_xres():
    grid = FootprintConfig(xmin=-112, xmax=-111, ymin=40, ymax=41, xres=0.01)
    assert grid.yres == 0.01 and grid.is_longlat
    assert not FootprintConfig(
        xmin=-112, xmax=-111, ymin=40, ymax=41, xres=1000, projection="+proj=utm +zone=12"
    ).is_longlat


def test_yaml_round_trip_and_relative_paths(tmp_path):
    data = {
        "mets": MET,
        "hysplit": {"n_hours": -6, "numpar": 200, "seed": 3},
        "footprints": {
            "default": {"xmin": -113, "xmax": -111, "ymin": 40, "ymax": 41.5, "xres": 0.01}
        },
        "profiles": {"hpc": {"backend": "slurm", "n_workers": 4}},
    }
    path = tmp_path / "config.yaml"
    ModelConfig.from_dict(data).to_yaml(path)
    loaded = ModelConfig.from_yaml(path)
    assert loaded.mets["hrrr"].directory == str(tmp_path / "met")
    assert loaded.receptors is None  # no table beside it: run what the store holds
    (tmp_path / "receptors.csv").write_text("time,longitude,latitude,altitude\n")
    assert ModelConfig.from_yaml(path).receptors == str(tmp_path / "receptors.csv")
    assert loaded.output == str(tmp_path / "output")
    assert loaded.hysplit == ModelConfig.from_dict(data).hysplit
    assert loaded.execution_for("hpc").backend == "slurm"
    with pytest.raises(ConfigError, match="unknown execution profile 'laptop'"):
        loaded.execution_for("laptop")


def test_bad_values_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="mets.hrrr.file_tres: file_tres 'often'"):
        ModelConfig.from_dict({"mets": {"hrrr": {**MET["hrrr"], "file_tres": "often"}}})
    with pytest.raises(ConfigError, match="does not exist"):
        ModelConfig.from_yaml(tmp_path / "missing.yaml")


def test_unreadable_projection_names_the_field():
    footprint = {"xmin": -112, "xmax": -111, "ymin": 40, "ymax": 41, "xres": 0.01}
    with pytest.raises(ConfigError, match=r"footprints\.fine\.projection: projection 'EPSG:0'"):
        ModelConfig.from_dict(
            {"mets": MET, "footprints": {"fine": {**footprint, "projection": "EPSG:0"}}}
        )
    with pytest.raises(ConfigError, match="neither geographic nor projected"):
        ModelConfig.from_dict(
            {"mets": MET, "footprints": {"fine": {**footprint, "projection": "EPSG:4978"}}}
        )


@pytest.mark.parametrize("projection", ["EPSG:4326", "+proj=longlat", "OGC:CRS84", "+proj=latlong"])
def test_geographic_spellings_are_longlat(projection):
    config = FootprintConfig(
        xmin=-112, xmax=-111, ymin=40, ymax=41, xres=0.01, projection=projection
    )
    assert config.is_longlat
