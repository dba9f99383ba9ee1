"""Met from anywhere fsspec reaches: a moto S3 server and a local HTTP server, both on loopback.

The idealized met (conftest's stand-in for the HRRR crop) is served from S3 and
over HTTP; runs of the real ``hycs_std`` on it must give the particles of the same
files read locally. The HTTP server counts what it sends (whole-file GETs, range
GETs, bytes), so fetches are counted where they happen: on the wire.
"""

from __future__ import annotations

import functools
import io
import os
import re
import threading
import uuid
from collections import Counter
from datetime import datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dask.config
import pandas as pd
import pytest
from conftest import IDEALIZED

from pystilt_dask import preflight
from pystilt_dask.config import MetConfig, ModelConfig
from pystilt_dask.errors import MeteorologyError
from pystilt_dask.meteorology.files import archive_index
from pystilt_dask.meteorology.idealized import write_idealized_met
from pystilt_dask.meteorology.manifest import write_manifest
from pystilt_dask.meteorology.prepare import prepare_met
from pystilt_dask.meteorology.remote import fetch
from pystilt_dask.receptors import PointReceptor
from pystilt_dask.trajectory import simulate_trajectories

s3fs = pytest.importorskip("s3fs")

RECEPTOR = PointReceptor(time="2019-05-30 08:00", longitude=-111.9, latitude=40.75, altitude=5)
#: A second simulation on the same two files (its window 04:00–07:00 spans both).
OTHER = PointReceptor(time="2019-05-30 07:00", longitude=-111.8, latitude=40.7, altitude=5)


class _Handler(SimpleHTTPRequestHandler):
    """A static file server that answers range requests and counts what it sends."""

    counts: Counter

    def log_message(self, *args) -> None:  # quiet
        pass

    def send_head(self):
        path = self.translate_path(self.path)
        wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if self.command == "GET" and not os.path.isdir(path):
            name = Path(path).name
            self.counts["range" if wanted else "whole", name] += 1
        if wanted is None or os.path.isdir(path):
            if self.command == "GET" and os.path.isfile(path):
                self.counts["bytes"] += os.path.getsize(path)
            return super().send_head()
        size = os.path.getsize(path)
        first, last = int(wanted[1]), min(int(wanted[2] or size - 1), size - 1)
        with open(path, "rb") as stream:
            stream.seek(first)
            data = stream.read(last - first + 1)
        self.counts["bytes"] += len(data)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        return io.BytesIO(data)


@pytest.fixture(autouse=True)
def met_cache(tmp_path: Path):
    """A private met cache per test, so fetches start cold."""
    with dask.config.set({"stilt.met-cache.directory": str(tmp_path / "met-cache")}):
        yield tmp_path / "met-cache"


@pytest.fixture
def served(tmp_path: Path):
    """``serve(folder)``: an HTTP server on loopback for ``folder``; returns (URL, counts)."""
    servers = []

    def serve(folder: Path) -> tuple[str, Counter]:
        counts: Counter = Counter()
        handler = type("Handler", (_Handler,), {"counts": counts})
        server = ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(handler, directory=str(folder))
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}", counts

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def _config(met: MetConfig) -> ModelConfig:
    return ModelConfig.from_dict(
        {"mets": {"remote": met.model_dump()}, "hysplit": {"n_hours": -4, "numpar": 50, "seed": 7}}
    )


def _upload(folder: Path, s3_options: dict) -> str:
    url = f"s3://stilt-test/met-{uuid.uuid4().hex[:8]}"
    fs = s3fs.S3FileSystem(**s3_options)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            fs.put_file(str(path), f"{url}/{path.relative_to(folder).as_posix()}")
    return url


@pytest.fixture(scope="module")
def local_particles(idealized_met: dict) -> dict[str, pd.DataFrame]:
    """The particles of both receptors on the idealized met read from its local folder."""
    config = _config(MetConfig(**idealized_met))
    return {r.sim_id: simulate_trajectories(r, config).particles for r in (RECEPTOR, OTHER)}


def test_s3_met_runs_to_the_local_particles_and_is_fetched_once(
    idealized_met, s3_options, local_particles, met_cache
):
    url = _upload(Path(idealized_met["directory"]), s3_options)
    met = MetConfig(
        directory=url, file_format="%Y%m%d_%H", storage_options=s3_options
    )  # fmt: skip
    config = _config(met)
    run = simulate_trajectories(RECEPTOR, config)
    pd.testing.assert_frame_equal(run.particles, local_particles[RECEPTOR.sim_id])
    assert all(path.is_relative_to(met_cache) for path in run.met_files)
    fetched = {path: path.stat().st_ino for path in met_cache.glob("*.arl")}
    assert len(fetched) == 2  # the two 6-hourly files, nothing else
    # A second simulation on the same files: nothing fetched again (no new entry,
    # none replaced), and its particles too are the local ones.
    other = simulate_trajectories(OTHER, config)
    pd.testing.assert_frame_equal(other.particles, local_particles[OTHER.sim_id])
    assert {path: path.stat().st_ino for path in met_cache.glob("*.arl")} == fetched


