"""Shared fixtures: the read-only data in ../shared, the package's idealized met, stand-ins,
a Dask client, and ``stilt-dask`` run as a user runs it.

Tests that only need *some* meteorology to run HYSPLIT on use ``idealized_met``
(written here, no download, no ``../shared``); only tests whose point is parity
with real data (R-STILT golden files, the reference HYSPLIT runs, real-HRRR
specifics) use ``shared``/``hrrr_met`` and skip without the shared folder.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import signal
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import dask.config
import pytest
import xarray as xr
from distributed import Client, LocalCluster

from pystilt_dask import accessor
from pystilt_dask.config import ModelConfig
from pystilt_dask.hysplit.executable import resolve_hysplit
from pystilt_dask.meteorology.idealized import write_idealized_met

CHECKOUT = Path(__file__).resolve().parents[1]
SHARED = CHECKOUT.parent / "shared"
#: The console script of the installed package (which imports the code under test:
#: see ``env``).
STILT = str(Path(sys.executable).parent / "stilt-dask")


@pytest.fixture(autouse=True)
def _our_accessor() -> None:
    """Give ``DataArray.stilt`` back to pystilt_dask after a test imported PYSTILT.

    PYSTILT's ``stilt`` package registers an accessor of the same name when it is
    imported (tests compare with it), so without this the tests that follow would
    depend on the order they run in. Users call ``accessor.register()`` the same way.
    """
    if xr.DataArray.stilt is not accessor.FootprintAccessor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", accessor.StiltAccessorWarning)
            accessor.register()


#: The idealized stand-in for the HRRR crop: the same morning (2019-05-30 00–11 UTC,
#: two 6-hourly files named like HRRR's, ``20190530_00-05_ideal``), over the Salt
#: Lake valley on a 0.05° lat/lon grid from -112.9 to -110.9 E and 39.75 to 41.75 N,
#: with a light south-westerly wind (2, 1 m/s) and a 300 m night-time mixed layer.
IDEALIZED = {
    "center": (-111.9, 40.75),
    "half_width_deg": 1.0,
    "resolution_deg": 0.05,
    "u": 2.0,
    "v": 1.0,
}


@pytest.fixture(autouse=True, scope="session")
def _scratch_under_pytest_tmp(tmp_path_factory):
    """Keep HYSPLIT work directories (and failed ones) inside pytest's temporary tree."""
    with dask.config.set({"stilt.compute-root": str(tmp_path_factory.mktemp("compute"))}):
        yield


