"""Distributed's notes that are no news to a STILT user, kept from their terminal.

An interrupted run cancels its tasks on purpose; each cancelled task's worker
then logs that its coroutine "ended with CancelledError". A store that refuses
writes (full, read-only) fails every task with
:class:`~pystilt_dask.errors.StoreUnwritable`, which the run reports in one line,
while each worker logs the task's traceback. Workers that are threads of the
user's process log to the user's terminal, and so do the worker processes a
local cluster starts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

#: The loggers that write the notes, and a phrase each note holds.
NOTES = {
    "distributed.worker.state_machine": "ended with CancelledError",
    "distributed.worker": "StoreUnwritable(",
}


class KnownNote(logging.Filter):
    """Drops a logger's records that hold ``phrase``."""

    def __init__(self, phrase: str) -> None:
        super().__init__()
        self.phrase = phrase

    def filter(self, record: logging.LogRecord) -> bool:
        return self.phrase not in record.getMessage()


@contextmanager
def quiet_cancels() -> Iterator[None]:
    """Drop the notes while the block runs (a cluster of ours in the user's process)."""
    notes = [(logging.getLogger(name), KnownNote(phrase)) for name, phrase in NOTES.items()]
    for logger, note in notes:
        logger.addFilter(note)
    try:
        yield
    finally:
        for logger, note in notes:
            logger.removeFilter(note)


def quiet_cancels_in_worker_process() -> None:
    """Drop the notes for good: in a worker process pystilt_dask started (it is ours)."""
    for name, phrase in NOTES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, KnownNote) for f in logger.filters):
            logger.addFilter(KnownNote(phrase))