def test_http_met_reads_headers_by_range_and_fetches_each_file_once(
    idealized_met, served, local_particles
):
    url, counts = served(Path(idealized_met["directory"]))
    config = _config(MetConfig(directory=url, file_format="%Y%m%d_%H"))
    run = simulate_trajectories(RECEPTOR, config)
    pd.testing.assert_frame_equal(run.particles, local_particles[RECEPTOR.sim_id])
    names = sorted(path.name for path in Path(idealized_met["directory"]).iterdir())
    assert {name: counts["whole", name] for name in names} == dict.fromkeys(names, 1)
    # Headers: one range request per time step's index record at most, a few kB each.
    assert 0 < sum(counts["range", name] for name in names) <= 12
    size = sum((Path(idealized_met["directory"]) / name).stat().st_size for name in names)
    assert 0 < counts["bytes"] - size < 0.1 * size
    before = counts.copy()
    other = simulate_trajectories(OTHER, config)
    pd.testing.assert_frame_equal(other.particles, local_particles[OTHER.sim_id])
    assert counts == before  # headers, listing and files all reused


def test_concurrent_fills_fetch_once(idealized_met, served):
    url, counts = served(Path(idealized_met["directory"]))
    file = archive_index(MetConfig(directory=url, file_format="%Y%m%d_%H")).paths[0]
    start = threading.Barrier(4)
    got: list[Path] = []

    def fill() -> None:
        start.wait()
        got.append(fetch(file))

    threads = [threading.Thread(target=fill) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(got) == 4 and len(set(got)) == 1
    assert counts["whole", file.name] == 1
    assert got[0].read_bytes() == (Path(idealized_met["directory"]) / file.name).read_bytes()


def test_the_cache_keeps_its_size(idealized_met, served, met_cache):
    url, _ = served(Path(idealized_met["directory"]))
    first, second = archive_index(MetConfig(directory=url, file_format="%Y%m%d_%H")).paths
    with dask.config.set({"stilt.met-cache.max-size": first.stat()[0] + 1000}):
        kept = fetch(first)
        latest = fetch(second)
    assert not kept.exists() and latest.exists()
    assert [path.name for path in met_cache.glob("*.arl")] == [latest.name]


@pytest.fixture
def manifested(met_copy: Path) -> Path:
    """The idealized met with its MANIFEST.sha256, and one file changed after it was written.

    One byte of a packed record goes up by one and the next down by one: its ARL
    checksum (a byte sum) still passes, only the digest sees the change.
    """
    write_manifest(met_copy)
    target = met_copy / "20190530_06-11_ideal"
    data = bytearray(target.read_bytes())
    at = 20_000  # inside a data record of the first time step, past its 50-byte header
    assert 0 < data[at] < 255 and 0 < data[at + 1] < 255
    data[at] += 1
    data[at + 1] -= 1
    target.write_bytes(bytes(data))
    return met_copy


def test_a_corrupted_fetched_file_is_refused_with_one_line(manifested, s3_options, met_cache):
    url = _upload(manifested, s3_options)
    met = MetConfig(directory=url, file_format="%Y%m%d_%H", storage_options=s3_options)
    with pytest.raises(MeteorologyError) as caught:
        prepare_met(datetime(2019, 5, 30, 8), -4, [(40.75, -111.9, 5.0)], [("remote", met)])
    message = str(caught.value)
    assert "\n" not in message
    assert re.search(
        rf"met file {url}/20190530_06-11_ideal as fetched does not match "
        rf"{url}/MANIFEST.sha256 \(sha256 [0-9a-f]{{64}}, listed [0-9a-f]{{64}}\): refused",
        message,
    ), message
    # The file that matches its digest is cached; the corrupted one is not.
    assert len(list(met_cache.glob("*.arl"))) == 1
    assert not list(met_cache.glob("*.partial"))
    # A run on the first file alone is fine: one manifest, checked file by file.
    files = prepare_met(datetime(2019, 5, 30, 4), -3, [(40.75, -111.9, 5.0)], [("remote", met)])
    assert [path.parent for path in files] == [met_cache]


def test_a_file_the_remote_manifest_does_not_list_is_refused(met_copy, served):
    write_manifest(met_copy)
    (later,) = write_idealized_met(met_copy, datetime(2019, 5, 30, 12), 6, **IDEALIZED)
    url, _ = served(met_copy)
    met = MetConfig(directory=url, file_format="%Y%m%d_%H")
    with pytest.raises(MeteorologyError, match=rf"{later.name} is not listed in {url}/MANIFEST"):
        prepare_met(datetime(2019, 5, 30, 13), -1, [(40.75, -111.9, 5.0)], [("remote", met)])


def test_check_names_a_missing_step_of_remote_met(idealized_met, served):
    url, _ = served(Path(idealized_met["directory"]))
    config = _config(MetConfig(directory=url, file_format="%Y%m%d_%H"))
    late = PointReceptor(time="2019-05-30 14:00", longitude=-111.9, latitude=40.75, altitude=5)
    points = preflight._receptor_points([RECEPTOR, late], None, "remote")
    problems = preflight._met_problems(config, points)
    assert [p.subject for p in problems] == [late.sim_id]
    assert "no data for 2019-05-30 12:00" in problems[0].message
    assert not preflight._met_problems(config, points.iloc[:1])


def test_unreachable_remote_met_is_one_line(s3_options):
    met = MetConfig(
        directory="s3://stilt-test/no-such-met", file_format="%Y%m%d_%H",
        storage_options=s3_options,
    )  # fmt: skip
    with pytest.raises(MeteorologyError, match="met directory s3://stilt-test/no-such-met"):
        prepare_met(datetime(2019, 5, 30, 8), -4, [(40.75, -111.9, 5.0)], [("remote", met)])
