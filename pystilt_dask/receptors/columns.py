"""Receptor numbers and times as whole columns: ids of a million receptors without a loop.

Each function here gives, for an array, exactly what its one-value counterpart in
:mod:`.models` gives for each element (:func:`~.models.format_number`,
:func:`~.models.canonical_number`, :func:`~.models.canonical_longitude`, the time
part of an id), byte for byte.

Numbers print as ``%.15g``. Arrow's float-to-string cast prints the shortest
text that reads back (``0.30000000000000004``), which is another thing, so the
15 significant digits are computed here: ``|x|`` scaled by an exact power of ten
into ``[1e14, 1e15)`` is one correctly rounded product, within 1/16 of the exact
one, so rounding it to an integer gives the digits ``%.15g`` prints unless its
fraction lies near one half. Those values, and the few whose scale is not an
exact double (``|x| < 1e-8`` or ``≥ 1e37``), are formatted one by one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .models import format_number

#: Powers of ten that doubles hold exactly.
_POW10 = 10.0 ** np.arange(23)
#: How far from one half the scaled fraction must be to round it without doubt
#: (its error is at most half a unit in the last place of a number below 2**50: 1/16).
_TIE_MARGIN = 0.1


def _decimal15(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(digits, exponent, sure)``: ``|values| ≈ digits · 10**(exponent - 14)`` rounded as printf.

    ``digits`` are 15-digit integers; ``sure`` is False where the rounding is not
    certain (near a tie, zero, non-finite, or a scale that is not exact).
    """
    x = np.abs(values)
    usable = np.isfinite(x) & (x > 0)
    exponent = np.floor(np.log10(np.where(usable, x, 1.0))).astype(np.int64)
    scale = 14 - exponent
    sure = usable & (np.abs(scale) < len(_POW10))
    power = _POW10[np.minimum(np.abs(scale), len(_POW10) - 1)]
    with np.errstate(over="ignore", invalid="ignore"):  # only where not `sure`
        scaled = np.where(scale >= 0, x * power, x / power)
    digits = np.rint(scaled)
    fraction = scaled - np.floor(scaled)
    sure &= np.abs(fraction - 0.5) > _TIE_MARGIN
    # log10 may land one off near powers of ten, and rounding may carry to 1e15.
    sure &= (scaled >= 1e14) & (digits < 1e15)
    return np.where(sure, digits, 1e14).astype(np.int64), exponent, sure


def canonical_numbers(values: np.ndarray) -> np.ndarray:
    """:func:`~.models.canonical_number` of every element: what its ``%.15g`` text reads as."""
    values = np.asarray(values, dtype=np.float64) + 0.0
    digits, exponent, sure = _decimal15(values)
    scale = 14 - exponent
    power = _POW10[np.minimum(np.abs(scale), len(_POW10) - 1)]
    # An exact integer and an exact power of ten: one correctly rounded operation,
    # the double nearest the decimal, as float() of the text gives.
    magnitude = np.where(scale >= 0, digits / power, digits * power)
    out = np.where(sure, np.copysign(magnitude, values), values)
    for i in np.flatnonzero(~sure & np.isfinite(values) & (values != 0)):
        out[i] = float(format_number(values[i]))
    return out + 0.0


def canonical_longitudes(values: np.ndarray) -> np.ndarray:
    """:func:`~.models.canonical_longitude` of every element: in [-180, 180), as printed."""
    values = np.asarray(values, dtype=np.float64)
    outside = ~((values >= -180) & (values < 180)) & np.isfinite(values)
    wrapped = np.where(outside, np.mod(values + 180, 360) - 180, values)
    return canonical_numbers(wrapped)


def format_numbers(values: np.ndarray) -> pa.StringArray:
    """:func:`~.models.format_number` of every element, as one Arrow string array."""
    values = np.asarray(values, dtype=np.float64) + 0.0
    digits, exponent, sure = _decimal15(values)
    # Rounding may have carried into a new digit (9.9999999999999999 -> 10): it did
    # not here, since `sure` excludes digits reaching 1e15, so `exponent` is the
    # exponent of the printed number.
    text = pc.cast(pa.array(digits), pa.string())
    order = np.argsort(exponent, kind="stable")
    groups = np.flatnonzero(np.diff(exponent[order])) + 1
    pieces = [
        _layout(text.take(pa.array(part)), int(exponent[part[0]]))
        for part in np.split(order, groups)
        if len(part)
    ]
    if not pieces:
        return pa.array([], pa.string())
    laid = pa.concat_arrays(pieces).take(pa.array(np.argsort(order, kind="stable")))
    signed = pc.if_else(pa.array(values < 0), pc.binary_join_element_wise("-", laid, ""), laid)
    zero = values == 0
    signed = pc.if_else(pa.array(zero), "0", signed)
    unsure = ~sure & ~zero
    if not unsure.any():
        return signed
    texts = pa.array([format_number(v) for v in values[unsure]], pa.string())
    return pc.replace_with_mask(signed, pa.array(unsure), texts)


