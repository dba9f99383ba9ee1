"""The met digest manifest: written by ``stilt-dask met-manifest``, checked before HYSPLIT runs.

ARL's per-record checksum is a byte sum, so changes that cancel in the sum pass
it; the manifest's SHA-256 finds any change. The met is a private, writable copy
of the session's idealized met (the ``idealized_met`` fixture is read-only and shared).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import arlmet
import pandas as pd
import pytest
from arlmet.header import Header
from arlmet.packing import calculate_checksum

from pystilt_dask.config import MetConfig, ModelConfig
from pystilt_dask.errors import MeteorologyError
from pystilt_dask.meteorology.coverage import check_coverage
from pystilt_dask.meteorology.files import find_met_files, run_window
from pystilt_dask.meteorology.manifest import (
    MANIFEST_NAME,
    file_digest,
    parse_manifest,
    read_manifest,
    verify_met_files,
    write_manifest,
)
from pystilt_dask.model import Model
from pystilt_dask.receptors import PointReceptor
from pystilt_dask.store import records

POINT = PointReceptor(time="2019-05-30 10:00", longitude=-111.848, latitude=40.766, altitude=5)
N_HOURS = -1  # reads 09:00–10:00, both in 20190530_06-11_ideal
READ = "20190530_06-11_ideal"


@pytest.fixture
def met_dir(met_copy: Path) -> Path:
    return met_copy


def _met(directory: Path) -> MetConfig:
    return MetConfig(directory=str(directory), file_format="%Y%m%d_%H", file_tres="6h")


def _config(directory: Path) -> ModelConfig:
    return ModelConfig(
        mets={"idealized": _met(directory)},
        hysplit={"n_hours": N_HOURS, "numpar": 20, "seed": 7},
        footprints={
            "default": {"xmin": -112.5, "xmax": -111.2, "ymin": 40.3, "ymax": 41.2, "xres": 0.01}
        },
    )


def _move_mtime(path: Path) -> None:
    # Digests are cached by (path, size, mtime_ns): make sure a rewrite moves mtime
    # even on a filesystem with coarse timestamps.
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def change_keeping_checksum(path: Path, time: str, variable: str, level: int) -> None:
    """Raise one packed byte of a record by one and lower the next by one.

    The byte sum, and with it ARL's checksum, stays the same (the idealized UWND
    field is uniform, so its packed bytes are all equal and a swap would change
    nothing); the wind HYSPLIT unpacks does not.
    """
    with arlmet.File(path) as met:
        record = met[pd.Timestamp(time)][(level, variable)]
        start = record.position + Header.N_BYTES
        n_packed = record.n_bytes - Header.N_BYTES
        stored = record.checksum
    data = bytearray(path.read_bytes())
    packed = data[start : start + n_packed]
    assert 0 < packed[10] < 255 and 0 < packed[11] < 255
    packed[10] += 1
    packed[11] -= 1
    assert calculate_checksum(bytes(packed)) == stored != 0
    data[start : start + n_packed] = packed
    path.write_bytes(bytes(data))
    _move_mtime(path)


def test_met_manifest_writes_what_sha256sum_checks(met_dir: Path, stilt) -> None:
    result = stilt("met-manifest", met_dir)
    assert result.returncode == 0, result.stderr
    manifest = met_dir / MANIFEST_NAME
    assert f"wrote {manifest}: sha256 of 2 met files" in result.stdout
    names = sorted(p.name for p in met_dir.iterdir())
    assert names == sorted([MANIFEST_NAME, "20190530_00-05_ideal", READ])  # no temporary left
    listed = read_manifest(met_dir)
    assert listed == {
        name: hashlib.sha256((met_dir / name).read_bytes()).hexdigest()
        for name in ("20190530_00-05_ideal", READ)
    }
    if shutil.which("sha256sum"):
        check = subprocess.run(
            ["sha256sum", "--check", "--strict", MANIFEST_NAME],
            cwd=met_dir, capture_output=True, text=True,
        )  # fmt: skip
        assert check.returncode == 0, check.stdout + check.stderr
    # The manifest is never taken for a met file.
    assert MANIFEST_NAME not in [p.name for p in find_met_files(POINT.time, -10, _met(met_dir))]


def test_met_manifest_of_a_missing_directory_is_one_line(tmp_path: Path, stilt) -> None:
    result = stilt("met-manifest", tmp_path / "nowhere")
    assert result.returncode == 2
    assert result.stderr == f"error: met directory {tmp_path / 'nowhere'} does not exist\n"


def test_a_run_on_intact_met_completes_and_a_changed_file_fails_it(
    met_dir: Path, tmp_path: Path, client
) -> None:
    write_manifest(met_dir)
    intact = Model(tmp_path / "intact", receptors=[POINT], config=_config(met_dir))
    assert intact.run(client=client) == {POINT.sim_id: "complete"}

    changed = met_dir / READ
    change_keeping_checksum(changed, "2019-05-30 09:00", "UWND", 1)
    # ARL's checksums alone pass the changed file ...
    files = find_met_files(POINT.time, N_HOURS, _met(met_dir))
    check_coverage(files, run_window(POINT.time, N_HOURS), POINT.release_points)
    # ... the manifest does not.
    model = Model(tmp_path / "changed", receptors=[POINT], config=_config(met_dir))
    assert model.run(client=client) == {POINT.sim_id: "failed"}
    status = model.status()
    assert status.ids("failed") == [POINT.sim_id]
    assert status.counts()["complete"] == 0
    assert status.counts()["footprints"]["default"]["complete"] == 0
    failure = records.read_failure(model.location, POINT.sim_id)
    assert failure["reason"] == "MeteorologyError"
    message = failure["message"]
    assert message.startswith(f"met file {changed} has changed since {met_dir / MANIFEST_NAME}")
    assert "\n" not in message


def test_a_file_the_manifest_does_not_list_is_refused(met_dir: Path) -> None:
    write_manifest(met_dir)
    # Sorting first, it is the file a run reads for its hours.
    extra = met_dir / "0late" / "20190530_06-11_extra"
    extra.parent.mkdir()
    shutil.copy(met_dir / READ, extra)
    files = find_met_files(POINT.time, N_HOURS, _met(met_dir))
    assert extra in files
    with pytest.raises(MeteorologyError) as caught:
        verify_met_files(files, met_dir, "idealized")
    assert str(caught.value).startswith(
        f"met file {extra} is not listed in {met_dir / MANIFEST_NAME}: rewrite it with "
    )
    elsewhere = met_dir.parent / READ  # a file outside the directory is not listed either
    shutil.copy(met_dir / READ, elsewhere)
    with pytest.raises(MeteorologyError, match=f"met file {elsewhere} is not listed in "):
        verify_met_files([elsewhere], met_dir, "idealized")
    write_manifest(met_dir)  # the subfolder's file is listed by its relative name
    assert "0late/20190530_06-11_extra" in read_manifest(met_dir)
    verify_met_files(files, met_dir, "idealized")


def test_without_a_manifest_nothing_is_hashed(met_dir: Path) -> None:
    change_keeping_checksum(met_dir / READ, "2019-05-30 09:00", "VWND", 2)
    verify_met_files(find_met_files(POINT.time, N_HOURS, _met(met_dir)), met_dir)


def test_digests_stream_and_are_cached_per_size_and_mtime(tmp_path: Path) -> None:
    path = tmp_path / "big"
    data = os.urandom(3 * (1 << 20) + 5)  # more than one read
    path.write_bytes(data)
    assert file_digest(path) == hashlib.sha256(data).hexdigest()
    # The same size and mtime are taken for the same bytes within a process (the
    # cost of not hashing per simulation); a new mtime is hashed again.
    stat = path.stat()
    path.write_bytes(data[::-1])
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file_digest(path) == hashlib.sha256(data).hexdigest()
    _move_mtime(path)
    assert file_digest(path) == hashlib.sha256(data[::-1]).hexdigest()


def test_a_malformed_manifest_line_is_named() -> None:
    good = f"# comment\n{'a' * 64}  x\n{'b' * 64} *sub/y\n"
    assert parse_manifest(good, "M") == {"x": "a" * 64, "sub/y": "b" * 64}
    with pytest.raises(MeteorologyError, match=r"manifest M line 2 is not '<sha256>  <name>'"):
        parse_manifest("# ok\nnot a digest  x\n", "M")
    with pytest.raises(MeteorologyError, match="manifest M lists 'x' twice"):
        parse_manifest(f"{'a' * 64}  x\n{'c' * 64}  x\n", "M")
