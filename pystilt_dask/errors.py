"""Exceptions raised by pystilt_dask.

Every exception carries a one-line, actionable message; the CLI prints that line
(no traceback) and exits with status 2 for bad input.
"""

from __future__ import annotations


class StiltError(Exception):
    """Base class of every error pystilt_dask raises on purpose."""


class ConfigError(StiltError, ValueError):
    """A configuration file or object is invalid (names the field at fault)."""


class ReceptorError(StiltError, ValueError):
    """A receptor or a receptor-table row is invalid (names the row and field)."""


class MeteorologyError(StiltError):
    """Meteorology is missing or does not cover a simulation's window or location."""


class StoreError(StiltError):
    """A project store is missing, malformed or inconsistent with its configuration."""


class StoreUnwritable(StoreError):
    """The store refused a write: it is full, read-only, or not ours to write.

    Nothing else can be stored there either, so a run stops at the first one,
    leaving the simulations it did not finish pending.
    """


class HysplitNotFoundError(StiltError, FileNotFoundError):
    """No ``hycs_std`` executable could be resolved."""


class HysplitError(StiltError):
    """A HYSPLIT run failed.

    Parameters
    ----------
    reason : str
        Machine-readable failure class, e.g. ``"timeout"`` or ``"no_particle_data"``.
    message : str
        One-line explanation.
    log_tail : str
        The last lines of HYSPLIT's output, for diagnosis.
    workdir : str or None
        The kept work directory of the failed run.
    """

    def __init__(
        self, reason: str, message: str, log_tail: str = "", workdir: str | None = None
    ) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.log_tail = log_tail
        self.workdir = workdir

    def __reduce__(self):  # keep the fields when Dask pickles the exception
        return (type(self), (self.reason, self.message, self.log_tail, self.workdir))
