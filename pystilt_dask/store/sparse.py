"""The non-zero codec: a footprint chunk stored as its non-zero cells.

A footprint is ~1 % non-zero. Stored dense, every read decompresses and scans
every cell; stored as its non-zero cells, a read decompresses about a hundredth
of that and the analysis kernels visit only those cells. The codec is a zarr v3
array → bytes codec (``pystilt_dask.nonzero``, registered for zarr through the
``zarr.codecs`` entry point of the installed package), followed by ``zstd`` and
``crc32c`` like any footprint chunk, so plain ``xarray.open_zarr`` reads the
dense values and a chunk never written still reads as the fill value (NaN).

Encoded layout (all little-endian)::

    b"PSNZ"  u32 version (1)  u64 n
    n × u32  gaps between the flat (C-order) indices of the cells kept
             (the first is the first index)
    n × the dtype's bytes: the values of those cells

A cell is kept when its bits are not all zero, so every value, ``-0.0`` and
NaN included, round-trips exactly; every other cell decodes to zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numba import njit
from zarr.abc.codec import ArrayBytesCodec
from zarr.core.common import parse_named_configuration

if TYPE_CHECKING:
    from typing import Self

    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer, NDBuffer

#: The codec's name in an array's ``zarr.json``.
NAME = "pystilt_dask.nonzero"
_MAGIC = b"PSNZ"
_VERSION = 1
_HEADER = 16
_BITS = {1: "<u1", 2: "<u2", 4: "<u4", 8: "<u8"}


def encode(chunk: np.ndarray) -> bytes:
    """The non-zero cells of ``chunk`` (any shape, fixed-size dtype) as bytes.

    Raises
    ------
    ValueError
        When ``chunk`` has 2³² cells or more (gaps are 32-bit).
    """
    flat = np.ascontiguousarray(chunk).reshape(-1)
    if flat.size >= 2**32:
        raise ValueError(f"a chunk of {flat.size} cells is too large for {NAME} (< 2**32)")
    little = flat.astype(flat.dtype.newbyteorder("<"), copy=False)
    index = np.flatnonzero(little.view(_BITS[little.dtype.itemsize]))
    gaps = np.diff(index, prepend=0).astype("<u4")
    header = (
        _MAGIC + np.array([_VERSION], "<u4").tobytes() + np.array([index.size], "<u8").tobytes()
    )
    return b"".join((header, gaps.tobytes(), little[index].tobytes()))


def decode(data, dtype: np.dtype, shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """The dense chunk ``data`` encodes, its cells' flat indices and their values.

    Raises
    ------
    ValueError
        When ``data`` is not what :func:`encode` writes, or not for ``shape``.
    """
    gaps, values = cells(data, dtype, shape)
    indices = np.cumsum(gaps, dtype=np.int64)
    return dense(gaps, values, shape), indices, values


def cells(data, dtype: np.dtype, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The cells ``data`` holds: the gaps between their flat indices, and their values.

    Views into ``data``, nothing copied: what readers that visit the cells
    alone take, rather than the dense chunk. The cells' flat (C-order) indices
    are the running sums of the gaps (``uint32``; the first gap is the first
    index), increasing.

    Raises
    ------
    ValueError
        When ``data`` is not what :func:`encode` writes, or not for ``shape``.
    """
    body = np.frombuffer(data, dtype="u1")
    if body.size < _HEADER or bytes(body[:4]) != _MAGIC:
        raise ValueError(f"not a {NAME} chunk (no header)")
    version = int(body[4:8].view("<u4")[0])
    if version != _VERSION:
        raise ValueError(f"{NAME} chunk of version {version}; this version reads {_VERSION}")
    n = int(body[8:16].view("<u8")[0])
    little = np.dtype(dtype).newbyteorder("<")
    if body.size != _HEADER + n * (4 + little.itemsize):
        raise ValueError(f"{NAME} chunk of {body.size} bytes cannot hold {n} cells")
    gaps = body[_HEADER : _HEADER + 4 * n].view("<u4")
    values = body[_HEADER + 4 * n :].view(little)
    size = int(np.prod(shape))
    if n and _last_index(gaps) >= size:
        raise ValueError(f"{NAME} chunk holds cells beyond its {size} cells")
    return gaps, values


def dense(gaps: np.ndarray, values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The dense chunk of :func:`cells`' cells (checked to lie within ``shape``)."""
    # np.zeros maps untouched pages lazily: only the pages holding cells are written.
    out = np.zeros(int(np.prod(shape)), dtype=values.dtype)
    _scatter(gaps, values, out)
    return out.reshape(shape)


@njit(nogil=True, cache=True)
def _last_index(gaps):
    """The sum of ``gaps``, in 64 bits: the last (largest) index."""
    index = 0
    for k in range(gaps.size):
        index += gaps[k]
    return index


@njit(nogil=True, cache=True)
def _scatter(gaps, values, out):
    index = 0
    for k in range(gaps.size):
        index += gaps[k]
        out[index] = values[k]


@dataclass(frozen=True)
class NonzeroCodec(ArrayBytesCodec):
    """zarr v3 array → bytes codec storing a chunk's non-zero cells (see the module)."""

    is_fixed_size = False

    @classmethod
    def from_dict(cls, data: dict) -> Self:
        parse_named_configuration(data, NAME, require_configuration=False)
        return cls()

    def to_dict(self) -> dict:
        return {"name": NAME}

    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        dtype = chunk_spec.dtype.to_native_dtype()
        dense, _, _ = decode(chunk_bytes.as_numpy_array(), dtype, chunk_spec.shape)
        return chunk_spec.prototype.nd_buffer.from_numpy_array(dense.astype(dtype, copy=False))

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        return self._decode_sync(chunk_bytes, chunk_spec)

    def _encode_sync(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer:
        data = encode(chunk_array.as_numpy_array())
        return chunk_spec.prototype.buffer.from_bytes(data)

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer:
        return self._encode_sync(chunk_array, chunk_spec)

    def compute_encoded_size(self, input_byte_length: int, _chunk_spec: ArraySpec) -> int:
        raise NotImplementedError(f"{NAME} chunks vary in size with their content")
