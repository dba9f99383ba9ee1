"""Claims: which process runs a simulation, so that coordinators do not duplicate work.

A task takes its simulation's claim before running it: it creates
``.stilt/claims/<sim_id>@<generation>.json`` with create-if-absent, so of any
number of contenders exactly one wins, and rewrites it every third of its
lifetime (``stilt.claim-ttl``) while it runs.

A claim names its **holder**: the process that holds and renews it (host, pid
and the process's start time) and the run it works for (one coordinator's
submission). It is **live** while

* its holder is not known dead: on the reader's own host (same host name and pid
  namespace) a holder whose pid is gone, or now belongs to a process started at
  another time, is dead at once;
* and it was renewed within its lifetime **on the store's clock**: its
  modification time as the store reports it (``os.stat`` locally, the object's
  last-modified time on object stores) plus its lifetime is later than the
  store's now, the modification time of :data:`~.layout.CLOCK` just rewritten. No
  writer's clock enters, so a coordinator whose clock is off neither takes live
  claims early nor holds others off. A read-only store cannot be probed: the
  reader's clock stands in.

A claim that is not live is taken over by creating the next generation (again,
one wins); so is a live one of the same run, when Dask retries a task whose
worker died. A claim that says it lives on for more than twice its lifetime
(its modification time in the store's future, or a claim of an older version
whose writer-clock expiry lies far ahead) is **stuck**: no renewing holder
leaves such a claim, so a coordinator does not wait for it but names it, and
``stilt-dask claims PROJECT --release ID`` frees it. Claims written by older
versions (``owner`` and ``expires`` only) are read by their expiry on the
reader's clock, as those versions did. Claims only save duplicate work:
publishing is idempotent, so a simulation run twice (a takeover of a claim
whose holder was only slow) stays correct.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import dask.config
import dask.utils
import fsspec
import psutil

from ..defaults import process_alive
from ..errors import StoreUnwritable
from . import layout
from .paths import Location

#: A claim living longer than this many lifetimes from now was not left by a renewing holder.
STUCK_LIFETIMES = 2.0


def ttl() -> float:
    """Seconds a claim lives without renewal (``stilt.claim-ttl`` in dask.config)."""
    return float(dask.utils.parse_timedelta(dask.config.get("stilt.claim-ttl")))


def new_owner() -> str:
    """A new run id, the run a claim's holder works for: one per coordinator run (or lone task)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _pid_namespace() -> str:
    # Two containers may share a host name and a kernel, not their pid namespace.
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


@dataclass(frozen=True)
class Holder:
    """The process holding a claim, and the run it works for.

    Attributes
    ----------
    run : str
        The coordinator run (:func:`new_owner`).
    host, pid_namespace : str
        Where the process runs; ``""`` for claims of older versions, which did not say.
    pid : int
        Its process id (0 when not known).
    started : float
        Its start time (``psutil.Process.create_time``): tells it from a later
        process that got the same pid.
    """

    run: str
    host: str = ""
    pid_namespace: str = ""
    pid: int = 0
    started: float = 0.0

    @classmethod
    def this_process(cls, run: str) -> Holder:
        """This process, working for ``run``."""
        pid = os.getpid()
        started = psutil.Process(pid).create_time()
        return cls(run, socket.gethostname(), _pid_namespace(), pid, started)

    @property
    def local(self) -> bool:
        """Whether the holder runs where this process can see it (same host and pid namespace)."""
        return bool(self.pid) and (self.host, self.pid_namespace) == (
            socket.gethostname(),
            _pid_namespace(),
        )

    @property
    def dead(self) -> bool:
        """Whether the holder is known to be gone (only a local holder can be)."""
        return self.local and not process_alive(self.pid, self.started)

    def __str__(self) -> str:
        where = f"host {self.host} pid {self.pid}" if self.pid else "an older version"
        return f"{where}, run {self.run}"