def canonical_codes(
    values: np.ndarray, longitude: bool = False
) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """``(kept, codes, texts)``: each element as a receptor keeps it; its text is ``texts[code]``.

    Equal codes are equal kept numbers (and texts). Each distinct value is
    converted once: receptor tables repeat their sites and heights.
    ``longitude``: wrap into [-180, 180) first.
    """
    codes, distinct = pd.factorize(np.asarray(values, dtype=np.float64))
    kept = canonical_longitudes(distinct) if longitude else canonical_numbers(distinct)
    merged, numbers = pd.factorize(kept)  # values printing alike are one
    return numbers[merged][codes], merged[codes], format_numbers(numbers)


def _layout(digits: pa.StringArray, exponent: int) -> pa.StringArray:
    """``%g``'s text of 15-digit ``digits`` times ``10**(exponent - 14)`` (no sign)."""
    significant = pc.utf8_rtrim(digits, characters="0")
    if -4 <= exponent < 15:
        if exponent < 0:
            return pc.binary_join_element_wise("0." + "0" * (-exponent - 1), significant, "")
        whole = pc.utf8_slice_codeunits(digits, 0, exponent + 1)
        fraction = pc.utf8_slice_codeunits(significant, exponent + 1)
        return _joined(whole, fraction, ".")
    first = pc.utf8_slice_codeunits(significant, 0, 1)
    mantissa = _joined(first, pc.utf8_slice_codeunits(significant, 1), ".")
    return pc.binary_join_element_wise(mantissa, f"e{exponent:+03d}", "")


def _joined(head: pa.StringArray, tail: pa.StringArray, separator: str) -> pa.StringArray:
    """``head + separator + tail``, or ``head`` alone where ``tail`` is empty."""
    joined = pc.binary_join_element_wise(head, tail, separator)
    return pc.if_else(pc.equal(pc.utf8_length(tail), 0), head, joined)


def time_ids(times: np.ndarray) -> tuple[pa.Array, pa.Array, np.ndarray]:
    """``(ids, minute_ids, has_seconds)`` of naive UTC times (``datetime64``, whole seconds).

    ``ids`` stamp the seconds when a time has any (``yyyymmddHHMMSS``), else
    ``yyyymmddHHMM``; ``minute_ids`` are always to the minute. Each distinct time
    is formatted once.
    """
    codes, distinct = pd.factorize(np.asarray(times, dtype="datetime64[s]").astype(np.int64))
    ids, minute_ids, has_seconds = _time_ids(distinct.astype("datetime64[s]"))
    take = pa.array(codes)
    return ids.take(take), minute_ids.take(take), has_seconds[codes]


def _time_ids(seconds: np.ndarray) -> tuple[pa.Array, pa.Array, np.ndarray]:
    minutes = seconds.astype("datetime64[m]")
    days = seconds.astype("datetime64[D]")
    months = seconds.astype("datetime64[M]")
    years = seconds.astype("datetime64[Y]")
    month = (months - years.astype("datetime64[M]")).astype(np.int64) + 1
    day = (days - months.astype("datetime64[D]")).astype(np.int64) + 1
    minute_of_day = (minutes - days.astype("datetime64[m]")).astype(np.int64)
    second = (seconds - minutes.astype("datetime64[s]")).astype(np.int64)
    year = years.astype(np.int64) + 1970
    stamp = (((year * 100 + month) * 100 + day) * 100 + minute_of_day // 60) * 100
    stamp += minute_of_day % 60
    has_seconds = second != 0
    minute_ids = pc.cast(pa.array(stamp), pa.string())
    ids = pc.if_else(
        pa.array(has_seconds), pc.cast(pa.array(stamp * 100 + second), pa.string()), minute_ids
    )
    return ids, minute_ids, has_seconds
