"""Many product files at once: one dask DataFrame partition per file."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd


def read_soundings(
    paths: Sequence[str | Path],
    reader: Callable[..., pd.DataFrame],
    *,
    meta: pd.DataFrame | None = None,
    **kwargs: Any,
) -> Any:
    """Read many product files (a month of orbits) lazily, one partition per file.

    Each partition is ``reader(path, **kwargs)``, so the files are read in
    parallel by whatever scheduler computes the result (a ``distributed``
    client's workers, or local threads). Per-row arrays (``ak``,
    ``pressure_levels``, ...) stay NumPy arrays in object columns.

    Parameters
    ----------
    paths : sequence of str or Path
        Product files, local paths or fsspec URLs, in the order of the partitions.
    reader : callable
        A reader, e.g. :func:`read_tropomi_ch4` or :func:`read_oco2`.
    meta : pandas.DataFrame, optional
        An empty table with the reader's columns. By default the first file is
        read at once to find them.
    **kwargs
        Passed to every ``reader`` call (``lon_range=...``, ``species="xch4"``).

    Returns
    -------
    dask.dataframe.DataFrame
        The files' tables one after another; ``.compute()`` gives the pandas table
        ``pd.concat([reader(p, **kwargs) for p in paths], ignore_index=True)``
        holds, but with each file's own index.
    """
    import dask
    import dask.dataframe as dd

    paths = [str(p) for p in paths]
    if not paths:
        raise ValueError("read_soundings needs at least one file")
    if meta is None:
        meta = reader(paths[0], **kwargs).iloc[:0]
    # dask would turn object columns into Arrow strings; the per-row arrays must stay arrays.
    with dask.config.set({"dataframe.convert-string": False}):
        return dd.from_map(reader, paths, meta=meta, enforce_metadata=False, **kwargs)