@pytest.fixture(scope="session")
def env(_scratch_under_pytest_tmp) -> dict[str, str]:
    """The environment of ``stilt-dask`` subprocesses.

    The console script imports whichever checkout is installed (editable): the
    subprocesses and their workers are made to import the code under test instead,
    and to keep HYSPLIT work directories in this session's scratch.
    """
    path = [str(CHECKOUT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(path),
        "DASK_STILT__COMPUTE_ROOT": dask.config.get("stilt.compute-root"),
        # Off a terminal rich wraps at 80 columns; wide lines keep each message whole.
        "COLUMNS": "200",
    }


def _default_sigint() -> None:
    # A pytest started in the background by a script ignores SIGINT, children inherit
    # that, and Python then never raises KeyboardInterrupt: restore the default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="session")
def stilt(env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess]:
    """Run ``stilt-dask ARGS`` to the end as a user would: ``stilt(*args, cwd=, env=, timeout=)``.

    The subprocess gets the ``env`` fixture unless given another environment, its
    output is captured as text, and ``timeout`` (seconds) only guards against a hang.
    """

    def run(
        *args: object,
        cwd: Path | None = None,
        env: dict[str, str] = env,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [STILT, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=timeout, preexec_fn=_default_sigint,
        )  # fmt: skip

    return run


@pytest.fixture(scope="module")
def cluster(_scratch_under_pytest_tmp) -> Iterator[LocalCluster]:
    """A LocalCluster of two one-thread workers with one ``hysplit`` slot each.

    Threads, not processes: HYSPLIT runs in a process of its own anyway, and the
    workers start at once and see this process's settings (the compute root).
    """
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, resources={"hysplit": 1},
        dashboard_address="127.0.0.1:0",
    ) as cluster:  # fmt: skip
        yield cluster


@pytest.fixture(scope="module")
def client(cluster: LocalCluster) -> Iterator[Client]:
    """A client of ``cluster``, shared by the tests of a module."""
    with Client(cluster) as client:
        yield client


@functools.cache
def _slurm_answers() -> str | None:
    """Why Slurm cannot run jobs here, or None when a controller answers with a free node."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no sinfo/sbatch on PATH"
    try:
        state = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        return "sinfo got no answer from the Slurm controller"
    if state.returncode != 0:
        return " ".join(state.stderr.split()) or f"sinfo exit status {state.returncode}"
    if not ("idle" in state.stdout or "mix" in state.stdout):
        return "no idle Slurm node"
    return None


def _without_slurm() -> str:
    return f"needs a running Slurm (.ci/run starts one): {_slurm_answers()}"


@pytest.fixture(scope="session")
def slurm() -> None:
    """Skip unless a Slurm controller answers and has an idle node (``.ci/run`` starts one)."""
    if _slurm_answers() is not None:
        pytest.skip(_without_slurm())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The slurm marker alone skips too: a marked test never fails for want of Slurm.
    marked = [item for item in items if item.get_closest_marker("slurm") is not None]
    if not marked or _slurm_answers() is None:
        return
    skip = pytest.mark.skip(reason=_without_slurm())
    for item in marked:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def docs_site(tmp_path_factory, env) -> Path:
    """The documentation site, built once as CI builds it; its HTML folder.

    ``sphinx -W`` executes the notebooks (see docs/conf.py), several at once with
    ``-j auto`` (pages are read in parallel; warnings still fail it); their executed copies
    are in ``jupyter_execute/notebooks`` beside the HTML folder. The notebooks put
    their projects in ``tempfile.mkdtemp()``: ``TMPDIR`` keeps those here too.
    """
    folder = tmp_path_factory.mktemp("docs")
    (folder / "tmp").mkdir()
    build = {key: value for key, value in env.items() if key != "MPLBACKEND"}  # inline figures
    build["TMPDIR"] = str(folder / "tmp")
    notebooks = set((CHECKOUT / "notebooks").iterdir())
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q", "-j", "auto",
         "-d", str(folder / "doctrees"), str(CHECKOUT / "docs"), str(folder / "html")],
        env=build, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=1800,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert set((CHECKOUT / "notebooks").iterdir()) <= notebooks, "a notebook wrote notebooks/"
    return folder / "html"


@pytest.fixture(scope="session")
def s3_options() -> Iterator[dict]:
    """A moto S3 server on loopback with a bucket ``stilt-test``, and the fsspec options."""
    missing = "needs {}: pip install 'pystilt-dask[test]'"
    boto3 = pytest.importorskip("boto3", reason=missing.format("boto3"))
    moto_server = pytest.importorskip("moto.server", reason=missing.format("moto[server]"))
    pytest.importorskip("s3fs", reason=missing.format("s3fs"))
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{server._server.server_port}"
    boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
    ).create_bucket(Bucket="stilt-test")  # fmt: skip
    yield {
        "key": "test",
        "secret": "test",
        "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
    }
    server.stop()


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared data folder beside the checkout (real met, HYSPLIT runs, R-STILT files)."""
    if not (SHARED / "met").is_dir():
        pytest.skip(f"needs the shared data folder at {SHARED} (real HRRR met, golden files)")
    return SHARED


@pytest.fixture(scope="session")
def hrrr_met(shared: Path) -> dict:
    """MetConfig fields for the two real HRRR ARL files (2019-05-30 00–11 UTC)."""
    return {"directory": str(shared / "met"), "file_format": "%Y%m%d_%H", "file_tres": "6h"}


@pytest.fixture
def hrrr_config(hrrr_met: dict) -> ModelConfig:
    """A small seeded configuration on the real met: 50 particles, 2 h backward."""
    return ModelConfig.from_dict(
        {"mets": {"hrrr": hrrr_met}, "hysplit": {"n_hours": -2, "numpar": 50, "seed": 7}}
    )


@pytest.fixture(scope="session")
def idealized_met(tmp_path_factory) -> dict:
    """MetConfig fields for idealized met standing in for the HRRR crop (see IDEALIZED).

    Written once per session, read-only like the shared files.
    """
    directory = tmp_path_factory.mktemp("idealized-met")
    for path in write_idealized_met(directory, datetime(2019, 5, 30), 12, **IDEALIZED):
        hour = int(path.name[-2:])
        renamed = path.rename(path.with_name(f"{path.name}-{hour + 5:02d}_ideal"))
        renamed.chmod(0o444)
    return {"directory": str(directory), "file_format": "%Y%m%d_%H", "file_tres": "6h"}


@pytest.fixture
def met_copy(idealized_met: dict, tmp_path: Path) -> Path:
    """A private, writable copy of the idealized met folder (for tests that change it)."""
    folder = Path(shutil.copytree(idealized_met["directory"], tmp_path / "met"))
    for path in folder.iterdir():
        path.chmod(0o644)
    return folder


@pytest.fixture
def idealized_config(idealized_met: dict) -> ModelConfig:
    """A small seeded configuration on the idealized met: 50 particles, 2 h backward."""
    return ModelConfig.from_dict(
        {"mets": {"idealized": idealized_met}, "hysplit": {"n_hours": -2, "numpar": 50, "seed": 7}}
    )


@pytest.fixture
def stand_in(tmp_path_factory) -> Callable[[str], Path]:
    """Write an executable standing in for hycs_std: ``stand_in(body)`` returns its path.

    ``body`` is ``/bin/sh`` run in HYSPLIT's work directory (CONTROL is there). In
    it ``$REAL`` is the real hycs_std (``exec "$REAL"`` hands over) and ``$RUNS``
    the stand-in's own folder, ``path.with_suffix(".runs")``; ``hold`` records the
    run as ``$RUNS/held.<pid>`` and then waits until the test releases every run,
    present and future, by creating ``$RUNS/release``, or kills it: a HYSPLIT that
    never finishes by itself, however fast the machine. The stand-in itself is one
    process named ``hycs_std`` (plus a passing ``sleep`` while it holds).
    """
    folder = tmp_path_factory.mktemp("stand-in")
    real = shlex.quote(str(resolve_hysplit().executable))
    count = 0

    def make(body: str) -> Path:
        nonlocal count
        count += 1
        path = folder / f"hycs_std_{count}"
        runs = path.with_suffix(".runs")
        runs.mkdir()
        path.write_text(
            "#!/bin/sh\n"
            f"REAL={real}\nRUNS={shlex.quote(str(runs))}\n"
            'hold() {\n  : > "$RUNS/held.$$"\n'
            '  while [ ! -e "$RUNS/release" ]; do sleep 0.05; done\n}\n'
            f"{body}\n"
        )
        path.chmod(0o755)
        return path

    return make
