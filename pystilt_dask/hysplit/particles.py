"""Parse PARTICLE_STILT.DAT, HYSPLIT-STILT's text particle table, fast and exactly.

The file is one header line (release lat, lon, height) and then one row per
particle and output step, whitespace-separated numbers in VARSIWANT order. A
numba scanner turns the bytes into float64 directly: each number is read as an
integer mantissa and a power of ten and converted with one correctly rounded
operation, so for up to 15 significant digits (HYSPLIT writes fewer) the values
equal what ``strtod`` (and R's ``read.table``) gives.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..defaults import numba_cache_dir

os.environ.setdefault("NUMBA_CACHE_DIR", str(numba_cache_dir()))

from numba import njit  # noqa: E402  (NUMBA_CACHE_DIR must be set before numba loads)

_POW10 = np.array([10.0**k for k in range(23)])  # exactly representable powers of ten


@njit(nogil=True, cache=True)
def _scale(mantissa: float, exponent: int, pow10: np.ndarray) -> float:
    if exponent >= 0:
        if exponent <= 22:
            return mantissa * pow10[exponent]
        return mantissa * 10.0**exponent
    if exponent >= -22:
        return mantissa / pow10[-exponent]
    return mantissa / 10.0**-exponent


@njit(nogil=True, cache=True)
def _parse_numbers(buf: np.ndarray, start: int, out: np.ndarray, pow10: np.ndarray) -> int:
    """Scan whitespace-separated numbers from ``buf[start:]`` into ``out``; return the count."""
    n = 0
    i = start
    size = buf.size
    while i < size:
        c = buf[i]
        if c == 32 or c == 10 or c == 13 or c == 9:
            i += 1
            continue
        negative = False
        if c == 45 or c == 43:  # '-' or '+'
            negative = c == 45
            i += 1
        mantissa = 0.0
        digits = 0
        exponent = 0
        while i < size and 48 <= buf[i] <= 57:
            if digits < 18:
                mantissa = mantissa * 10.0 + (buf[i] - 48)
                digits += 1
            else:
                exponent += 1
            i += 1
        if i < size and buf[i] == 46:  # '.'
            i += 1
            while i < size and 48 <= buf[i] <= 57:
                if digits < 18:
                    mantissa = mantissa * 10.0 + (buf[i] - 48)
                    digits += 1
                    exponent -= 1
                i += 1
        if i < size and (buf[i] == 69 or buf[i] == 101 or buf[i] == 68 or buf[i] == 100):
            i += 1  # Fortran may write E or D exponents
            exp_negative = False
            if i < size and (buf[i] == 45 or buf[i] == 43):
                exp_negative = buf[i] == 45
                i += 1
            value = 0
            while i < size and 48 <= buf[i] <= 57:
                value = value * 10 + (buf[i] - 48)
                i += 1
            exponent += -value if exp_negative else value
        if n >= out.size:
            return -1
        result = _scale(mantissa, exponent, pow10)
        out[n] = -result if negative else result
        n += 1
        # anything else up to the next separator (e.g. Fortran's '*****' overflow) is malformed
        if i < size and not (buf[i] == 32 or buf[i] == 10 or buf[i] == 13 or buf[i] == 9):
            return -2 - n
    return n


def read_particle_file(path: str | os.PathLike[str], columns: Sequence[str]) -> pd.DataFrame:
    """Read a PARTICLE_STILT.DAT file into a DataFrame with R-STILT column names.

    Parameters
    ----------
    path : path-like
        The file HYSPLIT wrote.
    columns : sequence of str
        Its VARSIWANT codes, in order.

    Returns
    -------
    pandas.DataFrame
        float64 columns named by ``columns``; ``time`` and ``indx`` are whole numbers.

    Raises
    ------
    ValueError
        When the numbers do not fill whole rows, or a field is not a number.
    """
    data = np.fromfile(Path(path), dtype=np.uint8)
    newlines = np.flatnonzero(data[:4096] == 10)
    header_end = int(newlines[0]) + 1 if newlines.size else data.size
    n_cols = len(columns)
    # Each number takes at least two bytes (a digit and a separator).
    out = np.empty((data.size - header_end) // 2 + 1, dtype=np.float64)
    count = _parse_numbers(data, header_end, out, _POW10)
    if count < 0:
        raise ValueError(f"{path}: field {-count - 2} is not a number")
    if count % n_cols:
        raise ValueError(f"{path}: {count} numbers do not fill rows of {n_cols} columns")
    table = out[:count].reshape(-1, n_cols)
    return pd.DataFrame({name: np.ascontiguousarray(table[:, j]) for j, name in enumerate(columns)})
