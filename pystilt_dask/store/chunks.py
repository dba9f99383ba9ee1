"""Reading one simulation's footprint chunk: checked, then decoded.

A footprint chunk is encoded as :mod:`.footprints` declares: its non-zero cells
(:mod:`.sparse`) or, in arrays made before, every value; zstd; and (format 2)
the CRC-32C of the compressed bytes. :class:`ChunkReader` checks and decodes it
straight from the stored bytes (:func:`.packing.chunk_bytes`), without zarr.
"""

from __future__ import annotations

import google_crc32c
import numpy as np
import zarr
from numcodecs import Zstd
from zarr.codecs import BytesCodec, Crc32cCodec, ZstdCodec

from ..errors import StoreError
from . import digests, layout, packing, sparse
from .completion import footprint_component
from .paths import Location
from .sparse import NonzeroCodec


def checked(array: zarr.Array) -> bool:
    """Whether ``array``'s chunks carry their own CRC-32C (format 2) rather than a digest object."""
    return isinstance(array.metadata.codecs[-1], Crc32cCodec)


def chunk_reader(array: zarr.Array) -> ChunkReader:
    """A reader of ``array``'s chunks, one simulation at a time.

    Raises
    ------
    StoreError
        When the array is not encoded as :func:`ensure_group` writes it (now, or
        in an earlier format).
    """
    codecs = list(array.metadata.codecs)
    has_crc = checked(array)
    if has_crc:
        codecs.pop()
    dense = (
        isinstance(codecs[0], BytesCodec)
        and codecs[0].endian is not None
        and codecs[0].endian.value == "little"
    )
    nonzero = has_crc and isinstance(codecs[0], NonzeroCodec)
    if not (
        len(codecs) == 2
        and (dense or nonzero)
        and isinstance(codecs[1], ZstdCodec)
        and array.dtype == np.dtype("float32")
    ):
        raise StoreError(
            f"footprint array {array.store_path} is encoded as {array.metadata.codecs}, not "
            f"as pystilt_dask writes it (float32, {sparse.NAME} or little-endian bytes, "
            "zstd, crc32c)"
        )
    return ChunkReader(array.shape[1:], has_crc, nonzero)


class Chunk(np.ndarray):
    """A decoded chunk that also holds its non-zero cells as ``indices`` and ``values``.

    What :class:`ChunkReader` hands back for chunks stored by
    :class:`~pystilt_dask.store.sparse.NonzeroCodec`: the array is the dense chunk
    (its zero pages never touched until something reads them), and the analysis
    kernels visit only ``indices`` (flat, C-order over the whole chunk, increasing)
    and ``values``. Views, copies and results of arithmetic are plain arrays
    without them, so the cells always describe the very array they came with;
    the reader makes a new one on every call and nothing writes into it.
    """

    indices: np.ndarray
    values: np.ndarray


class Cells:
    """A chunk as its non-zero cells alone, without the dense array.

    What :class:`ChunkReader` hands back, when asked for cells, for chunks stored
    by :class:`~pystilt_dask.store.sparse.NonzeroCodec`: readers that visit only
    the non-zero cells (the analysis kernels) skip zero-filling a dense chunk,
    which cost more than decompressing the cells.

    Attributes
    ----------
    shape : tuple of int
        The chunk's shape, ``(1, *shape)`` as the dense chunk's.
    indices : numpy.ndarray
        The cells' flat (C-order over the whole chunk) indices, increasing, int64.
    values : numpy.ndarray
        Their values.
    """

    __slots__ = ("shape", "indices", "values")

    def __init__(self, shape: tuple[int, ...], indices: np.ndarray, values: np.ndarray) -> None:
        self.shape, self.indices, self.values = shape, indices, values


def nonzero_cells(chunk: np.ndarray | Cells) -> tuple[np.ndarray, np.ndarray] | None:
    """``(indices, values)`` of :class:`Cells` or a :class:`Chunk` as :class:`ChunkReader`
    made it; None for any other array."""
    if type(chunk) is Cells or (type(chunk) is Chunk and "indices" in chunk.__dict__):
        return chunk.indices, chunk.values
    return None


class ChunkReader:
    """Check and decode one simulation's chunk straight from its key.

    The chunk is what :func:`ensure_group` declares (checked by
    :func:`chunk_reader`): the non-zero cells (:mod:`.sparse`) or, in stores made
    before, dense little-endian float32; zstd-compressed; followed by the CRC-32C
    of those bytes, checked before anything is decoded (format 1 chunks have no
    CRC). Going through zarr instead cost about 3 ms a call, three quarters of
    reading a dense 24 × 300 × 300 chunk, and serialised the threads reading in
    parallel.

    Parameters
    ----------
    shape : tuple of int
        The shape of one chunk without its ``simulation`` axis.
    crc : bool
        Whether chunks end in their CRC-32C (format 2); otherwise (format 1) their
        decoded values are compared with the digest recorded at publication.
    nonzero : bool
        Whether chunks hold their non-zero cells (:mod:`.sparse`) rather than
        every value; such chunks come back as a :class:`Chunk`.
    """

    def __init__(self, shape: tuple[int, ...], crc: bool, nonzero: bool = False) -> None:
        self.shape = tuple(shape)
        self.crc = crc
        self.nonzero = nonzero

    def __call__(
        self,
        location: Location,
        name: str,
        row: int,
        sim_id: str | None = None,
        cells: bool = False,
    ) -> np.ndarray | Cells:
        """The chunk of ``row``, shape ``(1, *shape)``; NaN (the fill value) when absent.

        ``sim_id`` is the simulation holding ``row``: a format 1 chunk is checked
        against that simulation's recorded digest only when it is given. With
        ``cells``, a chunk stored as its non-zero cells comes back as
        :class:`Cells` alone (any other as the dense array).

        Raises
        ------
        ValueError, RuntimeError
            When the stored bytes fail their CRC-32C or digest, or do not decode
            to a chunk; the message names the footprint and the key.
        """
        key = layout.chunk_key(name, row)
        try:
            data = packing.chunk_bytes(location, name, row)
        except FileNotFoundError:
            return np.full((1, *self.shape), np.nan, dtype="<f4")
        where = f"footprint {name!r} chunk {key}"
        body = np.frombuffer(data, dtype="u1")
        if self.crc:
            body = body[:-4]  # a view: checked and decoded without a copy
            if len(data) < 4 or google_crc32c.value(body) != int.from_bytes(data[-4:], "little"):
                raise ValueError(f"{where}: its CRC-32C does not match its bytes")
        try:
            if self.nonzero:
                decoded = _ZSTD.decode(body)
                if cells:
                    shape = (1, *self.shape)
                    return Cells(shape, *sparse.cells(decoded, np.dtype("<f4"), shape))
                return self._cells(decoded)
            out = np.empty((1, *self.shape), dtype="<f4")
            _ZSTD.decode(body, out=out)
        except (ValueError, RuntimeError) as exc:
            raise type(exc)(f"{where} does not decode: {exc}") from None
        if not self.crc and sim_id is not None:
            recorded = digests.read(location, sim_id).get(footprint_component(name))
            if recorded is None:
                raise ValueError(f"{where}: no digest was recorded for simulation {sim_id!r}")
            if digests.digest(out) != recorded:
                raise ValueError(f"{where}: its values do not match the digest recorded for it")
        return out

    def _cells(self, data: bytes) -> Chunk:
        dense, indices, values = sparse.decode(data, np.dtype("<f4"), (1, *self.shape))
        out = dense.view(Chunk)
        out.indices, out.values = indices, values
        return out


_ZSTD = Zstd()
