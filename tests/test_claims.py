"""Claims that cannot strand work: dead holders, skewed clocks, stuck claims, ``interrupted``.

Claims are judged on the store's clock (a claim's modification time against a
key just rewritten) and, on the holder's own host, by whether its process still
runs. The CLI tests drive real ``stilt-dask`` processes on a real store with real
HYSPLIT on the idealized met; claims of other processes are written as those
processes would (a dead pid from a real subprocess, an older version's JSON).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest
from store_helpers import make_config, make_receptors
from test_cli_run import STILT, VALLEY, at, started, stilt, wait_for, write_project

from pystilt_dask.model import Model
from pystilt_dask.store import claims, layout
from pystilt_dask.store.paths import Location

DAY = 86400.0


def dead_pid() -> int:
    """The pid of a process that ran here and has ended (not reused: nothing waits on it)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def register(config: Path) -> list[str]:
    """``stilt-dask register CONFIG`` in this process (what the command runs, without
    the start of a CLI process that these tests do not check)."""
    return Model.from_yaml(config).register_pending()


def write_claim(location: Location, sim_id: str, holder: claims.Holder, lifetime: float) -> str:
    """Write generation 0 of ``sim_id``'s claim as its holder would."""
    claim = claims.Claim(sim_id, 0, holder, lifetime)
    location.write_bytes(claim.key, claim.to_bytes())
    return claim.key


def write_old_claim(location: Location, sim_id: str, expires: float) -> str:
    """Write a claim as versions before holders did: an owner and a writer-clock expiry."""
    key = layout.claim_key(sim_id, 0)
    location.write_bytes(key, json.dumps({"owner": "far:1:abc", "expires": expires}).encode())
    return key


# ----------------------------------------------------------------------------- the store


def test_a_claim_is_judged_on_the_store_clock_not_the_reader_clock(tmp_path, monkeypatch):
    location = Location(tmp_path / "store")
    claim = claims.acquire(location, "a", "run-1", lifetime=60.0)
    assert claim is not None and claim.holder.pid == os.getpid()
    real = time.time
    # A reader whose clock is 15 minutes ahead (or behind) sees the same live claim.
    for skew in (900.0, -900.0):
        monkeypatch.setattr(time, "time", lambda skew=skew: real() + skew)
        seen = claims.current(location)["a"]
        assert seen.live and not seen.stuck and 0 < seen.remaining <= 60.0
        assert claims.acquire(location, "a", "run-2") is None
    monkeypatch.setattr(time, "time", real)
    # Not renewed for longer than its lifetime, as the store tells it: expired.
    stale = real() - 120.0
    os.utime(location.url(claim.key), (stale, stale))
    assert claims.current(location)["a"].condition == "expired"
    taken = claims.acquire(location, "a", "run-2")
    assert taken is not None and taken.generation == 1


def test_a_dead_holder_on_this_host_is_dead_at_once(tmp_path):
    location = Location(tmp_path / "store")
    gone = dataclasses.replace(claims.Holder.this_process("run-1"), pid=dead_pid())
    write_claim(location, "a", gone, lifetime=DAY)  # would live a day if its holder ran
    # Our own pid, but another process start: the pid was reused.
    reused = dataclasses.replace(claims.Holder.this_process("run-1"), started=1.0)
    write_claim(location, "b", reused, lifetime=DAY)
    found = claims.current(location)
    assert {s: c.condition for s, c in found.items()} == {"a": "dead", "b": "dead"}
    assert claims.acquire(location, "a", "run-2") is not None
    # A holder elsewhere (another host) is judged by the store clock alone.
    remote = dataclasses.replace(gone, host="elsewhere")
    write_claim(location, "c", remote, lifetime=DAY)
    assert claims.current(location)["c"].condition == "live"


def test_claims_of_older_versions_are_read_by_their_expiry(tmp_path):
    location = Location(tmp_path / "store")
    write_old_claim(location, "live", time.time() + 60)
    write_old_claim(location, "expired", time.time() - 1)
    write_old_claim(location, "stuck", time.time() + 10 * DAY)
    location.write_bytes(layout.claim_key("torn", 0), b'{"own')
    found = claims.current(location)
    assert {s: c.condition for s, c in found.items()} == {
        "live": "live", "expired": "expired", "stuck": "stuck", "torn": "expired"
    }  # fmt: skip
    assert claims.acquire(location, "live", "run-1") is None
    assert claims.acquire(location, "expired", "run-1") is not None


