"""Run ``hycs_std`` in a private work directory and classify how it failed.

HYSPLIT's run time is CPU (number formatting), not disk, but it writes two
copies of the particles: the binary PARTICLE.DAT that STILT never reads goes to
``/dev/null`` through a symlink (particles stay byte-identical), and the work
directory lives on a RAM-backed compute root when one exists
(:func:`pystilt_dask.defaults.compute_root`), so a run writes nothing to disk.

A run also ends when its caller gives up on it: :func:`run_hysplit` takes a
``cancelled`` check, polled while ``hycs_std`` runs (inside a Dask task,
:func:`pystilt_dask.simulation.cancellation_probe` makes one).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..defaults import keep_workdir, new_workdir, setting
from ..errors import HysplitError
from .executable import HysplitInstall

LOG_NAME = "hysplit.log"
PARTICLE_FILE = "PARTICLE_STILT.DAT"
#: Failure reason of a run ended because its caller gave up on it.
CANCELLED = "cancelled"
#: Seconds between two calls of the ``cancelled`` check while HYSPLIT runs: bounds
#: how long a cancelled HYSPLIT outlives its caller's interest, at four wake-ups a second.
CANCEL_POLL = 0.25

# Phrases HYSPLIT prints, mapped to failure reasons (first match wins).
_FAILURE_PHRASES = (
    ("met_coverage", re.compile(r"start point not within|all source points off all meteo grids")),
    ("met_coverage", re.compile(r"start time before start of meteorology")),
    # Met that ends before the run does: HYSPLIT stops its particles there and still
    # prints its normal ending.
    ("met_coverage", re.compile(r"no more meteorology")),
    ("fortran_runtime_error", re.compile(r"Fortran runtime error|forrtl|Segmentation fault")),
)

#: What hycs_std prints on its console when it reaches the end of the run.
COMPLETED = "Complete Hysplit"
# HYSPLIT warns only once, when the first particle leaves the met grid ("off spatial
# domain of all grids"); that none is left shows in its per-step line in MESSAGE
# (grid, minute, particles released, mass still on the grid).
_STEP = re.compile(r"^\s*NOTICE\s+main:\s+\d+\s+\d+\s+\d+\s+(\S+)\s*$", re.MULTILINE)


@contextmanager
def workdir_for(sim_id: str, workdir: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """Yield a fresh, private work directory; remove it on success.

    A failed run's directory is kept for diagnosis (``stilt.keep-failed-workdirs``),
    without its particle table; an explicit ``workdir`` is always kept whole. A
    cancelled run's directory is removed: there is nothing to diagnose, and an
    interrupted run of many simulations would otherwise leave one per task behind.
    """
    if workdir is not None:
        path = Path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    path = new_workdir(sim_id)  # 0700, marked as this process's: cleaned if it dies
    try:
        yield path
    except BaseException as exc:
        cancelled = isinstance(exc, HysplitError) and exc.reason == CANCELLED
        if cancelled:
            exc.workdir = None  # it is about to be removed
        if setting("keep-failed-workdirs") and not cancelled:
            keep_workdir(path)  # kept on purpose: not a dead run's leftovers
            # Inputs and logs are what diagnosis needs; the particle tables of a
            # failed run can be hundreds of MB of RAM on a tmpfs compute root.
            for particle_file in path.rglob(PARTICLE_FILE):
                particle_file.unlink()
        else:
            shutil.rmtree(path, ignore_errors=True)
        raise
    shutil.rmtree(path, ignore_errors=True)


def run_hysplit(
    workdir: Path,
    install: HysplitInstall,
    timeout: float,
    cancelled: Callable[[], str | None] | None = None,
) -> Path:
    """Run ``hycs_std`` in ``workdir`` (inputs already written) and return its particle file.

    The process runs in its own session; on timeout, interruption or
    cancellation, the whole process group is killed, so no orphaned
    ``hycs_std`` is left behind.

    Parameters
    ----------
    workdir : pathlib.Path
        The run's work directory, holding its CONTROL and SETUP files.
    install : HysplitInstall
        The ``hycs_std`` to run and its data files.
    timeout : float
        Seconds after which ``hycs_std`` is killed.
    cancelled : callable, optional
        Called before the run and every :data:`CANCEL_POLL` seconds during it,
        from another thread: returns why the caller gave up on the run (one
        line), or ``None`` to let it go on. Default: never cancelled.

    Raises
    ------
    HysplitError
        With reason ``timeout``, ``cancelled``, ``met_coverage``,
        ``fortran_runtime_error``, ``nonzero_exit``, ``no_particle_data`` or
        ``incomplete_run`` (see :func:`classify`), the log tail and the work directory.
    """
    if cancelled is not None and (why := cancelled()):
        # Cancelled before this run (e.g. between the main and the error run).
        raise HysplitError(CANCELLED, f"{why}; hycs_std was not started", "", str(workdir))
    _link(install.executable, workdir / "hycs_std")
    for table in install.data_files:
        _link(table, workdir / table.name)
    _link(Path(os.devnull), workdir / "PARTICLE.DAT")
    log_path = workdir / LOG_NAME
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*_die_with_parent(), "./hycs_std"], cwd=workdir, env=hysplit_environment(),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        # A watchdog kills on timeout or cancellation while this thread blocks in
        # wait(): wait(timeout=...) would poll with sleeps, idling up to 50 ms per run.
        watchdog = _Watchdog(process, timeout, cancelled)
        watchdog.start()
        try:
            returncode = process.wait()
        except BaseException:
            _kill_group(process)
            raise
        finally:
            watchdog.stop()
        if watchdog.ended == "timeout":
            raise HysplitError(
                "timeout",
                f"hycs_std ran longer than {timeout:g} s",
                log_tail(workdir),
                str(workdir),
            )
        if watchdog.ended == CANCELLED:
            raise HysplitError(
                CANCELLED, f"{watchdog.why}; hycs_std was killed", log_tail(workdir),
                str(workdir),
            )  # fmt: skip
    particle_file = workdir / PARTICLE_FILE
    failure = classify(workdir, returncode)
    if failure is not None:
        reason, message = failure
        raise HysplitError(reason, message, log_tail(workdir), str(workdir))
    return particle_file


class _Watchdog(threading.Thread):
    """Kill a HYSPLIT process group on timeout, or once ``cancelled()`` says why.

    Without a check it sleeps until the deadline; with one it wakes every
    :data:`CANCEL_POLL` seconds. After :meth:`stop`, ``ended`` is ``None`` (the
    run ended by itself), ``"timeout"`` or :data:`CANCELLED` (``why`` then says why).
    """

    def __init__(
        self,
        process: subprocess.Popen,
        timeout: float,
        cancelled: Callable[[], str | None] | None,
    ) -> None:
        super().__init__(name=f"hysplit-watchdog-{process.pid}", daemon=True)
        self.process = process
        self.deadline = time.monotonic() + timeout
        self.cancelled = cancelled
        self.ended: str | None = None
        self.why: str | None = None
        self._done = threading.Event()

    def run(self) -> None:
        while True:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                self.ended = "timeout"
                break
            interval = remaining if self.cancelled is None else min(remaining, CANCEL_POLL)
            if self._done.wait(interval):
                return
            self.why = self.cancelled() if self.cancelled is not None else None
            if self.why is not None:
                self.ended = CANCELLED
                break
        _kill_group(self.process)

    def stop(self) -> None:
        """Stop watching (the process has ended) and wait for the watchdog to finish."""
        self._done.set()
        self.join()


def hysplit_environment() -> dict[str, str]:
    """The environment ``hycs_std`` runs in: ours, plus ``stilt.hysplit-glibc-tunables``.

    Tunables already in ``GLIBC_TUNABLES`` come after the configured ones, so a
    user's own settings win.
    """
    tunables = setting("hysplit-glibc-tunables")
    if not tunables:
        return dict(os.environ)
    given = os.environ.get("GLIBC_TUNABLES")
    return {**os.environ, "GLIBC_TUNABLES": f"{tunables}:{given}" if given else tunables}


def classify(workdir: Path, returncode: int) -> tuple[str, str] | None:
    """Return ``(reason, message)`` for a failed run, or ``None`` when it completed.

    A run completed when it exited 0, wrote particles, printed :data:`COMPLETED`,
    and its particles reach the run length of its CONTROL, or HYSPLIT's last step
    shows none left on the met grid (the met running out is caught before, by
    its own message).
    """
    text = log_text(workdir)
    for reason, pattern in _FAILURE_PHRASES:
        match = pattern.search(text)
        if match:
            line = next(ln for ln in text.splitlines() if match.group(0) in ln).strip()
            return reason, line
    if returncode != 0:
        return "nonzero_exit", f"hycs_std exited with status {returncode}"
    particle_file = workdir / PARTICLE_FILE
    if not particle_file.exists():
        return "no_particle_data", f"hycs_std wrote no {PARTICLE_FILE}"
    with particle_file.open("rb") as f:
        f.readline()
        if not f.readline().strip():
            return "no_particle_data", f"{PARTICLE_FILE} holds no trajectory data"
    # An exit status of 0 is not enough: a Fortran STOP also exits 0, and particles
    # cut short mean a footprint of fewer hours than asked (uataq/stilt#139).
    asked, reached = run_length(workdir), last_minute(workdir)
    if COMPLETED not in text:
        return "incomplete_run", (
            f"hycs_std ended without printing '{COMPLETED}': particles reach "
            f"{reached:g} of {asked} min"
        )
    if abs(reached) < abs(asked) and not _all_left_grid(text):
        return "incomplete_run", (
            f"particles reach {reached:g} of {asked} min, and HYSPLIT did not say they "
            "all left the met grid"
        )
    return None


def run_length(workdir: Path) -> int:
    """The run length its CONTROL asks for, in signed minutes (negative: backward)."""
    lines = (workdir / "CONTROL").read_text().splitlines()
    return 60 * int(lines[2 + int(lines[1])])  # after the start time and the release points


def last_minute(workdir: Path) -> float:
    """The time (minutes since release) of the last complete row of the particle file.

    HYSPLIT writes rows by time step, so this is how far its particles got.
    """
    setup = (workdir / "SETUP.CFG").read_text()
    varsiwant = re.search(r"^VARSIWANT=(.*),$", setup, re.MULTILINE)
    column = [v.strip(" '") for v in varsiwant.group(1).split(",")].index("time")
    with (workdir / PARTICLE_FILE).open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - 65536))
        tail = f.read().split(b"\n")[1:-1]  # whole lines only: the first may be cut
    rows = [line.split() for line in tail if line.strip()]
    return float(rows[-1][column]) if rows else 0.0


def _all_left_grid(text: str) -> bool:
    steps = _STEP.findall(text)
    return bool(steps) and float(steps[-1]) == 0.0


def log_text(workdir: Path) -> str:
    """HYSPLIT's console output followed by its MESSAGE and WARNING files."""
    parts = []
    for name in (LOG_NAME, "WARNING", "MESSAGE"):
        path = workdir / name
        if path.exists():
            parts.append(path.read_text(errors="replace"))
    return "\n".join(parts)


def log_tail(workdir: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of HYSPLIT's console output and WARNING file.

    A killed ``hycs_std`` loses its buffered console output; MESSAGE's tail stands in.
    """
    for names in ((LOG_NAME, "WARNING"), ("MESSAGE",)):
        text = []
        for name in names:
            path = workdir / name
            if path.exists():
                text += path.read_text(errors="replace").splitlines()
        if any(line.strip() for line in text):
            return "\n".join(text[-lines:])
    return ""


def _link(target: Path, link: Path) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


@functools.cache
def _die_with_parent() -> list[str]:
    """A command prefix that makes hycs_std die with the thread that started it.

    A worker killed with SIGKILL cannot kill its hycs_std, so Linux is asked to
    (PR_SET_PDEATHSIG), through util-linux's ``setpriv``: setting it from a
    ``preexec_fn`` would run Python in a child forked from a threaded process,
    which can deadlock. Without ``setpriv`` (or its ``--pdeathsig``) nothing is added.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return []
    usage = subprocess.run([setpriv, "--help"], capture_output=True, text=True).stdout
    return [setpriv, "--pdeathsig", "KILL", "--"] if "--pdeathsig" in usage else []


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
