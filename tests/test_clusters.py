"""Safe defaults of the clusters pystilt_dask builds, and no side effects of importing it.

- A default local cluster (``make_cluster(ExecutionConfig())``, what
  ``stilt-dask run`` builds) listens on loopback only, as ``ss -ltnp`` sees it,
  and its dashboard link names the address the dashboard listens on.
- ``stilt.cluster-config`` reaches the schedulers and workers pystilt_dask
  builds (local ones as they are built, Slurm jobs through their script) and
  nothing else; importing pystilt_dask leaves Dask's settings alone.
- The preload tunes glibc's allocator only in worker processes of their own.
- HYSPLIT scratch is private per user, and work directories of dead runs are
  removed when a worker starts.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import dask.config
import psutil
import pytest
from distributed import Client

from pystilt_dask import defaults
from pystilt_dask.config import ExecutionConfig
from pystilt_dask.execution import preload
from pystilt_dask.execution.clusters import (
    StiltLocalCluster,
    TunedScheduler,
    TunedWorker,
    make_cluster,
)

# Dask's own values of the settings in stilt.cluster-config, and ours.
DASK_DEFAULTS = {
    "distributed.admin.tick.interval": "20ms",
    "distributed.admin.system-monitor.interval": "500ms",
    "distributed.worker.profile.interval": "10ms",
    "distributed.worker.memory.monitor-interval": "100ms",
}
TUNED = {
    "distributed.admin.tick.interval": "100ms",
    "distributed.admin.system-monitor.interval": "1s",
    "distributed.worker.profile.interval": "100ms",
    "distributed.worker.memory.monitor-interval": "500ms",
}


def _listeners(pids: set[int]) -> set[tuple[str, int, int]]:
    """TCP sockets listening in ``pids``: (address, port, pid), from ``ss -ltnp``.

    psutil answers the same question where ``ss`` is missing.
    """
    found = set()
    if shutil.which("ss"):
        out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            fields = line.split()
            address, _, port = fields[3].rpartition(":")
            for pid in pids:
                if f"pid={pid}," in line:
                    found.add((address.strip("[]").split("%")[0], int(port), pid))
        return found
    for pid in pids:
        for conn in psutil.Process(pid).net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN:
                found.add((conn.laddr.ip, conn.laddr.port, pid))
    return found


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # "*": every interface


def _cluster_pids() -> set[int]:
    me = psutil.Process()
    return {me.pid, *(child.pid for child in me.children(recursive=True))}


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
def test_default_local_cluster_listens_on_loopback_only(processes):
    before = _listeners(_cluster_pids())
    # As `stilt-dask run` builds it: no settings but (for the second case) processes.
    execution = ExecutionConfig(cluster={"processes": True} if processes else {})
    with make_cluster(execution) as cluster, Client(cluster) as client:
        client.wait_for_workers(len(cluster.workers), timeout=60)
        opened = _listeners(_cluster_pids()) - before
        link = client.dashboard_link
        port = cluster.scheduler.http_server.port
    # The scheduler's dashboard, every worker's HTTP server (and, with processes,
    # the comms of scheduler, nannies and workers): all there, all on loopback.
    assert len(opened) >= 1 + len(cluster.workers)
    assert {address for address, _, _ in opened if not _is_loopback(address)} == set()
    assert ("127.0.0.1", port) in {(address, p) for address, p, _ in opened}
    assert link == f"http://127.0.0.1:{port}/status"


@pytest.mark.skipif(sys.platform != "linux", reason="127.0.0.2 is loopback on Linux only")
def test_listen_address_is_configurable():
    # Every address of 127.0.0.0/8 is loopback on Linux: a host no default picks.
    with dask.config.set({"stilt.local-cluster.host": "127.0.0.2"}):
        with make_cluster(ExecutionConfig(n_workers=1)) as cluster, Client(cluster) as client:
            opened = _listeners({os.getpid()})
            link = client.dashboard_link
            port = cluster.scheduler.http_server.port
    assert ("127.0.0.2", port, os.getpid()) in opened
    assert link == f"http://127.0.0.2:{port}/status"
    # execution.cluster wins over the setting.
    execution = ExecutionConfig(n_workers=1, cluster={"dashboard_address": "127.0.0.3:0"})
    with make_cluster(execution) as cluster, Client(cluster) as client:
        assert client.dashboard_link.startswith("http://127.0.0.3:")


def test_tunings_reach_the_built_cluster_only():
    with make_cluster(ExecutionConfig(n_workers=2)) as cluster, Client(cluster) as client:
        assert isinstance(cluster, StiltLocalCluster)
        scheduler = cluster.scheduler
        assert type(scheduler) is TunedScheduler
        assert scheduler._tick_interval == 0.1
        assert scheduler.periodic_callbacks["monitor"].callback_time == 1000
        for worker in cluster.workers.values():
            assert type(worker) is TunedWorker
            assert worker._tick_interval == 0.1
            assert worker.periodic_callbacks["profile"].callback_time == 100
            assert worker.memory_manager.memory_monitor_interval == 0.5
        # The rest of the process, this client included, keeps Dask's settings.
        assert {key: dask.config.get(key) for key in DASK_DEFAULTS} == DASK_DEFAULTS
        assert client.run(lambda: dask.config.get("distributed.admin.tick.interval")) == {
            address: "20ms" for address in cluster.scheduler.workers
        }


def _worker_facts(dask_worker) -> tuple[float, float, bool | None]:
    from pystilt_dask.execution import preload

    return (
        dask_worker._tick_interval,
        dask_worker.memory_manager.memory_monitor_interval,
        preload.ALLOCATOR_TUNED,
    )


def test_worker_processes_are_tuned_and_own_their_allocator():
    execution = ExecutionConfig(n_workers=2, cluster={"processes": True})
    with make_cluster(execution) as cluster, Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)
        facts = client.run(_worker_facts)
        nannies = {nanny._tick_interval for nanny in cluster.workers.values()}
    # The worker processes were built with the settings; the preload, running in
    # processes of their own, tuned their allocator.
    assert sorted(facts.values()) == [(0.1, 0.5, True)] * 2
    assert nannies == {0.1}


def test_preload_leaves_the_users_process_allocator_alone(monkeypatch):
    calls = []
    monkeypatch.setattr(preload, "tune_allocator", lambda: calls.append("mallopt") or True)
    monkeypatch.setattr(preload, "ALLOCATOR_TUNED", None)

    class InProcessWorker:  # a threads LocalCluster's worker: no nanny
        nanny = None

    class NannyWorker:
        nanny = "tcp://127.0.0.1:1234"

    preload.dask_setup(InProcessWorker())
    assert calls == [] and preload.ALLOCATOR_TUNED is False
    preload.dask_setup(NannyWorker())
    assert calls == ["mallopt"] and preload.ALLOCATOR_TUNED is True
    # A real threads cluster: its workers run in this process.
    monkeypatch.setattr(preload, "ALLOCATOR_TUNED", None)
    with make_cluster(ExecutionConfig(n_workers=1)) as cluster, Client(cluster) as client:
        client.wait_for_workers(1, timeout=60)
        assert calls == ["mallopt"]
        assert set(client.run(lambda: preload.ALLOCATOR_TUNED).values()) == {False}


IMPORT_PROBE = textwrap.dedent(
    """
    import copy, json, os, sys
    import distributed, dask.config
    before = copy.deepcopy(dask.config.config)
    import pystilt_dask
    from pystilt_dask.footprint import kernels
    after = dask.config.config
    # Where stilt-dask and our worker processes put the kernels' cache.
    pystilt_dask.defaults.use_own_numba_cache()

    def flat(tree, prefix=""):
        out = {}
        for key, value in tree.items():
            if isinstance(value, dict) and value:
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[prefix + key] = value
        return out

    a, b = flat(before), flat(after)
    changed = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    print(json.dumps({
        "changed": [k for k in changed if not k.startswith("stilt.")],
        "stilt": any(k.startswith("stilt.") for k in changed),
        "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR"),
        "kernel_caches": sorted({
            kernel._cache.cache_path for kernel in vars(kernels).values()
            if hasattr(getattr(kernel, "_cache", None), "cache_path")
        }),
    }))
    """
)


def _import_probe(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DASK_", "NUMBA_"))}
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE], env={**clean, **env},
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(out.splitlines()[-1])


def test_import_changes_no_dask_setting_of_other_workloads(tmp_path):
    probe = _import_probe()
    # The `stilt` namespace, and the expected run time of pystilt_dask's own
    # `stilt-sim` tasks: nothing another workload reads.
    assert probe["stilt"] is True
    assert probe["changed"] == ["distributed.scheduler.default-task-durations.stilt-sim"]
    # numba's setting for other code is untouched; our kernels cache in the user's
    # cache dir (never beside the installed package), or where stilt.cache-dir says.
    assert probe["numba_cache_dir"] is None
    cache = tmp_path / "xdg" / "pystilt_dask" / "numba"
    probe = _import_probe(XDG_CACHE_HOME=str(tmp_path / "xdg"))
    assert probe["kernel_caches"] and all(p.startswith(str(cache)) for p in probe["kernel_caches"])
    asked = _import_probe(DASK_STILT__CACHE_DIR=str(tmp_path))
    assert asked["numba_cache_dir"] is None
    assert all(p.startswith(str(tmp_path / "numba")) for p in asked["kernel_caches"])
    # In this process too (pystilt_dask is imported), Dask's values are Dask's.
    assert {key: dask.config.get(key) for key in DASK_DEFAULTS} == DASK_DEFAULTS
    assert defaults.cluster_config() == TUNED


def test_cluster_env_spells_dask_environment_variables():
    assert defaults.cluster_env() == {
        "DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL": "100ms",
        "DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL": "1s",
        "DASK_DISTRIBUTED__WORKER__PROFILE__INTERVAL": "100ms",
        "DASK_DISTRIBUTED__WORKER__MEMORY__MONITOR_INTERVAL": "500ms",
    }
    # Dask reads them back as the same settings.
    with dask.config.set(dask.config.collect_env(defaults.cluster_env())):
        assert {key: dask.config.get(key) for key in TUNED} == TUNED
    with dask.config.set({"stilt.cluster-config": None}):
        assert defaults.cluster_env() == {} and defaults.cluster_config() == {}


@pytest.mark.slurm
def test_slurm_jobs_get_the_tunings_in_their_script(slurm):
    # Building the cluster asks the real sbatch to check the worker job (--test-only).
    pytest.importorskip("dask_jobqueue")
    from pystilt_dask.execution.clusters import _slurm

    execution = ExecutionConfig(
        backend="slurm",
        cluster={
            "cores": 1,
            "memory": "1GB",
            "job_script_prologue": ["export DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL=50ms"],
            "scheduler_options": {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"},
        },
    )
    cluster = _slurm(execution)
    try:
        script = cluster.job_script()
        assert type(cluster.scheduler) is TunedScheduler
    finally:
        cluster.close()
    lines = script.splitlines()
    exports = [line for line in lines if line.startswith("export DASK_")]
    assert exports == [
        "export DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL=100ms",
        "export DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL=1s",
        "export DASK_DISTRIBUTED__WORKER__PROFILE__INTERVAL=100ms",
        "export DASK_DISTRIBUTED__WORKER__MEMORY__MONITOR_INTERVAL=500ms",
        # The user's own line comes last, so it wins.
        "export DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL=50ms",
    ]
    worker = next(i for i, line in enumerate(lines) if "dask_worker" in line)
    assert all(lines.index(line) < worker for line in exports)


# --- scratch ------------------------------------------------------------------------


@pytest.fixture
def default_root(monkeypatch, tmp_path):
    """compute_root() as by default, with the system temporary directory in tmp_path."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    # No /dev/shm has this much room: the temporary directory is chosen.
    with dask.config.set({"stilt.compute-root": None, "stilt.compute-root-min-free": 2**62}):
        yield tmp_path / f"pystilt_dask-{os.getuid()}"


