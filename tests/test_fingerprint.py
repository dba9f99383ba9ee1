"""The settings fingerprint: what changes results, equal in every process."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from pystilt_dask.config import ModelConfig
from pystilt_dask.fingerprint import Fingerprint

BOX = {"xmin": -112.5, "xmax": -111.2, "ymin": 40.3, "ymax": 41.2, "xres": 0.01}
KERNEL = "receptor_id,level,value\nr,0,1.0\nr,3000,0.5\n"


def _config(tmp_path, **hysplit) -> dict:
    return {
        "mets": {"hrrr": {"directory": str(tmp_path), "file_format": "%Y%m%d"}},
        "hysplit": {"numpar": 200, "seed": 4, **hysplit},
        "footprints": {"default": BOX},
    }


def _token(data: dict, base=None) -> str:
    return Fingerprint.of(ModelConfig.from_dict(data, base=base)).token


def test_two_processes_agree(tmp_path, env):
    config = ModelConfig.from_dict(_config(tmp_path))
    config.to_yaml(tmp_path / "config.yaml")
    code = (
        "import sys; from pystilt_dask.config import ModelConfig;"
        "from pystilt_dask.fingerprint import Fingerprint;"
        "print(Fingerprint.of(ModelConfig.from_yaml(sys.argv[1])).token)"
    )
    tokens = {
        subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "config.yaml")],
            capture_output=True, text=True, check=True,
            env={**env, "PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2")
    }  # fmt: skip
    assert tokens == {Fingerprint.of(config).token}


@pytest.mark.parametrize(
    "change",
    [
        {"hysplit": {"timeout": 60}},
        {"hysplit": {"executable": "/opt/hysplit/hycs_std"}},
        {"hysplit": {"realizations": 5}},  # realization 0 stays the plain run
        {"execution": {"retries": 9, "n_workers": 3, "crop": {"reach_km": 100}}},
        {"profiles": {"hpc": {"backend": "slurm"}}},
        {"output": "elsewhere"},
    ],
)
def test_run_control_leaves_it_unchanged(tmp_path, change):
    data = _config(tmp_path)
    changed = {**data, **{k: {**data.get(k, {}), **v} if isinstance(v, dict) else v
                          for k, v in change.items()}}  # fmt: skip
    assert _token(changed) == _token(data)


@pytest.mark.parametrize(
    "change",
    [{"hysplit": {"numpar": 201}}, {"hysplit": {"seed": 5}}, {"hysplit": {"n_hours": -12}},
     {"footprints": {"default": {**BOX, "xres": 0.02}}},
     {"footprints": {"default": BOX, "other": BOX}}],
)  # fmt: skip
def test_a_result_setting_changes_it(tmp_path, change):
    data = _config(tmp_path)
    changed = {**data, **{k: {**data[k], **v} for k, v in change.items()}}
    assert _token(changed) != _token(data)


def test_a_kernel_table_counts_by_its_contents_not_its_path(tmp_path):
    for folder in ("a", "b", "c"):
        (tmp_path / folder).mkdir()
    (tmp_path / "a" / "kernels.csv").write_text(KERNEL)
    shutil.copy(tmp_path / "a" / "kernels.csv", tmp_path / "b" / "kernels.csv")
    (tmp_path / "c" / "kernels.csv").write_text(KERNEL.replace("0.5", "0.6"))

    def with_table(folder: str) -> str:
        transform = {"kind": "averaging_kernel", "table": "kernels.csv"}
        data = {**_config(tmp_path), "footprints": {"col": {**BOX, "transforms": [transform]}}}
        return _token(data, base=tmp_path / folder)

    assert with_table("a") == with_table("b")
    assert with_table("c") != with_table("a")


def test_the_stand_in_transport_never_passes_for_hysplit(tmp_path):
    data = _config(tmp_path)
    standin = {**data, "hysplit": {**data["hysplit"], "executable": "/x/hycs_std-standin"}}
    assert _token(standin) != _token(data)
    changes = ModelConfig.from_dict(data).result_changes(ModelConfig.from_dict(standin))
    assert changes == ["hysplit.transport: None → 'standin'"]