def test_claims_on_an_object_store_use_its_modification_times(s3_options):
    location = Location("s3://stilt-test/claims-clock", storage_options=s3_options)
    claim = claims.acquire(location, "a", "run-1", lifetime=60.0)
    assert claim is not None
    seen = claims.current(location)["a"]
    # LastModified has whole seconds: within a second of the full lifetime.
    assert seen.live and 58.0 < seen.remaining <= 61.0
    assert claims.acquire(location, "a", "run-2") is None
    claims.release(location, claim)
    assert claims.current(location) == {}


def test_status_says_interrupted_for_a_dead_claim_and_failed_wins(tmp_path):
    model = Model(tmp_path / "proj", make_receptors(3), make_config(tmp_path))
    ids = model.register_pending()
    gone = dataclasses.replace(claims.Holder.this_process("run-1"), pid=dead_pid())
    for sim_id in ids[:2]:
        write_claim(model.location, sim_id, gone, lifetime=DAY)
    model.location.write_bytes(layout.failure_key(ids[1]), b"{}")
    found = model.status()
    assert found.table["state"].tolist() == ["interrupted", "failed", "pending"]
    assert found.counts()["interrupted"] == 1
    assert set(found.claims) == set(ids[:2])


# ----------------------------------------------------------------------------- the CLI


