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
from numcodecs import Zstd, zstd
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
    """A decoded chunk that also holds its non-zero cells as ``gaps`` and ``values``.

    What :class:`ChunkReader` hands back for chunks stored by
    :class:`~pystilt_dask.store.sparse.NonzeroCodec`: the array is the dense chunk
    (its zero pages never touched until something reads them), and the analysis
    kernels visit only the cells (:func:`~.sparse.cells`: the gaps between their
    flat C-order indices, and their values). Views, copies and results of
    arithmetic are plain arrays without them, so the cells always describe the
    very array they came with; the reader makes a new one on every call and
    nothing writes into it.
    """

    gaps: np.ndarray
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
    gaps : numpy.ndarray
        The gaps between the cells' flat (C-order over the whole chunk) indices,
        ``uint32``, the first being the first index (:func:`~.sparse.cells`).
    values : numpy.ndarray
        Their values.
    """

    __slots__ = ("shape", "gaps", "values")

    def __init__(self, shape: tuple[int, ...], gaps: np.ndarray, values: np.ndarray) -> None:
        self.shape, self.gaps, self.values = shape, gaps, values


class Scratch:
    """Memory that a reader decodes one chunk's cells into after another's.

    Freshly allocated for every chunk, the decoded cells cost a page fault per
    4 kB wherever freed memory goes straight back to the system (dask's worker
    processes set ``MALLOC_TRIM_THRESHOLD_``): that doubled the cost of reading
    a footprint there. :class:`Cells` read into it are valid until its next use.
    """

    def __init__(self) -> None:
        self._buffer = np.empty(0, dtype="u1")

    def take(self, size: int) -> np.ndarray:
        """``size`` bytes of it (grown as needed; the previous contents are given up)."""
        if self._buffer.size < size:
            self._buffer = np.empty(max(size, 2 * self._buffer.size), dtype="u1")
        return self._buffer[:size]


def nonzero_cells(chunk: np.ndarray | Cells) -> tuple[np.ndarray, np.ndarray] | None:
    """``(gaps, values)`` of :class:`Cells` or a :class:`Chunk` as :class:`ChunkReader`
    made it; None for any other array."""
    if type(chunk) is Cells or (type(chunk) is Chunk and "gaps" in chunk.__dict__):
        return chunk.gaps, chunk.values
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
        scratch: Scratch | None = None,
    ) -> np.ndarray | Cells:
        """The chunk of ``row``, shape ``(1, *shape)``; NaN (the fill value) when absent.

        ``sim_id`` is the simulation holding ``row``: a format 1 chunk is checked
        against that simulation's recorded digest only when it is given. With
        ``cells``, a chunk stored as its non-zero cells comes back as
        :class:`Cells` alone (any other as the dense array), decoded into
        ``scratch`` when given.

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
                decoded = _decompress(body, scratch if cells else None)
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
        shape = (1, *self.shape)
        gaps, values = sparse.cells(data, np.dtype("<f4"), shape)
        out = sparse.dense(gaps, values, shape).view(Chunk)
        out.gaps, out.values = gaps, values
        return out


def _decompress(body: np.ndarray, scratch: Scratch | None) -> np.ndarray | bytes:
    """The zstd frame ``body`` decompressed, into ``scratch`` when its size is known."""
    size = _content_size(body) if scratch is not None else None
    if size is None:
        return _ZSTD.decode(body)
    return zstd.decompress(body, scratch.take(size))


def _content_size(frame: np.ndarray) -> int | None:
    """The decompressed size a zstd frame's header declares (RFC 8878, 3.1.1.1); None if not."""
    if frame.size < 6 or bytes(frame[:4]) != b"\x28\xb5\x2f\xfd":
        return None
    descriptor = int(frame[4])
    single_segment = descriptor >> 5 & 1
    size_bytes = (single_segment, 2, 4, 8)[descriptor >> 6]
    start = 5 + (1 - single_segment) + (0, 1, 2, 4)[descriptor & 3]
    if size_bytes == 0 or frame.size < start + size_bytes:
        return None
    size = int.from_bytes(bytes(frame[start : start + size_bytes]), "little")
    return size + 256 if size_bytes == 2 else size


_ZSTD = Zstd()
