"""Claims: which process is working on a simulation, kept in the store itself.

Dask's scheduler is the work queue of one coordinator; claims keep separate
coordinators (two ``stilt-dask run``, a ``run`` beside a ``serve``) from doing the
same work, with no database. A claim is the key
``.stilt/claims/<sim_id>@<generation>.json`` holding its owner and expiry time. It
is taken with create-if-absent, so one contender wins; renewed by its holder while
the simulation runs; deleted when it ends. A claim whose holder died expires, and
the next contender takes it over by creating the next generation (again, one
wins). A claim belongs to a run (one coordinator's submission): when Dask
retries a task whose worker died, the retry takes over its own run's claim at
once. Claims only save duplicate work: publishing is idempotent, so a simulation
run twice (a takeover of a claim whose holder was only slow) stays correct.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import dask.config
import dask.utils

from . import layout
from .paths import Location


def ttl() -> float:
    """Seconds a claim lives without renewal (``stilt.claim-ttl`` in dask.config)."""
    return float(dask.utils.parse_timedelta(dask.config.get("stilt.claim-ttl")))


@dataclass(frozen=True)
class Claim:
    """One generation of a simulation's claim."""

    sim_id: str
    generation: int
    owner: str
    expires: float

    @property
    def key(self) -> str:
        """The claim's key in the store."""
        return layout.claim_key(self.sim_id, self.generation)

    @property
    def live(self) -> bool:
        """Whether the claim has not expired."""
        return self.expires > time.time()

    def to_bytes(self) -> bytes:
        """The claim as stored."""
        return json.dumps({"owner": self.owner, "expires": self.expires}).encode()


def new_owner() -> str:
    """A new claim owner: one per run of a coordinator (or per lone task)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _parse(name: str) -> tuple[str, int] | None:
    stem = name.removesuffix(layout.JSON_SUFFIX)
    sim_id, sep, generation = stem.rpartition(layout.CLAIM_SEPARATOR)
    if stem == name or not sep or not generation.isdigit():
        return None
    return sim_id, int(generation)


def _read(location: Location, sim_id: str, generation: int) -> Claim | None:
    try:
        fields = json.loads(location.read_bytes(layout.claim_key(sim_id, generation)))
    except FileNotFoundError:
        return None
    except ValueError:  # a claim torn by an outside hand counts as expired
        return Claim(sim_id, generation, "", 0.0)
    return Claim(sim_id, generation, fields["owner"], float(fields["expires"]))


def current(location: Location) -> dict[str, Claim]:
    """The newest claim generation of every claimed simulation."""
    newest: dict[str, int] = {}
    for name in location.list_names(layout.CLAIMS):
        parsed = _parse(name)
        if parsed is not None and parsed[1] >= newest.get(parsed[0], -1):
            newest[parsed[0]] = parsed[1]
    claims = {sim_id: _read(location, sim_id, gen) for sim_id, gen in newest.items()}
    return {sim_id: claim for sim_id, claim in claims.items() if claim is not None}


def live_ids(location: Location) -> set[str]:
    """Ids of simulations under a live claim (``running`` in status)."""
    return {sim_id for sim_id, claim in current(location).items() if claim.live}


def acquire(
    location: Location, sim_id: str, owner: str | None = None, lifetime: float | None = None
) -> Claim | None:
    """Take the claim of ``sim_id`` for ``owner``; ``None`` when another owner holds it live.

    An expired claim, or a live one of the same owner (a retried task of the same
    run), is taken over by creating the next generation.
    """
    owner = owner or new_owner()
    lifetime = ttl() if lifetime is None else lifetime
    held = [
        gen
        for name in location.list_names(layout.CLAIMS)
        if (parsed := _parse(name)) is not None and parsed[0] == sim_id
        for gen in [parsed[1]]
    ]
    generation = 0
    if held:
        newest = _read(location, sim_id, max(held))
        if newest is not None and newest.live and newest.owner != owner:
            return None
        generation = max(held) + 1
    claim = Claim(sim_id, generation, owner, time.time() + lifetime)
    if not location.create(claim.key, claim.to_bytes()):
        return None  # another contender took this generation first
    for gen in held:  # expired generations: the new one supersedes them
        location.delete(layout.claim_key(sim_id, gen))
    return claim


def release(location: Location, claim: Claim) -> None:
    """Give a claim up (its simulation ended: complete or failed)."""
    location.delete(claim.key)


def release_owned(location: Location, sim_id: str, owner: str) -> None:
    """Give up ``owner``'s claim of ``sim_id``, if it holds it (its holder died with a worker)."""
    claim = current(location).get(sim_id)
    if claim is not None and claim.owner == owner:
        release(location, claim)


@contextmanager
def hold(location: Location, sim_id: str, owner: str | None = None) -> Iterator[Claim | None]:
    """Hold the claim of ``sim_id`` while the block runs, renewing it; yield ``None`` if held.

    The claim is renewed every third of its lifetime from a background thread and
    released when the block ends, whether it succeeds or raises.
    """
    lifetime = ttl()
    claim = acquire(location, sim_id, owner, lifetime)
    if claim is None:
        yield None
        return
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(lifetime / 3):
            renewed = Claim(sim_id, claim.generation, claim.owner, time.time() + lifetime)
            location.write_bytes(claim.key, renewed.to_bytes())

    renewer = threading.Thread(target=renew, name=f"stilt-claim-{sim_id}", daemon=True)
    renewer.start()
    try:
        yield claim
    finally:
        stop.set()
        renewer.join()
        release(location, claim)
