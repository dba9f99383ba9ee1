"""Failure records and HYSPLIT logs.

A failure record ``failures/<sim_id>.json`` describes the last failed attempt:
``reason`` (machine-readable, e.g. ``"timeout"``), ``message``, ``log_tail``,
``step`` (``"trajectory"`` or ``"footprint:<name>"``), ``error`` (exception
class) and ``time`` (UTC, ISO 8601); ``logs/<sim_id>.log`` holds that attempt's
HYSPLIT output when there is one. Both exist only while the last attempt failed:
a record never makes a simulation complete, and both are removed once the
simulation completes. The log of a successful run is kept inside its particle
file (:mod:`~pystilt_dask.store.particles`), with the lines that differ between
equal runs (HYSPLIT's wall-clock date and time) blanked by :func:`reproducible`.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from ..errors import HysplitError
from . import layout, particles
from .paths import Location

#: HYSPLIT's lines stating when it ran: the only part of its log that changes between equal runs.
_WALL_CLOCK = re.compile(r"^(\s*Simulation (?:Date|Time) \([^)]*\):).*$", re.MULTILINE)


def failure(exc: BaseException, sim_id: str, step: str) -> dict[str, Any]:
    """Describe a failed attempt of ``step`` as a record."""
    if isinstance(exc, HysplitError):
        reason, message, log_tail = exc.reason, exc.message, exc.log_tail
    else:
        reason, message, log_tail = type(exc).__name__, str(exc), ""
    return {
        "sim_id": sim_id,
        "reason": reason,
        "message": message,
        "log_tail": log_tail,
        "step": step,
        "error": type(exc).__name__,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_failure(location: Location, record: dict[str, Any], log: str | None = None) -> None:
    """Store a failure record and the failed attempt's HYSPLIT ``log`` (when it has one).

    Both replace those of an earlier attempt; the record is written last.
    """
    sim_id = record["sim_id"]
    if log is None:
        location.delete(layout.log_key(sim_id))
    else:
        write_log(location, sim_id, log)
    location.write_bytes(layout.failure_key(sim_id), json.dumps(record).encode())


def read_failure(location: Location, sim_id: str) -> dict[str, Any] | None:
    """The failure record of a simulation, or ``None``."""
    try:
        return json.loads(location.read_bytes(layout.failure_key(sim_id)))
    except FileNotFoundError:
        return None


def reproducible(log: str) -> str:
    """``log`` with HYSPLIT's wall-clock date and time left out, so equal runs log equal text."""
    return _WALL_CLOCK.sub(r"\1 (left out: the wall clock of the run)", log)


def write_log(location: Location, sim_id: str, text: str) -> None:
    """Store the HYSPLIT log of a simulation's failed attempt."""
    location.write_bytes(layout.log_key(sim_id), text.encode())


def read_log(location: Location, sim_id: str) -> str | None:
    """The HYSPLIT log of a simulation's last attempt, or ``None``.

    That of a failed attempt while it is the last, else that of the run whose
    particles are stored (kept in the particle file).

    Raises
    ------
    StoreError
        When the particle file holding the log is damaged.
    """
    try:
        return location.read_bytes(layout.log_key(sim_id)).decode()
    except FileNotFoundError:
        pass
    try:
        return particles.metadata(location, layout.particles_key(sim_id)).get("log")
    except FileNotFoundError:  # neither unpacked nor packed
        return None


def clear(location: Location, sim_id: str) -> None:
    """Remove the failure record and log of a simulation that has completed."""
    location.delete(layout.failure_key(sim_id))
    location.delete(layout.log_key(sim_id))