def test_scratch_is_private_per_user(default_root):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert defaults.compute_root() == default_root
        assert defaults.compute_root() == default_root  # existing and right: no warning
    info = default_root.stat()
    assert info.st_uid == os.getuid()
    assert info.st_mode & 0o777 == 0o700
    work = defaults.new_workdir("sim")
    assert work.parent == default_root and work.name.startswith("sim-")
    assert work.stat().st_mode & 0o777 == 0o700


def test_scratch_open_to_others_is_closed_with_a_warning(default_root):
    default_root.mkdir(mode=0o755)
    default_root.chmod(0o777)
    with pytest.warns(UserWarning, match="had mode 777"):
        assert defaults.compute_root() == default_root
    assert default_root.stat().st_mode & 0o777 == 0o700


def test_scratch_of_another_user_or_a_link_is_refused(default_root, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    default_root.symlink_to(elsewhere)
    with pytest.raises(PermissionError, match="not a directory"):
        defaults.compute_root()
    default_root.unlink()

    default_root.mkdir(mode=0o700)
    if os.getuid() == 0:
        os.chown(default_root, 4321, -1)  # as another user would have made it
    else:
        # Pretend to be another user, whose directory name this then is.
        real = os.getuid()
        monkeypatch.setattr(os, "getuid", lambda: real + 1)
        default_root.rename(default_root.with_name(f"pystilt_dask-{real + 1}"))
    with pytest.raises(PermissionError, match="belongs to uid"):
        defaults.compute_root()


def test_configured_scratch_is_used_as_given(tmp_path):
    root = tmp_path / "my" / "scratch"
    with dask.config.set({"stilt.compute-root": str(root)}):
        assert defaults.compute_root() == root
    assert root.stat().st_mode & 0o777 == 0o700


KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    import dask.config
    from pystilt_dask import defaults

    with dask.config.set({"stilt.compute-root": sys.argv[1]}):
        work = defaults.new_workdir("201905301000_-111.848_40.766_5")
    (work / "PARTICLE_STILT.DAT").write_bytes(b"0" * 4096)
    print(work, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer ends a worker
    """
)


def _killed_run(root: Path) -> Path:
    """A work directory with particles, left by a process that was killed."""
    done = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(root)], capture_output=True, text=True
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    return Path(done.stdout.strip())


def test_work_directories_of_dead_runs_are_cleaned(tmp_path):
    root = tmp_path / "scratch"
    with dask.config.set({"stilt.compute-root": str(root)}):
        dead = _killed_run(root)
        live = defaults.new_workdir("live")  # this process's: running
        kept = defaults.new_workdir("failed")
        defaults.keep_workdir(kept)  # a failed run's, kept for diagnosis
        unmarked = root / "made-by-hand"
        unmarked.mkdir()
        # The same pid, but a process started at another time: the pid was reused.
        reused = root / "reused-pid"
        reused.mkdir()
        stamp = json.loads((live / defaults.OWNER_FILE).read_text())
        stamp["started"] -= 3600
        (reused / defaults.OWNER_FILE).write_text(json.dumps(stamp))
        # Made on another host sharing this compute root: its pids are not ours to judge.
        remote = root / "remote"
        remote.mkdir()
        (remote / defaults.OWNER_FILE).write_text(json.dumps({**stamp, "host": "node-0042"}))
        assert (dead / "PARTICLE_STILT.DAT").is_file()

        assert defaults.clean_stale_workdirs() == [dead, reused]
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [live.name, kept.name, "made-by-hand", "remote"]
    )


def test_a_starting_worker_cleans_the_compute_root(tmp_path):
    root = tmp_path / "scratch"
    dead = _killed_run(root)
    # Worker processes (fresh preloads) get this process's dask.config from their nanny.
    execution = ExecutionConfig(n_workers=1, cluster={"processes": True})
    with dask.config.set({"stilt.compute-root": str(root)}):
        with make_cluster(execution) as cluster, Client(cluster) as client:
            client.wait_for_workers(1, timeout=60)
            assert client.run(lambda: str(defaults.compute_root())) == {
                address: str(root) for address in cluster.scheduler.workers
            }
            assert not dead.exists()


def test_local_cluster_with_tls():
    pytest.importorskip("cryptography")  # Security.temporary() makes certificates with it
    before = _listeners({os.getpid()})
    execution = ExecutionConfig(n_workers=1, cluster={"security": True})
    with make_cluster(execution) as cluster, Client(cluster) as client:
        assert cluster.scheduler_address.startswith("tls://127.0.0.1:")
        assert client.security.require_encryption
        assert client.submit(sum, [1, 2], pure=False).result() == 3
        opened = _listeners({os.getpid()}) - before
    assert opened and all(_is_loopback(address) for address, _, _ in opened)