def status_json(config: Path, env: dict[str, str]) -> dict:
    result = stilt("status", config, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    # Waiting coordinators look every sixth of this; a held line is printed at once.
    return {**env, "DASK_STILT__CLAIM_TTL": "10s", "PYTHONUNBUFFERED": "1"}


def test_a_dead_holder_is_shown_interrupted_and_taken_over_at_once(tmp_path, idealized_met, env):
    config = write_project(tmp_path, idealized_met, [at(8, site) for site in VALLEY[:2]])
    assert len(register(config)) == 2
    model = Model.from_yaml(config)
    sim_id = model.simulations.ids()[0]
    gone = dataclasses.replace(claims.Holder.this_process("killed-run"), pid=dead_pid())
    write_claim(model.location, sim_id, gone, lifetime=DAY)

    shown = status_json(config, env)
    assert shown["interrupted"] == 1 and shown["pending"] == 1
    (record,) = shown["claims"]
    assert record["sim_id"] == sim_id and record["condition"] == "dead"
    assert record["pid"] == gone.pid and record["run"] == "killed-run"
    listed = stilt("ls", config, "--state", "interrupted", env=env)
    assert listed.stdout.split() == [sim_id]
    assert "holder process gone" in stilt("status", config, env=env).stdout

    # The claim would live a day: only knowing its holder dead lets the run finish.
    result = stilt("run", config, env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = model.status().counts()
    assert counts["complete"] == 2 and counts["interrupted"] == 0
    assert model.location.list_names(layout.CLAIMS) == []


def test_a_claim_expiring_in_the_far_future_is_named_and_released(tmp_path, idealized_met, env):
    config = write_project(tmp_path, idealized_met, [at(8, site) for site in VALLEY[:2]])
    assert len(register(config)) == 2
    model = Model.from_yaml(config)
    sim_id, other = model.simulations.ids()
    # An older version's claim, from a writer whose clock ran ten days ahead.
    write_old_claim(model.location, sim_id, time.time() + 10 * DAY)

    result = stilt("run", config, env=env, timeout=600)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: 1 simulations were not run") and sim_id in line
    assert "--release ID" in line
    assert model.status().table["state"].to_dict() == {sim_id: "running", other: "complete"}

    listed = stilt("claims", config, env=env)
    assert listed.returncode == 0 and sim_id in listed.stdout and "stuck" in listed.stdout
    assert stilt("claims", config, "--release-dead", env=env).stdout.strip() == (
        "no claims to release"
    )
    unknown = stilt("claims", config, "--release", "nope", env=env)
    assert unknown.returncode == 2 and "no claim on nope" in unknown.stderr
    released = stilt("claims", config, "--release", sim_id, env=env)
    assert released.returncode == 0 and released.stdout.startswith(f"released {sim_id}")
    assert model.location.list_names(layout.CLAIMS) == []

    result = stilt("run", config, env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert model.status().counts()["complete"] == 2


def test_a_run_names_what_it_waits_for_and_runs_it_once_released(tmp_path, idealized_met, env):
    config = write_project(tmp_path, idealized_met, [at(8, site) for site in VALLEY[:2]])
    assert len(register(config)) == 2
    model = Model.from_yaml(config)
    sim_id = model.simulations.ids()[0]
    lines: list[str] = []
    with claims.hold(model.location, sim_id, "test-run") as claim:  # this process holds it
        assert claim is not None
        run = subprocess.Popen(
            [STILT, "run", str(config)], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        reader = threading.Thread(target=lambda: lines.extend(run.stdout), daemon=True)
        reader.start()
        try:
            wait_for(lambda: any("waiting for" in line for line in lines), 300, "held line")
        finally:
            if run.poll() is not None:
                pytest.fail("".join(lines))
    (held,) = [line for line in lines if "waiting for" in line]
    assert f"{sim_id} (host {claim.holder.host} pid {os.getpid()}, run test-run: until" in held
    assert run.wait(timeout=600) == 0, "".join(lines)
    reader.join()
    assert model.status().counts()["complete"] == 2
    assert sum("waiting for" in line for line in lines) == 1, "".join(lines)


SKEWED_CLOCK = """\
import time

_real = time.time
time.time = lambda: _real() + 900.0
"""


def test_a_coordinator_15_minutes_ahead_beside_another_runs_each_hysplit_once(
    tmp_path, idealized_met, env, stand_in
):
    receptors = [at(hour, site) for hour in (8, 9) for site in VALLEY[:2]]
    config = write_project(tmp_path, idealized_met, receptors)
    # Every HYSPLIT run is counted, then held until the test lets them all go.
    counting = stand_in('echo run >> "$RUNS/count"\nhold\nexec "$REAL"')
    runs = counting.with_suffix(".runs")
    skewed = tmp_path / "skewed"
    skewed.mkdir()
    (skewed / "sitecustomize.py").write_text(SKEWED_CLOCK)
    common = {**env, "STILT_HYSPLIT_EXE": str(counting)}
    ahead = {**common, "PYTHONPATH": os.pathsep.join([str(skewed), env["PYTHONPATH"]])}
    probe = [sys.executable, "-c", "import time; print(time.time())"]
    assert float(subprocess.check_output(probe, env=ahead, text=True)) > time.time() + 800
    assert len(register(config)) == len(receptors)

    def held(n: int) -> Callable[[], bool]:
        return lambda: len(list(runs.glob("held.*"))) == n

    with ExitStack() as stack:
        normal = stack.enter_context(started(tmp_path / "normal", [STILT, "run", config], common))
        wait_for(held(2), 300, "the normal coordinator's two held runs")
        # The one ahead meets live claims of the normal one, which it must not take.
        early = stack.enter_context(started(tmp_path / "ahead", [STILT, "run", config], ahead))
        wait_for(held(4), 300, "the coordinator ahead's two held runs")
        (runs / "release").touch()
        for coordinator in (normal, early):
            assert coordinator.wait(timeout=600) == 0
    assert len((runs / "count").read_text().splitlines()) == len(receptors)
    assert Model.from_yaml(config).status().counts()["complete"] == len(receptors)


def test_a_killed_run_leaves_its_simulations_interrupted(tmp_path, idealized_met, env, stand_in):
    config = write_project(tmp_path, idealized_met, [at(8, site) for site in VALLEY[:2]])
    holding = stand_in("hold")
    held = holding.with_suffix(".runs")
    model = Model.from_yaml(config)
    doomed_env = {**env, "STILT_HYSPLIT_EXE": str(holding)}
    with started(tmp_path / "doomed", [STILT, "run", config], doomed_env) as doomed:
        wait_for(lambda: len(list(held.glob("held.*"))) == 2, 300, "two held HYSPLIT runs")
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=60)
    (held / "release").touch()  # the orphaned stand-ins end
    shown = status_json(config, env)
    assert shown["interrupted"] == 2 and shown["running"] == 0, shown
    assert {c["condition"] for c in shown["claims"]} == {"dead"}

    result = stilt("run", config, env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert model.status().counts()["complete"] == 2
