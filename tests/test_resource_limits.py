"""A store that refuses writes (full, read-only) or is a file: one line, nothing lost.

The full and read-only stores are real mounts (a small tmpfs, a read-only bind
mount): ``chmod`` does not stop root, and CI runs as root. Those tests need root
and ``mount``, and skip without them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pystilt_dask.model import Model


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def _can_mount() -> str | None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return "needs root and mount(8) for a tmpfs and a read-only bind mount"
    return None


needs_mount = pytest.mark.skipif(_can_mount() is not None, reason=str(_can_mount()))


#: The demo's particles per simulation here: the tests are about the store's writes,
#: and at the demo's 100 most of a run's CPU time is HYSPLIT.
NUMPAR = 20


def _demo(stilt, folder: Path, output: str | None = None) -> Path:
    result = stilt("init", "--demo", folder)
    assert result.returncode == 0, result.stderr
    config = folder / "config.yaml"
    lines = config.read_text().splitlines()
    lines = [f"  numpar: {NUMPAR}" if line.startswith("  numpar:") else line for line in lines]
    if output is not None:
        lines = [f"output: {output}" if line.startswith("output:") else line for line in lines]
    config.write_text("\n".join(lines) + "\n")
    assert f"  numpar: {NUMPAR}\n" in config.read_text()
    return config


def _one_line(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert "Traceback" not in result.stdout + result.stderr


def test_an_output_that_is_a_file_is_one_line(tmp_path, stilt):
    config = _demo(stilt, tmp_path / "demo", output="not-a-folder")
    (tmp_path / "demo" / "not-a-folder").write_text("mine\n")
    _one_line(stilt("run", config), "not-a-folder is a file: a project store is a folder")
    assert (tmp_path / "demo" / "not-a-folder").read_text() == "mine\n"


@needs_mount
def test_a_full_disk_stops_the_run_in_one_line_and_loses_nothing(tmp_path, stilt):
    small = tmp_path / "small"
    small.mkdir()
    # Room for the registry and the footprint group, not for every simulation's results
    # (a particle file alone is about 180 kB).
    _mount("-t", "tmpfs", "-o", "size=400k", "tmpfs", str(small))
    try:
        config = _demo(stilt, tmp_path / "demo", output=str(small / "output"))
        _one_line(stilt("run", config), "No space left on device; the run stopped")
        counts = Model.from_yaml(config).status().counts()
        assert counts["complete"] + counts["pending"] == 8 and counts["failed"] == 0, counts
        verify = stilt("verify", config)
        assert verify.returncode == 0, verify.stdout + verify.stderr  # nothing half-written
        _mount("-o", "remount,size=64m", str(small))
        rerun = stilt("run", config)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert Model.from_yaml(config).status().counts()["complete"] == 8
    finally:
        subprocess.run(["umount", str(small)], check=False)


@needs_mount
def test_a_read_only_store_runs_what_needs_no_write_and_refuses_the_rest(tmp_path, stilt):
    config = _demo(stilt, tmp_path / "demo")
    store = tmp_path / "demo" / "output"
    assert len(Model.from_yaml(config).register_pending()) == 8  # `stilt-dask register`
    _mount("--bind", str(store), str(store))
    try:
        _mount("-o", "remount,bind,ro", str(store))
        # Pending simulations cannot be claimed: one line, and they stay pending.
        _one_line(stilt("run", config), "Read-only file system; the run stopped")
        assert Model.from_yaml(config).status().counts()["pending"] == 8
        _mount("-o", "remount,bind,rw", str(store))
        assert stilt("run", config).returncode == 0
        _mount("-o", "remount,bind,ro", str(store))
        # A complete project on a read-only store: status, verify and a no-op run work.
        for command in ("status", "verify", "run"):
            result = stilt(command, config)
            assert result.returncode == 0, (command, result.stdout, result.stderr)
    finally:
        subprocess.run(["umount", str(store)], check=False)