@dataclass(frozen=True)
class Claim:
    """One generation of a simulation's claim, as read at one moment.

    Attributes
    ----------
    sim_id : str
        The simulation.
    generation : int
        The claim's generation (each takeover creates the next).
    holder : Holder
        Who holds it.
    lifetime : float
        Seconds it lives without renewal (its holder's ``stilt.claim-ttl``).
    remaining : float
        Seconds it had left when read, on the store's clock (negative: expired).
    read_at : float
        When it was read, on this process's clock.
    dead : bool
        Whether its holder was known dead when read.
    """

    sim_id: str
    generation: int
    holder: Holder
    lifetime: float
    remaining: float = math.inf
    read_at: float = 0.0
    dead: bool = False

    @property
    def key(self) -> str:
        """The claim's key in the store."""
        return layout.claim_key(self.sim_id, self.generation)

    @property
    def live(self) -> bool:
        """Whether the claim held when read: holder not dead, not expired."""
        return not self.dead and self.remaining > 0

    @property
    def stuck(self) -> bool:
        """Whether it was live but lives on far beyond what a renewing holder leaves."""
        return self.live and self.remaining > STUCK_LIFETIMES * self.lifetime

    @property
    def expires(self) -> float:
        """When it expires unless renewed, on this process's clock (seconds since the epoch)."""
        return self.read_at + self.remaining

    @property
    def condition(self) -> str:
        """``live``, ``stuck``, ``dead`` (holder gone) or ``expired``."""
        if self.dead:
            return "dead"
        if not self.live:
            return "expired"
        return "stuck" if self.stuck else "live"

    def describe(self) -> str:
        """One line: holder, and until when (or why not)."""
        if self.dead:
            return f"{self.holder}: holder process gone"
        when = _utc(self.expires) if math.isfinite(self.expires) else "never"
        if not self.live:
            return f"{self.holder}: expired {when}"
        return f"{self.holder}: until {when} unless renewed"

    def to_bytes(self) -> bytes:
        """The claim as stored."""
        holder = self.holder
        return json.dumps({
            "run": holder.run, "host": holder.host, "pid_namespace": holder.pid_namespace,
            "pid": holder.pid, "started": holder.started, "ttl": self.lifetime,
        }).encode()  # fmt: skip


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _parse(name: str) -> tuple[str, int] | None:
    stem = name.removesuffix(layout.JSON_SUFFIX)
    sim_id, sep, generation = stem.rpartition(layout.CLAIM_SEPARATOR)
    if stem == name or not sep or not generation.isdigit():
        return None
    return sim_id, int(generation)


def modified(location: Location, key: str) -> float:
    """When ``key`` was last written, as the store reports it (seconds since the epoch).

    Raises ``FileNotFoundError`` when the key is absent.
    """
    if location.is_local:
        return os.stat(location.url(key)).st_mtime
    fs, path = fsspec.core.url_to_fs(location.url(key), **(location.storage_options or {}))
    fs.invalidate_cache(path)
    return fs.modified(path).timestamp()


def store_now(location: Location) -> float:
    """The store's clock now: the modification time of :data:`~.layout.CLOCK` just rewritten.

    A store that cannot be asked (read-only, or credentials that may only read)
    leaves this process's clock.
    """
    try:
        location.write_bytes(layout.CLOCK, b"")
        return modified(location, layout.CLOCK)
    except (StoreUnwritable, OSError):
        return time.time()


