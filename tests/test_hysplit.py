"""The HYSPLIT driver: byte parity with the real runs in ../shared/hysplit_runs.

The parser is checked on a fresh run of the real hycs_std on the idealized met.
"""

from __future__ import annotations

import shutil

import dask.config
import numpy as np
import pytest

from pystilt_dask.config import DEFAULT_VARSIWANT, KNOWN_VARSIWANT, HysplitConfig
from pystilt_dask.errors import HysplitNotFoundError
from pystilt_dask.hysplit import executable, read_particle_file, resolve_hysplit, run_hysplit
from pystilt_dask.hysplit.inputs import control_text, setup_text, write_inputs
from pystilt_dask.hysplit.run import hysplit_environment
from pystilt_dask.receptors import PointReceptor
from pystilt_dask.trajectory import run_trajectory

WBB = PointReceptor(time="2019-05-30 10:00", longitude=-111.848, latitude=40.766, altitude=5)
MET_FILES = ["../../met/20190530_00-05_hrrr", "../../met/20190530_06-11_hrrr"]
CASES = {
    "wbb_20190530T1000_np20_h-3": HysplitConfig(numpar=20, n_hours=-3, seed=42),
    "wbb_20190530T1000_np5_h-1_allvars": HysplitConfig(
        numpar=5, n_hours=-1, seed=42, varsiwant=KNOWN_VARSIWANT
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_inputs_equal_the_reference_files_byte_for_byte(shared, case):
    folder = shared / "hysplit_runs" / case
    assert setup_text(CASES[case], WBB) == (folder / "SETUP.CFG").read_text()
    assert control_text(WBB, CASES[case], MET_FILES) == (folder / "CONTROL").read_text()


@pytest.mark.parametrize("case", CASES)
def test_rerun_reproduces_the_reference_particles(shared, tmp_path, case):
    # The reference CONTROL names met as ../../met/, so run two levels below shared's parent.
    workdir = tmp_path / "hysplit_runs" / case
    workdir.mkdir(parents=True)
    (tmp_path / "met").symlink_to(shared / "met")
    config = CASES[case]
    write_inputs(workdir, WBB, config, MET_FILES)
    # CONTROL names links to the met files, the rest is byte for byte the reference's.
    written = (workdir / "CONTROL").read_text().splitlines()
    reference = (shared / "hysplit_runs" / case / "CONTROL").read_text().splitlines()
    assert written[7:11] == ["met/", "m0", "met/", "m1"]
    assert written[:7] + written[11:] == reference[:7] + reference[11:]
    assert (workdir / "met" / "m1").resolve() == (shared / "met" / "20190530_06-11_hrrr").resolve()
    particle_file = run_hysplit(workdir, resolve_hysplit(), 60)
    particles = read_particle_file(particle_file, config.varsiwant)
    reference_file = shared / "hysplit_runs" / case / "PARTICLE_STILT.DAT"
    np.testing.assert_array_equal(particles.to_numpy(), np.loadtxt(reference_file, skiprows=1))
    # The allocator tunables HYSPLIT runs with change its speed, not one byte of its output.
    assert "mxfast" in hysplit_environment()["GLIBC_TUNABLES"]
    assert particle_file.read_bytes() == reference_file.read_bytes()
    assert list(particles.columns) == list(config.varsiwant)
    # STILT never reads the binary copy: it went to /dev/null.
    assert (workdir / "PARTICLE.DAT").resolve() == (
        workdir / "PARTICLE.DAT"
    ).resolve().parent / "null"


def test_parser_matches_numpy_exactly(idealized_config, tmp_path):
    config = idealized_config.model_copy(
        update={"hysplit": HysplitConfig(numpar=20, n_hours=-3, seed=42)}
    )
    run_trajectory(WBB, config, workdir=tmp_path)  # an explicit work directory is kept
    (path,) = tmp_path.rglob("PARTICLE_STILT.DAT")
    table = read_particle_file(path, DEFAULT_VARSIWANT)
    assert len(table) > 20 and table["indx"].nunique() == 20
    np.testing.assert_array_equal(table.to_numpy(), np.loadtxt(path, skiprows=1))


def test_parser_rejects_ragged_and_garbled_files(tmp_path):
    path = tmp_path / "PARTICLE_STILT.DAT"
    path.write_text("header\n -1. 1. 2.5\n -1. 2.\n")
    with pytest.raises(ValueError, match="do not fill rows of 3 columns"):
        read_particle_file(path, ["time", "indx", "long"])
    path.write_text("header\n -1. 1. *****\n")
    with pytest.raises(ValueError, match="not a number"):
        read_particle_file(path, ["time", "indx", "long"])


def test_glibc_tunables_defer_to_the_users(monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mxfast=64")
    with dask.config.set({"stilt.hysplit-glibc-tunables": "glibc.malloc.mxfast=0"}):
        # glibc applies tunables in order: the user's, last, win.
        expected = "glibc.malloc.mxfast=0:glibc.malloc.mxfast=64"
        assert hysplit_environment()["GLIBC_TUNABLES"] == expected
    with dask.config.set({"stilt.hysplit-glibc-tunables": None}):
        assert hysplit_environment()["GLIBC_TUNABLES"] == "glibc.malloc.mxfast=64"
    monkeypatch.delenv("GLIBC_TUNABLES")
    with dask.config.set({"stilt.hysplit-glibc-tunables": ""}):
        assert "GLIBC_TUNABLES" not in hysplit_environment()


def test_resolution_order(tmp_path, monkeypatch):
    wheel = resolve_hysplit()
    assert wheel.executable.name == "hycs_std" and (wheel.data_dir / "ASCDATA.CFG").is_file()
    copy = tmp_path / "bin" / "hycs_std"
    copy.parent.mkdir()
    shutil.copy(wheel.executable, copy)
    monkeypatch.setenv("PATH", f"{copy.parent}:/usr/bin:/bin")
    assert resolve_hysplit().executable == copy  # PATH before the wheel
    monkeypatch.setenv(executable.ENV_VAR, str(wheel.executable))
    assert resolve_hysplit().executable == wheel.executable  # env var before PATH
    assert resolve_hysplit(copy).executable == copy  # config before env var
    with pytest.raises(HysplitNotFoundError, match="not an executable file"):
        resolve_hysplit(tmp_path / "nope")


def test_missing_binary_names_all_four_ways(monkeypatch):
    monkeypatch.delenv(executable.ENV_VAR, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    # Stand-in for a machine without the pystilt wheel installed.
    monkeypatch.setattr(executable, "_wheel_root", lambda: None)
    with pytest.raises(HysplitNotFoundError) as info:
        resolve_hysplit()
    message = str(info.value)
    for way in ("hysplit.executable", executable.ENV_VAR, "PATH", "pip install pystilt"):
        assert way in message
