"""PYSTILT migration: its configs load as ours and give byte-identical particles.

PYSTILT itself (the ``pystilt`` wheel, ``import stilt``) runs a small project on
the idealized met with a seed: two variants (unscaled, and a scalar
``ziscale: 0.8``), a point and a column receptor. Its resolved settings
(``particles/settings=…/_settings.yaml``) are migrated and run here, on a real
LocalCluster with the same ``hycs_std``; every column HYSPLIT wrote must be equal
byte for byte.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from distributed import Client, LocalCluster
from footprint_helpers import pystilt_accessor
from typer.testing import CliRunner

from pystilt_dask.cli import app
from pystilt_dask.config import ModelConfig
from pystilt_dask.errors import ConfigError
from pystilt_dask.migrate import MigrationWarning, from_pystilt
from pystilt_dask.model import Model
from pystilt_dask.receptors import (
    ColumnReceptor,
    MultiPointReceptor,
    PointReceptor,
    read_receptors,
)

stilt = pytest.importorskip("stilt", reason="PYSTILT (the pystilt wheel) runs the reference")

GRID = {"xmin": -112.3, "xmax": -111.5, "ymin": 40.4, "ymax": 41.0, "xres": 0.01, "yres": 0.01}
TIME = "2019-05-30 10:00"
OURS = [
    PointReceptor(time=TIME, longitude=-111.848, latitude=40.766, altitude=5),
    ColumnReceptor(time=TIME, longitude=-111.9, latitude=40.7, bottom=0, top=1000),
]
THEIRS = [
    stilt.PointReceptor(time=TIME, longitude=-111.848, latitude=40.766, altitude=5),
    stilt.ColumnReceptor(time=TIME, longitude=-111.9, latitude=40.7, bottom=0, top=1000),
]
#: PYSTILT's particle columns under R-STILT's names, as ours stores them.
COLUMNS = {"age": "time", "particle": "indx", "lon": "long", "lat": "lati"}
runner = CliRunner()


@pytest.fixture(scope="module")
def pystilt_project(tmp_path_factory, idealized_met) -> Path:
    """A PYSTILT project run by PYSTILT: 2 variants x (point, column), seed 7."""
    folder = tmp_path_factory.mktemp("pystilt") / "project"
    project = stilt.Project.init(
        folder,
        receptors=THEIRS,
        mets={"idealized": idealized_met},
        variants={"base": {}, "zi08": {"ziscale": 0.8}},
        n_hours=-2,
        numpar=50,
        seed=7,
        krand=2,
        ziscale=1.0,
        grid=GRID,
    )
    with pystilt_accessor():
        project.run()
    assert set(project.status()["state"]) == {"complete"}, project.status()
    return folder


@pytest.fixture(scope="module")
def client():
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, resources={"hysplit": 1}, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def settings_file(project: Path, variant: str, tree: str = "particles") -> Path:
    (path,) = (project / "output" / tree).glob(f"settings={variant}-*/_settings.yaml")
    return path


def pystilt_particles(project: Path, variant: str, receptor_id: str) -> pd.DataFrame:
    (path,) = settings_file(project, variant).parent.glob(f"date=*/{receptor_id}.parquet")
    return pd.read_parquet(path)


@pytest.mark.parametrize("variant", ["base", "zi08"])
def test_resolved_pystilt_settings_give_byte_identical_particles(
    pystilt_project, variant, idealized_met, client, tmp_path
):
    config = from_pystilt(
        settings_file(pystilt_project, variant),
        mets={"idealized": idealized_met},
        output=str(tmp_path / "store"),
    )
    assert config.hysplit.seed == 7 and config.hysplit.krand == 2
    assert config.hysplit.ziscale == (None if variant == "base" else (0.8, 0.8))
    assert list(config.footprints) == [variant]
    model = Model(config.output, OURS, config)
    assert set(model.run(client=client, quiet=True).values()) == {"complete"}
    for ours, theirs in zip(OURS, THEIRS, strict=True):
        assert_particles_equal(
            model.trajectories.load(ours.sim_id),
            pystilt_particles(pystilt_project, variant, theirs.id),
            ours.sim_id,
        )


def assert_particles_equal(mine: pd.DataFrame, reference: pd.DataFrame, sim_id: str) -> None:
    """Every column HYSPLIT wrote equal byte for byte; the near-field ``foot`` to 1e-15."""
    assert len(mine) == len(reference) > 0
    hysplit = reference.columns.drop(["receptor", "release_height", "foot"], errors="ignore")
    assert "foot_no_hnf_dilution" in hysplit  # HYSPLIT's own foot
    for column in hysplit:
        np.testing.assert_array_equal(
            mine[COLUMNS.get(column, column)].to_numpy(float),
            reference[column].to_numpy(float),
            err_msg=f"{sim_id} {column}",
        )
    # The near-field correction is computed here in R-STILT's order of operations,
    # in PYSTILT vectorised: a few rows differ in the last bit.
    np.testing.assert_allclose(mine["foot"], reference["foot"], rtol=1e-15, atol=0)


def test_pystilt_config_yaml_loads_as_the_resolved_settings(pystilt_project, idealized_met):
    text = (pystilt_project / "config.yaml").read_text()
    assert "ziscale: 1.0" in text  # the scalar our own loader refuses
    with pytest.raises(ConfigError):
        ModelConfig.from_yaml(pystilt_project / "config.yaml")
    for variant in ("base", "zi08"):
        from_config = from_pystilt(pystilt_project, variant=variant)
        from_run = from_pystilt(
            settings_file(pystilt_project, variant), mets={"idealized": idealized_met}
        )
        assert from_config.result_changes(from_run) == []
        assert from_config.footprints == from_run.footprints
        assert from_config.mets == from_run.mets
        assert from_config.receptors == str(pystilt_project / "receptors-stilt-dask.csv")
        assert from_config.output == f"{pystilt_project / 'output'}-stilt-dask"
    footprint = from_pystilt(
        settings_file(pystilt_project, "zi08", "footprints"), mets={"idealized": idealized_met}
    )
    assert footprint.result_changes(from_run) == [] and footprint.footprints == from_run.footprints


def test_two_pystilt_variants_become_one_project(pystilt_project, client, tmp_path):
    config = from_pystilt(pystilt_project / "config.yaml", output=str(tmp_path / "store"))
    assert config.hysplit.ziscale is None and list(config.footprints) == ["base"]
    (name,) = config.variants
    assert name == "zi08" and config.variants[name].hysplit == {"ziscale": [0.8, 0.8]}
    assert list(config.variant(name).footprints) == ["zi08"]
    for variant in ("base", "zi08"):
        alone = from_pystilt(pystilt_project, variant=variant)
        ours = config.variant(None if variant == "base" else variant)
        assert ours.result_changes(alone) == [] and ours.footprints == alone.footprints
    model = Model(config.output, OURS, config)
    assert set(model.run(client=client, quiet=True).values()) == {"complete"}
    for variant, ours in (("base", None), ("zi08", "zi08")):
        for mine, theirs in zip(OURS, THEIRS, strict=True):
            assert_particles_equal(
                model.trajectories.load(mine.sim_id, variant=ours),
                pystilt_particles(pystilt_project, variant, theirs.id),
                mine.sim_id,
            )


def write_pystilt_config(tmp_path: Path, **settings) -> Path:
    data = {
        "mets": {"hrrr": {"directory": "met", "file_format": "%Y%m%d_%H", "file_tres": "6h"}},
        "variants": {"hrrr": {}},
        **settings,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_pystilt_defaults_and_spellings_are_translated(tmp_path):
    transforms = [{"kind": "first_order_lifetime", "lifetime_hours": 4.0}]
    path = write_pystilt_config(
        tmp_path,
        variants={"hrrr": {}, "coarse": {"grid": {"xres": 0.1, "yres": 0.1}},
                  "bare": {"grid": None}},
        grid={**GRID, "crs": "+proj=longlat"},
        transforms=transforms,
        exe_dir="/opt/hysplit",
        ziscale=[[0.9, 1.1]],
        execution={"backend": "slurm", "n_workers": 8, "time": 150, "mem": "8G",
                   "partition": "lin", "qos": "fast", "setup": ["module load x"], "timeout": 600},
    )  # fmt: skip
    config = from_pystilt(path)
    assert config.hysplit.numpar == 200  # PYSTILT's default, not ours
    assert "pres" in config.hysplit.varsiwant
    assert config.hysplit.ziscale == (0.9, 1.1)
    assert config.hysplit.executable == "/opt/hysplit/hycs_std"
    assert config.hysplit.timeout == 600
    assert list(config.footprints) == ["hrrr", "coarse"]  # "bare" makes particles only
    assert config.footprints["coarse"].xres == 0.1 and config.footprints["coarse"].xmin == -112.3
    assert config.mets["hrrr"].directory == str(tmp_path / "met")
    assert config.execution.model_dump(exclude_defaults=True) == {
        "backend": "slurm",
        "n_workers": 8,
        "cluster": {
            "walltime": "02:30:00",  # from PYSTILT's minutes
            "memory": "8G",
            "queue": "lin",
            "job_extra_directives": ["--qos=fast"],
            "job_script_prologue": ["module load x"],
        },
    }
    dumped = yaml.safe_load(config.to_yaml())
    assert dumped["footprints"]["hrrr"]["transforms"] == transforms  # passed through unchanged


def test_settings_without_equivalent_are_each_named(tmp_path):
    path = write_pystilt_config(
        tmp_path,
        mets={"hrrr": {"directory": "met", "download": "hrrr", "subgrid_enable": True}},
        variants={"hrrr": {"realizations": 3}},
        data_dir="/opt/tables",
        ziscale=-1,
        geometry={"kind": "h3", "resolution": 5, "bounds": GRID},
    )
    with pytest.raises(ConfigError) as error:
        from_pystilt(path)
    message = str(error.value)
    for expected in ("mets.hrrr.download", "mets.hrrr.subgrid_enable",
                     "data_dir", "ziscale < 0", "variants.hrrr.geometry"):  # fmt: skip
        assert expected in message
    path = write_pystilt_config(
        tmp_path, execution={"keep_workdir": True, "array_parallelism": 4}, grid=GRID
    )
    with pytest.warns(MigrationWarning) as notes:
        from_pystilt(path)
    assert [str(n.message).split(" ")[0] for n in notes] == [
        "execution.keep_workdir",
        "execution.array_parallelism",
    ]


def test_a_pystilt_ensemble_keeps_its_realizations(tmp_path):
    path = write_pystilt_config(
        tmp_path, variants={"hrrr": {"realizations": 3}}, seed=7, krand=2, grid=GRID
    )
    config = from_pystilt(path)
    assert config.hysplit.realizations == 3 and config.hysplit.seed == 7
    path = write_pystilt_config(tmp_path, variants={"hrrr": {"realizations": 3}}, grid=GRID)
    with pytest.raises(ConfigError, match="realizations: 3 needs a seed"):
        from_pystilt(path)


def test_resolved_settings_need_mets(pystilt_project):
    with pytest.raises(ConfigError, match="not where the files are: give mets"):
        from_pystilt(settings_file(pystilt_project, "base"))


def test_cli_migrate_writes_a_config_that_loads(pystilt_project, tmp_path):
    out = tmp_path / "ours" / "config.yaml"
    result = runner.invoke(app, ["migrate", str(pystilt_project), str(out), "--variant", "zi08"])
    assert result.exit_code == 0, result.output
    config = ModelConfig.from_yaml(out)
    assert config.result_changes(from_pystilt(pystilt_project, variant="zi08")) == []
    assert runner.invoke(app, ["migrate", str(pystilt_project), str(out)]).exit_code == 2
    whole = runner.invoke(app, ["migrate", str(pystilt_project), str(tmp_path / "x.yaml")])
    assert whole.exit_code == 0, whole.output
    assert list(ModelConfig.from_yaml(tmp_path / "x.yaml").variants) == ["zi08"]

    pointed = runner.invoke(app, ["status", str(pystilt_project / "config.yaml")])
    assert pointed.exit_code == 2
    assert "is a PYSTILT config.yaml: translate it first with `stilt-dask migrate" in (
        pointed.stderr
    )

    mets = pystilt_project / "config.yaml"
    resolved = runner.invoke(
        app, ["migrate", str(settings_file(pystilt_project, "base")), "--mets", str(mets)]
    )
    assert resolved.exit_code == 0, resolved.output
    printed = ModelConfig.from_dict(yaml.safe_load(resolved.stdout))
    assert printed.result_changes(from_pystilt(pystilt_project, variant="base")) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing was dropped
        from_pystilt(pystilt_project, variant="base")


#: A PYSTILT receptor table grouping rows by r_idx: a point, a column (its rows
#: top first), a multipoint of three locations, and the point listed again.
R_IDX_TABLE = """r_idx,time,longitude,latitude,altitude
0,2019-05-30 10:00,-111.848,40.766,5
col,2019-05-30 10:00,-111.9,40.7,1000
col,2019-05-30 10:00,-111.9,40.7,0
slant,2019-05-30 10:00,-111.85,40.75,10
slant,2019-05-30 10:00,-111.8,40.78,50
slant,2019-05-30 10:00,-111.75,40.8,100
3,2019-05-30 10:00,-111.848,40.766,5
"""
R_IDX_RECEPTORS = [
    PointReceptor(time=TIME, longitude=-111.848, latitude=40.766, altitude=5),
    ColumnReceptor(time=TIME, longitude=-111.9, latitude=40.7, bottom=0, top=1000),
    MultiPointReceptor(
        time=TIME, longitudes=(-111.85, -111.8, -111.75), latitudes=(40.75, 40.78, 40.8),
        altitudes=(10, 50, 100),
    ),
]  # fmt: skip


def write_r_idx_project(folder: Path, met_directory: str, **settings) -> Path:
    """A PYSTILT project (config.yaml, receptors.csv) with r_idx receptor groups."""
    folder.mkdir(parents=True)
    config = {
        "mets": {"idealized": {"directory": met_directory, "file_format": "%Y%m%d_%H",
                               "file_tres": "6h"}},
        "variants": {"base": {}},
        "n_hours": -2, "numpar": 50, "seed": 7, "krand": 2, "grid": GRID,
        **settings,
    }  # fmt: skip
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (folder / "receptors.csv").write_text(R_IDX_TABLE)
    return folder


@pytest.fixture(scope="module")
def r_idx_project(tmp_path_factory, idealized_met) -> Path:
    """The r_idx project, run by PYSTILT."""
    folder = write_r_idx_project(
        tmp_path_factory.mktemp("pystilt-r-idx") / "project", idealized_met["directory"]
    )
    project = stilt.Project(folder)
    with pystilt_accessor():
        project.run()
    assert set(project.status()["state"]) == {"complete"}, project.status()
    return folder


def test_r_idx_groups_become_our_column_and_multipoint_receptors(r_idx_project, client, tmp_path):
    config = from_pystilt(r_idx_project, output=str(tmp_path / "store"))
    assert read_receptors(config.receptors) == R_IDX_RECEPTORS
    reference = stilt.Project(r_idx_project).footprints()
    theirs = [str(r) for r in reference["receptor"].values]
    assert len(theirs) == len(R_IDX_RECEPTORS)  # the point listed again is one receptor
    model = Model(config.output, config.receptors, config)
    assert set(model.run(client=client, quiet=True).values()) == {"complete"}
    foot = model.footprints["base"].load()
    assert list(foot["simulation"].values) == [r.sim_id for r in R_IDX_RECEPTORS]
    np.testing.assert_array_equal(foot["lag"], reference["hour"])
    for dim in ("lat", "lon"):
        np.testing.assert_allclose(foot[dim], reference[dim], rtol=1e-12)
    for ours, their_id in zip(R_IDX_RECEPTORS, theirs, strict=True):
        assert_particles_equal(
            model.trajectories.load(ours.sim_id),
            pystilt_particles(r_idx_project, "base", their_id),
            ours.sim_id,
        )
        mine = foot.sel(simulation=ours.sim_id).values
        expected = reference["foot"].sel(receptor=their_id).values
        assert expected.sum() > 0
        np.testing.assert_allclose(mine, expected, rtol=1e-6, atol=0, err_msg=ours.sim_id)


def test_cli_migrate_of_a_relative_folder_runs_from_any_folder(tmp_path, idealized_met, env):
    met = Path(idealized_met["directory"])
    project = write_r_idx_project(
        tmp_path / "pyst", os.path.relpath(met, tmp_path / "pyst"), output="out", numpar=10
    )
    stilt_dask = str(Path(sys.executable).parent / "stilt-dask")
    migrated = subprocess.run(
        [stilt_dask, "migrate", "pyst", "ours/config.yaml"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert migrated.returncode == 0, migrated.stderr
    written = yaml.safe_load((tmp_path / "ours" / "config.yaml").read_text())
    project = project.resolve()
    assert written["receptors"] == str(project / "receptors-stilt-dask.csv")
    assert written["mets"]["idealized"]["directory"] == str(met.resolve())
    assert written["output"] == f"{project / 'out'}-stilt-dask"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = subprocess.run(
        [stilt_dask, "run", "../ours/config.yaml", "--n-workers", "1"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    model = Model.from_yaml(tmp_path / "ours" / "config.yaml")
    assert model.simulations.ids() == [r.sim_id for r in R_IDX_RECEPTORS]
    assert model.simulations.incomplete() == []


def csv(header: str, *rows: str) -> str:
    """A receptor table; ``@`` in a row is the receptor time."""
    return "\n".join([header, *rows]).replace("@", "2019-05-30 10:00") + "\n"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (csv("time,lon,lat,zmsl", "@,-111.9,40.7,-600"), "row 1: heights above sea level must"),
        (csv("r_idx,time,lon,lat,z,height_ref", "a,@,-111.9,40.7,5,msl", "a,@,-111.8,40.7,5,agl"),
         "r_idx=a: rows of one receptor need one altitude_ref"),
        (csv("r_idx,time,lon,lat,z,altitude_ref", "a,@,-111.9,40.7,5,agl", "b,@,-111.8,40.7,5,"),
         "r_idx=b: altitude_ref must be 'agl' or 'msl'"),
        (csv("r_idx,time,lon,lat,z", "c,@,-111.9,40.7,0", "c,2019-05-30 11:00,-111.9,40.7,9"),
         "r_idx=c: rows of one receptor need one time"),
        (csv("r_idx,time,lon,lat,z", "c,@,-111.9,40.7,5", "c,@,-111.9,40.7,5"),
         "r_idx=c: a column's two heights must differ"),
        (csv("r_idx,time,lon,lat,z", "m,@,-111.9,40.7,0", "m,@,-111.8,40.7,9",
             "m,@,-111.9,40.7,20"),
         "r_idx=m: a multipoint receptor's points need distinct horizontal locations"),
        (csv("time,lon,lat", "@,-111.9,40.7"), "no column for ['altitude']"),
    ],
    ids=["zmsl", "msl", "no-reference", "times", "flat-column", "repeated-location",
         "columns"],
)  # fmt: skip
def test_receptor_tables_pystilt_refuses_or_we_cannot_hold_are_one_line_errors(
    tmp_path, table, message
):
    path = write_pystilt_config(tmp_path)
    (tmp_path / "receptors.csv").write_text(table)
    with pytest.raises(ConfigError, match=re.escape(message)):
        from_pystilt(path)
    assert not (tmp_path / "receptors-stilt-dask.csv").exists()


def test_receptor_table_without_r_idx_is_points_and_may_go_elsewhere(tmp_path):
    path = write_pystilt_config(tmp_path)
    (tmp_path / "receptors.csv").write_text(
        csv(
            "TIME,Long,Lati,zagl",
            "2019-05-30T03:00-07:00,-111.9,40.7,0",
            "2019-05-30T03:00-07:00,-111.9,40.7,9",
        )
    )
    config = from_pystilt(path, receptors=tmp_path / "ours" / "receptors.csv")
    assert config.receptors == str(tmp_path / "ours" / "receptors.csv")
    assert read_receptors(config.receptors) == [
        PointReceptor(time=TIME, longitude=-111.9, latitude=40.7, altitude=z) for z in (0, 9)
    ]


def test_heights_above_sea_level_become_msl_receptors(tmp_path):
    path = write_pystilt_config(tmp_path)
    (tmp_path / "receptors.csv").write_text(
        csv("time,lon,lat,zmsl", "2019-05-30T03:00-07:00,-111.9,40.7,1500")
    )
    config = from_pystilt(path)
    (receptor,) = read_receptors(config.receptors)
    assert receptor == PointReceptor(
        time=TIME, longitude=-111.9, latitude=40.7, altitude=1500, altitude_ref="msl"
    )
    assert receptor.sim_id.endswith("msl")


def test_relative_paths_start_from_the_pystilt_project_folder(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    write_pystilt_config(
        project,
        exe_dir="hysplit/exec",
        output="s3://bucket/out/",
        grid=GRID,
        transforms=[
            {"kind": "averaging_kernel", "table": "kernels"},
            {"kind": "averaging_kernel", "table": "soundings/ak.csv"},
            {"kind": "averaging_kernel", "table": "/data/ak.parquet"},
        ],
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYSTILT_HOME", str(project))
    config = from_pystilt("project")
    project = project.resolve()
    assert config.mets["hrrr"].directory == str(project / "met")
    assert config.hysplit.executable == str(project / "hysplit" / "exec" / "hycs_std")
    assert config.output == "s3://bucket/out-stilt-dask"
    tables = [t.table for t in config.footprints["hrrr"].transforms]
    assert tables == [
        str(project / "tables" / "kernels.parquet"),
        str(project / "soundings" / "ak.csv"),
        "/data/ak.parquet",
    ]
    assert from_pystilt("$PYSTILT_HOME/config.yaml") == config


def test_a_relative_settings_file_gives_an_absolute_store(
    pystilt_project, idealized_met, monkeypatch
):
    """The store is found from the file's own place; a relative met from the working folder."""
    monkeypatch.chdir(pystilt_project.parent)
    met = {**idealized_met, "directory": os.path.relpath(idealized_met["directory"])}
    settings = settings_file(pystilt_project, "base").relative_to(pystilt_project.parent)
    config = from_pystilt(settings, mets={"idealized": met})
    assert config.output == f"{pystilt_project.resolve() / 'output'}-stilt-dask"
    assert config.mets["idealized"].directory == str(Path(idealized_met["directory"]).resolve())
