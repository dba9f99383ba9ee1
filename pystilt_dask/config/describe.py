"""Validation errors as one line naming each field at fault."""

from __future__ import annotations

from pydantic import ValidationError

from .met import MET_KINDS


def describe(exc: ValidationError) -> str:
    """``exc`` as one line: ``field.path: message`` per error (``config:`` for the whole)."""
    lines = []
    for err in exc.errors():
        loc = err["loc"]
        if loc[:1] == ("mets",) and len(loc) > 2 and loc[2] in MET_KINDS:
            loc = loc[:2] + loc[3:]  # the kind of a mets entry is no field of it
        where = ".".join(str(p) for p in loc) or "config"
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}")
    return "; ".join(lines)
