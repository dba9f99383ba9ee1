"""Failure records and HYSPLIT logs, one key per simulation.

A failure record ``failures/<sim_id>.json`` describes the last failed attempt:
``reason`` (machine-readable, e.g. ``"timeout"``), ``message``, ``log_tail``,
``step`` (``"trajectory"`` or ``"footprint:<name>"``), ``error`` (exception
class) and ``time`` (UTC, ISO 8601). A record never makes a simulation complete;
it is removed once the simulation completes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from ..errors import HysplitError
from . import layout
from .paths import Location


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


def write_failure(location: Location, record: dict[str, Any]) -> None:
    """Store a failure record (atomically, replacing an older one)."""
    location.write_bytes(layout.failure_key(record["sim_id"]), json.dumps(record).encode())


def read_failure(location: Location, sim_id: str) -> dict[str, Any] | None:
    """The failure record of a simulation, or ``None``."""
    try:
        return json.loads(location.read_bytes(layout.failure_key(sim_id)))
    except FileNotFoundError:
        return None


def write_log(location: Location, sim_id: str, text: str) -> None:
    """Store the HYSPLIT log of a simulation's latest attempt."""
    location.write_bytes(layout.log_key(sim_id), text.encode())


def read_log(location: Location, sim_id: str) -> str | None:
    """The stored HYSPLIT log of a simulation, or ``None``."""
    try:
        return location.read_bytes(layout.log_key(sim_id)).decode()
    except FileNotFoundError:
        return None
