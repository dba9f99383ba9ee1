"""Distributed's notes that are no news to a STILT user, kept from their terminal.

An interrupted run cancels its tasks on purpose; each cancelled task's worker
then logs that its coroutine "ended with CancelledError". Workers that are
threads of the user's process log to the user's terminal, and so do the worker
processes a local cluster starts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

#: The logger of distributed's worker state machine, which logs the notes.
STATE_MACHINE = "distributed.worker.state_machine"


class CancelledTaskNote(logging.Filter):
    """Drops distributed's warning that a cancelled task's coroutine ended cancelled."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "ended with CancelledError" not in record.getMessage()


@contextmanager
def quiet_cancels() -> Iterator[None]:
    """Drop the notes while the block runs (a cluster of ours in the user's process)."""
    logger = logging.getLogger(STATE_MACHINE)
    note = CancelledTaskNote()
    logger.addFilter(note)
    try:
        yield
    finally:
        logger.removeFilter(note)


def quiet_cancels_in_worker_process() -> None:
    """Drop the notes for good: in a worker process pystilt_dask started (it is ours)."""
    logger = logging.getLogger(STATE_MACHINE)
    if not any(isinstance(f, CancelledTaskNote) for f in logger.filters):
        logger.addFilter(CancelledTaskNote())
