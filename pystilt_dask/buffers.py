"""Bytes handed to Arrow's readers in memory Arrow owns."""

from __future__ import annotations

import pyarrow as pa


def arrow_buffer(data: bytes) -> pa.Buffer:
    """A copy of ``data`` in memory Arrow allocated, for Arrow's readers.

    Arrow's Parquet scan (``pq.read_table``, also under ``pd.read_parquet``) may
    drop its last reference to its input on one of Arrow's threads after the call
    returned. Input that wraps a Python object (``bytes``, ``io.BytesIO``) then
    takes the GIL there; when the interpreter is exiting, Python 3.11 ends that
    thread with ``pthread_exit``, whose unwinding through Arrow's destructors
    aborts the process ("terminate called without an active exception"). Memory
    Arrow allocated is freed without Python.
    """
    buffer = pa.allocate_buffer(len(data))
    pa.FixedSizeBufferWriter(buffer).write(data)
    return buffer