class _Clocks:
    """The store's now and this process's, read once (only when a claim needs judging)."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self._now: tuple[float, float] | None = None

    def __call__(self) -> tuple[float, float]:
        if self._now is None:
            self._now = (store_now(self.location), time.time())
        return self._now


def _read(location: Location, sim_id: str, generation: int, clocks: _Clocks) -> Claim | None:
    key = layout.claim_key(sim_id, generation)
    try:
        data = location.read_bytes(key)
        written = modified(location, key)
    except FileNotFoundError:
        return None
    store, local = clocks()
    try:
        fields = json.loads(data)
        if "expires" in fields:  # an older version's claim: its expiry, on this clock
            holder = Holder(str(fields["owner"]))
            return Claim(sim_id, generation, holder, ttl(), float(fields["expires"]) - local, local)
        holder = Holder(
            str(fields["run"]), str(fields["host"]), str(fields["pid_namespace"]),
            int(fields["pid"]), float(fields["started"]),
        )  # fmt: skip
        lifetime = float(fields["ttl"])
    except (ValueError, KeyError, TypeError):  # torn by an outside hand: expired
        return Claim(sim_id, generation, Holder(""), ttl(), -math.inf, local)
    return Claim(
        sim_id, generation, holder, lifetime, written + lifetime - store, local, holder.dead
    )


def _generations(location: Location) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for name in location.list_names(layout.CLAIMS):
        parsed = _parse(name)
        if parsed is not None:
            found.setdefault(parsed[0], []).append(parsed[1])
    return found


def current(location: Location) -> dict[str, Claim]:
    """The newest claim generation of every claimed simulation, judged against one clock reading."""
    clocks = _Clocks(location)
    claims = {
        sim_id: _read(location, sim_id, max(gens), clocks)
        for sim_id, gens in _generations(location).items()
    }
    return {sim_id: claim for sim_id, claim in claims.items() if claim is not None}


def live_ids(location: Location) -> set[str]:
    """Ids of simulations under a live claim (``running`` in status)."""
    return {sim_id for sim_id, claim in current(location).items() if claim.live}


def acquire(
    location: Location, sim_id: str, run: str | None = None, lifetime: float | None = None
) -> Claim | None:
    """Take the claim of ``sim_id`` for this process and ``run``; ``None`` when another holds it.

    A claim that is not live, or a live one of the same run (a retried task), is
    taken over by creating the next generation; the older generations are removed.
    """
    run = run or new_owner()
    lifetime = ttl() if lifetime is None else lifetime
    held = _generations(location).get(sim_id, [])
    generation = 0
    if held:
        newest = _read(location, sim_id, max(held), _Clocks(location))
        if newest is not None and newest.live and newest.holder.run != run:
            return None
        generation = max(held) + 1
    claim = Claim(sim_id, generation, Holder.this_process(run), lifetime, lifetime, time.time())
    if not location.create(claim.key, claim.to_bytes()):
        return None  # another contender took this generation first
    for gen in held:  # superseded generations
        location.delete(layout.claim_key(sim_id, gen))
    return claim


def release(location: Location, claim: Claim) -> None:
    """Give a claim up (its simulation ended: complete or failed)."""
    location.delete(claim.key)


def release_all(location: Location, sim_id: str) -> bool:
    """Remove every generation of ``sim_id``'s claim, whoever holds it; whether there was one."""
    generations = _generations(location).get(sim_id, [])
    for gen in generations:
        location.delete(layout.claim_key(sim_id, gen))
    return bool(generations)


def release_owned(location: Location, sim_id: str, run: str) -> None:
    """Give up ``run``'s claim of ``sim_id``, if it holds it (its holder died with a worker)."""
    claim = current(location).get(sim_id)
    if claim is not None and claim.holder.run == run:
        release(location, claim)


@contextmanager
def hold(location: Location, sim_id: str, run: str | None = None) -> Iterator[Claim | None]:
    """Hold the claim of ``sim_id`` while the block runs, renewing it; yield ``None`` if held.

    The claim is renewed (rewritten, which moves its modification time) every
    third of its lifetime from a background thread, and released when the block
    ends, whether it succeeds or raises.
    """
    lifetime = ttl()
    claim = acquire(location, sim_id, run, lifetime)
    if claim is None:
        yield None
        return
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(lifetime / 3):
            location.write_bytes(claim.key, claim.to_bytes())

    renewer = threading.Thread(target=renew, name=f"stilt-claim-{sim_id}", daemon=True)
    renewer.start()
    try:
        yield claim
    finally:
        stop.set()
        renewer.join()
        release(location, claim)
