"""PYSTILT migration: its configs load as ours and give byte-identical particles.

PYSTILT itself (the ``pystilt`` wheel, ``import stilt``) runs a small project on
the idealized met with a seed: two variants (unscaled, and a scalar
``ziscale: 0.8``), a point and a column receptor. Its resolved settings
(``particles/settings=…/_settings.yaml``) are migrated and run here, on a real
LocalCluster with the same ``hycs_std``; every column HYSPLIT wrote must be equal
byte for byte.
"""

from __future__ import annotations

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
from pystilt_dask.receptors import ColumnReceptor, PointReceptor

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
        mine = model.trajectories.load(ours.sim_id)
        reference = pystilt_particles(pystilt_project, variant, theirs.id)
        assert len(mine) == len(reference) > 0
        hysplit = reference.columns.drop(["receptor", "release_height", "foot"], errors="ignore")
        assert "foot_no_hnf_dilution" in hysplit  # HYSPLIT's own foot
        for column in hysplit:
            np.testing.assert_array_equal(
                mine[COLUMNS.get(column, column)].to_numpy(float),
                reference[column].to_numpy(float),
                err_msg=f"{ours.sim_id} {column}",
            )
        # The near-field correction is computed here in R-STILT's order of operations,
        # in PYSTILT vectorised: a few rows differ in the last bit.
        np.testing.assert_allclose(mine["foot"], reference["foot"], rtol=1e-15, atol=0)


def test_pystilt_config_yaml_loads_as_the_resolved_settings(pystilt_project, idealized_met):
    text = (pystilt_project / "config.yaml").read_text()
    assert "ziscale: 1.0" in text  # the scalar our own loader refuses
    with pytest.raises(ConfigError):
        ModelConfig.from_yaml(pystilt_project / "config.yaml")
    with pytest.raises(ConfigError, match=r"variants base, zi08 differ .*\(ziscale\)"):
        from_pystilt(pystilt_project / "config.yaml")
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
    for expected in ("mets.hrrr.download", "mets.hrrr.subgrid_enable", "realizations",
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
    refused = runner.invoke(app, ["migrate", str(pystilt_project), str(tmp_path / "x.yaml")])
    assert refused.exit_code == 2 and "differ in HYSPLIT settings" in refused.stderr

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
