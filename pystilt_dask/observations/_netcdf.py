"""Open a product file (path or fsspec URL) and decode its variables as netCDF readers do.

Products are netCDF-4 (HDF5) files, read with h5netcdf through a file object, so
a URL (``s3://``, ``https://``, ...) reads as a local path does. Variables come
back as float64 with the CF conventions a netCDF library applies: values equal
to ``_FillValue`` (or ``missing_value``) or outside ``valid_min``/``valid_max`` become NaN, then
``scale_factor`` and ``add_offset`` apply, in the variable's own precision.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fsspec
import numpy as np


@contextmanager
def open_product(path: str | Path) -> Iterator[Any]:
    """An ``h5netcdf.File`` for ``path`` (local path or fsspec URL), closed on exit."""
    import h5netcdf

    with fsspec.open(str(path), "rb") as handle, h5netcdf.File(handle, "r") as f:
        yield f


def product_name(path: str | Path) -> str:
    """The file name at the end of a path or URL."""
    return re.split(r"[/\\]", str(path).rstrip("/"))[-1]


def _attr(var: Any, name: str) -> Any:
    value = var.attrs.get(name)
    if value is None:
        return None
    value = np.asarray(value)
    return value.reshape(-1)[0] if value.size else None


def decoded(var: Any, index: Any = ()) -> np.ndarray:
    """``var[index]`` as float64: fills and out-of-range values NaN, then scaled."""
    raw = np.asarray(var[index])
    bad = np.zeros(raw.shape, dtype=bool)
    for name in ("_FillValue", "missing_value"):
        fill = _attr(var, name)
        if fill is not None:
            bad |= raw == fill
    low, high = _attr(var, "valid_min"), _attr(var, "valid_max")
    if low is not None:
        bad |= raw < low
    if high is not None:
        bad |= raw > high
    scale, offset = _attr(var, "scale_factor"), _attr(var, "add_offset")
    values = raw
    if scale is not None:
        values = values * scale
    if offset is not None:
        values = values + offset
    values = np.asarray(values, dtype=np.float64)
    values[bad] = np.nan
    return values


def raw(var: Any, index: Any = ()) -> np.ndarray:
    """``var[index]`` as stored (integers stay integers)."""
    return np.asarray(var[index])


def text(var: Any, index: Any = ()) -> np.ndarray:
    """A string variable, or a character array's rows, as an array of ``str``."""
    values = np.asarray(var[index])
    if values.dtype.kind == "S" and values.dtype.itemsize == 1 and values.ndim >= 2:
        joined = values.view(f"S{values.shape[-1]}").reshape(values.shape[:-1])
        return np.array([s.decode("ascii").strip() for s in joined.ravel()]).reshape(joined.shape)
    flat = [v.decode() if isinstance(v, bytes) else str(v) for v in values.ravel()]
    return np.array(flat, dtype=object).reshape(values.shape)
