"""Footprint arrays: one zarr v3 group per named footprint, one chunk per simulation.

Each group ``footprints/<name>.zarr`` holds ``foot(simulation, lag, lat, lon)``
(``y, x`` on projected grids), float32, chunked ``(1, n_lag, ny, nx)`` with the
``.`` chunk-key separator, so a simulation's chunk ``foot/c.<row>.0.0.0`` is its
completion key. The fill value is NaN: a simulation never computed reads back as
NaN, never as zeros, and an all-zero footprint always differs from the fill value,
so its chunk is written. Writers also set ``write_empty_chunks`` (runtime config,
not stored) to be safe. Writers never write shards: a shard is one object, and
writers of different simulations would race on it. ``stilt-dask compact`` packs
completed chunks into shards of :data:`~.layout.BLOCK_ROWS` rows and rewrites
the array's metadata to say so (:func:`pack_metadata`), so plain readers read
packed rows; :func:`foot_array` views such an array through its inner chunks,
``c.<row>.0.0.0``, which is where writers keep writing and what
:mod:`.chunks` decodes (finding packed bytes through :mod:`.packing`).

A chunk is encoded as its non-zero cells (:mod:`.sparse`, the
``pystilt_dask.nonzero`` codec) → ``zstd`` (level 3) → ``crc32c``: the last four
bytes are the CRC-32C of the compressed bytes, checked before anything is
decoded, by :class:`~.chunks.ChunkReader` and by zarr itself. Arrays made before the
codec store every value (``bytes``, little-endian) and are read as they are;
arrays made before format 2 also have no ``crc32c`` codec (format 1), and their
chunks are checked against the digests of :mod:`~pystilt_dask.store.digests`
instead. A store's format is read from each array's codecs, never from a flag.

``lag`` is the start of each hourly layer in hours relative to the receptor time
(``-n .. -1`` for backward runs, ``0 .. n`` forward, whose last output minute
starts layer ``n``; ``0`` alone when time-integrated). ``time(simulation, lag)``
is the absolute start of each layer. Layers a footprint does not reach
(particles left the grid) are zero.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import numcodecs
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import xarray as xr
import zarr
import zarr.storage
from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec, VLenUTF8Codec, ZstdCodec
from zarr.codecs.bytes import Endian
from zarr.core.array import AsyncArray
from zarr.core.buffer import default_buffer_prototype
from zarr.core.chunk_grids import RegularChunkGrid
from zarr.core.chunk_key_encodings import DefaultChunkKeyEncoding
from zarr.core.sync import sync as _sync

from ..config import FootprintConfig, HysplitConfig, ModelConfig
from ..errors import ConfigError, StoreError
from ..fingerprint import footprint_settings
from ..footprint import UNITS, Grid
from . import layout
from .paths import Location, refused_writes
from .registry import Registry
from .sparse import NonzeroCodec

#: Rows per chunk of the per-simulation coordinate arrays.
COORD_CHUNK = 65536
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_SEPARATOR = {"name": "default", "configuration": {"separator": "."}}
_CONFIG_ATTR = "pystilt_dask:footprint"
_SIMULATION_ATTR = "pystilt_dask:simulation"
_LAG_ATTRS = {
    "long_name": "start of the hourly layer relative to the receptor time",
    "units": "hours",
}
_TIME_ATTRS = {
    "standard_name": "time",
    "long_name": "start of the footprint layer (UTC)",
    "units": "minutes since 1970-01-01 00:00:00",
    "calendar": "proleptic_gregorian",
}


def check_name(name: str) -> str:
    """Return ``name`` if it is usable as a footprint name (letters, digits, ``_``, ``-``)."""
    if not _NAME_RE.match(name):
        raise ConfigError(f"footprint name {name!r} must be letters, digits, '_' or '-'")
    return name


def lags(config: FootprintConfig, hysplit: HysplitConfig) -> np.ndarray:
    """Hourly layer offsets (hours from the receptor time) of a footprint's ``lag`` axis."""
    if config.time_integrate:
        return np.zeros(1, dtype="int32")
    n = abs(hysplit.n_hours)
    if hysplit.n_hours < 0:
        return np.arange(-n, 0, dtype="int32")
    # Forward output at exactly n hours falls in layer floor(60 n / 60) = n.
    return np.arange(n + 1, dtype="int32")


def _settings(config: FootprintConfig, hysplit: HysplitConfig) -> str:
    return json.dumps(footprint_settings(config, hysplit))


def ensure_group(
    location: Location, name: str, config: FootprintConfig, hysplit: HysplitConfig
) -> None:
    """Create the group of footprint ``name`` unless it exists; check its settings.

    The group is built in memory and each of its keys is created with
    create-if-absent, so concurrent registrants never remove what another wrote
    (a zarr ``mode="w"`` would) and all end with the same group.

    Raises
    ------
    ConfigError
        When the group was made with a different grid or run length.
    """
    group_key = layout.footprint_group(check_name(name))
    settings = _settings(config, hysplit)
    try:
        stored = json.loads(location.read_bytes(f"{group_key}/zarr.json"))
    except FileNotFoundError:
        stored = None
    if stored is None:
        template: dict = {}
        _create(zarr.storage.MemoryStore(template), name, config, hysplit)
        for key in sorted(template, key=lambda k: k == "zarr.json"):
            # The group's own zarr.json last: it is what says the group exists.
            location.create(f"{group_key}/{key}", template[key].to_bytes())
        stored = json.loads(location.read_bytes(f"{group_key}/zarr.json"))
    if stored.get("attributes", {}).get(_CONFIG_ATTR) != settings:
        raise ConfigError(
            f"footprint {name!r} in {location.root} was made with other settings "
            f"({stored.get('attributes', {}).get(_CONFIG_ATTR)}); choose a new footprint name"
        )


def sync(targets: Iterable[tuple[Location, ModelConfig]], registry: Registry) -> None:
    """Make the footprint groups of each ``(location, config)`` describe ``registry``.

    That is, their extents and coordinates. Only plain readers
    (``xarray.open_zarr``) look at these; writers and :func:`open_foot` take rows
    from the registry. Every value written is derived from ``registry``, so a
    writer holding an older registry is corrected by calling this again with the
    newer one (see :meth:`pystilt_dask.Model.sync`).

    The group attribute ``pystilt_dask:simulation`` describes what the
    ``simulation`` array holds (its extent and a digest of the ids of each block
    of :data:`COORD_CHUNK` rows): blocks whose digest matches are not written
    again, and nothing stored is read back to compare. The blocks and their
    digests are the same for every target (every realization and variant has
    the registry's rows), so they are computed once.
    """
    n = registry.next_row
    starts = range(0, n, COORD_CHUNK)
    with ThreadPoolExecutor(2) as pool:  # Arrow's casts and blake2b release the GIL
        ids = pool.map(
            lambda start: _block_ids(registry, start, min(start + COORD_CHUNK, n)), starts
        )
        blocks = dict(zip(starts, ids, strict=True))
        digests = list(pool.map(_digest, blocks.values()))
    for location, config in targets:
        for name, fp in config.footprints.items():
            ensure_group(location, name, fp, config.hysplit)
            group = zarr.open_group(location.zarr_store(layout.footprint_group(name)), mode="r+")
            described = _described(group, n)
            if described == digests:
                continue  # written for these rows already (a read-only store stays usable)
            with refused_writes(location.root):
                _describe_rows(group, registry, blocks, digests, described)


def _block(registry: Registry, name: str, start: int, stop: int) -> pa.Array:
    """Column ``name`` of the entries in rows ``start`` to ``stop`` (exclusive); null where no row.

    Rows are ascending, so a block without gaps is a slice (no copy of the column).
    """
    positions = registry.positions(np.arange(start, stop))
    column = registry.entries[name]
    if positions[0] >= 0 and positions[-1] - positions[0] == stop - start - 1:
        return column.slice(int(positions[0]), stop - start).combine_chunks()
    return column.take(pa.array(positions, mask=positions < 0)).combine_chunks()


def _block_ids(registry: Registry, start: int, stop: int) -> pa.Array:
    """The ids of rows ``start`` to ``stop`` (exclusive); ``""`` for rows nobody holds."""
    ids = pc.fill_null(_block(registry, "sim_id", start, stop), "")
    return ids.cast(pa.large_string())


def _digest(ids: pa.Array) -> str:
    """A digest of a block of ids (a ``large_string`` array without nulls): lengths, then bytes."""
    offsets = np.frombuffer(ids.buffers()[1], dtype=np.int64)
    offsets = offsets[ids.offset : ids.offset + len(ids) + 1]
    digest = hashlib.blake2b(np.diff(offsets).tobytes(), digest_size=16)
    data = ids.buffers()[2]
    if data is not None:
        digest.update(memoryview(data)[offsets[0] : offsets[-1]])
    return digest.hexdigest()


def _described(group: zarr.Group, n: int) -> list[str | None]:
    """The digests of ``group``'s first ``ceil(n / COORD_CHUNK)`` blocks as recorded (or ``None``).

    The attribute is written after coordinates and extents, so it holds while the
    extents are the rows it records. A block's digest covers its rows up to that
    extent, so a block cut at another extent never matches; its times follow
    from its ids, which never change.
    """
    blocks = -(-n // COORD_CHUNK)
    recorded = group.attrs.get(_SIMULATION_ATTR, {})
    arrays = (group["simulation"], group["time"], group[layout.FOOT])
    if any(array.shape[0] != recorded.get("rows") for array in arrays):
        return [None] * blocks
    held = list(recorded.get("blocks", []))[:blocks]
    return held + [None] * (blocks - len(held))


def _describe_rows(
    group: zarr.Group,
    registry: Registry,
    blocks: dict[int, pa.Array],
    digests: list[str],
    described: list[str | None],
) -> None:
    """Write ``group``'s coordinates for the blocks not described yet, then extents and digests.

    One block of :data:`COORD_CHUNK` rows at a time: the ``time`` coordinate of a
    million simulations at once was 400 MB.
    """
    n = registry.next_row
    lag = group["lag"][:].astype("int64")
    simulation, time = _extended(group["simulation"], n), _extended(group["time"], n)
    changed = [
        (start, ids)
        for (start, ids), digest, had in zip(blocks.items(), digests, described, strict=True)
        if digest != had
    ]

    def block_times(start: int, stop: int) -> np.ndarray:
        times = _block(registry, "time", start, stop).cast(pa.timestamp("us")).cast(pa.int64())
        minutes = pc.fill_null(times, 0).to_numpy() // 60_000_000  # µs, floored as numpy does
        return minutes[:, None] + 60 * lag[None, :]

    # Coordinates first, extents last: a reader never sees a row without its id.
    if _encodable(simulation, time):
        # zarr makes a numpy string array of the ids and encodes it item by item
        # (36 ms a block); Arrow's buffers give the same bytes in a few ms, and
        # two blocks are encoded at once (Arrow and zstd release the GIL).
        def encoded(block: tuple[int, pa.Array]) -> list[tuple[zarr.Array, tuple, bytes]]:
            start, ids = block
            k = start // COORD_CHUNK
            return [
                (simulation, (k,), _zstd(simulation, _vlen_utf8(ids, COORD_CHUNK))),
                (time, (k, 0), _zstd(time, _padded(block_times(start, start + len(ids)), time))),
            ]

        with ThreadPoolExecutor(2) as pool:
            for chunks in pool.map(encoded, changed):
                for array, coords, data in chunks:
                    _put_chunk(array, coords, data)
    else:  # coordinates laid out otherwise (another zarr's defaults): written through zarr
        for start, ids in changed:
            stop = start + len(ids)
            simulation[start:stop] = ids.to_numpy(zero_copy_only=False)
            time[start:stop] = block_times(start, stop)
    for array in (group["simulation"], group["time"], group[layout.FOOT]):
        if array.shape[0] != n:
            # Never delete chunks: a smaller extent here comes from an older registry.
            new_shape = (n, *array.shape[1:])
            _sync(array._async_array.resize(new_shape, delete_outside_chunks=False))
    group.attrs[_SIMULATION_ATTR] = {"rows": n, "blocks": digests}


def _encodable(simulation: zarr.Array, time: zarr.Array) -> bool:
    """Whether the coordinates are chunked by :data:`COORD_CHUNK` rows, as ``_create`` makes them.

    That is: ``vlen-utf8`` then ``zstd`` for the ids, little-endian ``bytes`` then
    ``zstd`` for the times, whose bytes :func:`_vlen_utf8` and :func:`_zstd` give.
    """
    ids, times = simulation.metadata.codecs, time.metadata.codecs
    return (
        simulation.chunks == (COORD_CHUNK,)
        and time.chunks == (COORD_CHUNK, time.shape[1])
        and len(ids) == 2
        and isinstance(ids[0], VLenUTF8Codec)
        and isinstance(ids[1], ZstdCodec)
        and len(times) == 2
        and isinstance(times[0], BytesCodec)
        and times[0].endian in (None, Endian.little)
        and isinstance(times[1], ZstdCodec)
    )


def _vlen_utf8(ids: pa.Array, size: int) -> bytes:
    """The ``vlen-utf8`` encoding of ``ids`` (strings without nulls) padded with ``""`` to ``size``.

    Its layout is the count, then each item's length and bytes (lengths as
    little-endian uint32): the data of each id joined to its 4-byte length.
    """
    ids = ids.cast(pa.large_binary())
    if len(ids) < size:
        padding = pa.array([b""], pa.large_binary()).take(pa.array(np.zeros(size - len(ids), int)))
        ids = pa.concat_arrays([ids, padding])
    lengths = pc.binary_length(ids).to_numpy().astype("<u4")
    prefixes = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(4), size, [None, pa.py_buffer(lengths)]
    ).cast(pa.large_binary())
    joined = pc.binary_join_element_wise(prefixes, ids, pa.scalar(b"", pa.large_binary()))
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int64)
    offsets = offsets[joined.offset : joined.offset + size + 1]
    body = memoryview(joined.buffers()[2])[offsets[0] : offsets[-1]]
    return np.array([size], dtype="<u4").tobytes() + bytes(body)


def _padded(values: np.ndarray, array: zarr.Array) -> np.ndarray:
    """A whole chunk of ``array`` holding ``values`` first, then fill, in little-endian order."""
    if len(values) < COORD_CHUNK:
        chunk = np.full((COORD_CHUNK, *values.shape[1:]), array.fill_value, dtype=values.dtype)
        chunk[: len(values)] = values
        values = chunk
    return np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))


def _zstd(array: zarr.Array, data: bytes | np.ndarray) -> bytes:
    """``data`` (its bytes) compressed as ``array``'s ``zstd`` codec compresses a chunk."""
    codec = array.metadata.codecs[-1]
    return bytes(numcodecs.Zstd(level=codec.level, checksum=codec.checksum).encode(data))


def _put_chunk(array: zarr.Array, coords: tuple[int, ...], data: bytes) -> None:
    """Store the encoded chunk ``data`` of ``array`` at chunk ``coords``."""
    key = array.store_path / array.metadata.encode_chunk_key(coords)
    _sync(key.set(default_buffer_prototype().buffer.from_bytes(data)))


def _extended(array: zarr.Array, n: int) -> zarr.Array:
    """``array`` viewed with at least ``n`` rows, whatever extent its metadata stores.

    Writing through the view changes only the chunks written: the stored extent
    is for plain readers, and chunk keys depend only on the row.
    """
    if array.shape[0] >= n:
        return array
    inner = array._async_array
    metadata = inner.metadata.update_shape((n, *array.shape[1:]))
    return zarr.Array(
        AsyncArray(metadata=metadata, store_path=inner.store_path, config=inner.config)
    )


def _create(store, name: str, config: FootprintConfig, hysplit: HysplitConfig) -> zarr.Group:
    grid = Grid.from_config(config)
    lag = lags(config, hysplit)
    group = zarr.open_group(store, mode="w", zarr_format=3)
    group.attrs.update(
        {
            "Conventions": "CF-1.8",
            "title": f"STILT footprint {name!r}",
            "source": "pystilt_dask",
            _CONFIG_ATTR: _settings(config, hysplit),
        }
    )
    foot_attrs = {
        "long_name": "STILT surface influence footprint",
        "units": UNITS,
        "coordinates": "time",
    }
    if not grid.is_longlat:
        crs = group.create_array("crs", shape=(), dtype="int32", fill_value=0)
        crs.attrs.update(grid.grid_mapping_attrs())
        foot_attrs["grid_mapping"] = "crs"
    for dim, values in zip(grid.dims, (grid.y_centres, grid.x_centres), strict=True):
        arr = group.create_array(
            dim,
            shape=values.shape,
            dtype="float64",
            dimension_names=(dim,),
            fill_value=np.nan,
            attributes=grid.coordinate_attrs[dim],
        )
        arr[:] = values
    lag_arr = group.create_array(
        "lag", shape=lag.shape, dtype="int32", dimension_names=("lag",), attributes=_LAG_ATTRS
    )
    lag_arr[:] = lag
    group.create_array(
        "simulation",
        shape=(0,),
        chunks=(COORD_CHUNK,),
        dtype=str,
        dimension_names=("simulation",),
        attributes={"long_name": "simulation id"},
    )
    group.create_array(
        "time",
        shape=(0, len(lag)),
        chunks=(COORD_CHUNK, len(lag)),
        dtype="int64",
        dimension_names=("simulation", "lag"),
        attributes=_TIME_ATTRS,
    )
    shape = (len(lag), grid.ny, grid.nx)
    group.create_array(
        layout.FOOT,
        shape=(0, *shape),
        chunks=(1, *shape),
        dtype="float32",
        fill_value=np.nan,
        serializer=NonzeroCodec(),
        compressors=(ZstdCodec(level=3), Crc32cCodec()),
        chunk_key_encoding=_SEPARATOR,
        dimension_names=("simulation", "lag", *grid.dims),
        attributes=foot_attrs,
    )
    return group


def place_layers(
    layers: np.ndarray, values: np.ndarray, config: FootprintConfig, hysplit: HysplitConfig
) -> np.ndarray:
    """Place :func:`~pystilt_dask.footprint.calc.footprint_layers` on the store's chunk.

    Layer ``k`` goes to lag ``k``; lags no layer reaches are zero, and an empty
    footprint (no layers) is all zeros.

    Raises
    ------
    StoreError
        When a layer lies outside the footprint's lags.
    """
    lag = lags(config, hysplit)
    index = np.asarray(layers, dtype=np.int64) - int(lag[0])
    if index.size and (index.min() < 0 or index.max() >= len(lag)):
        raise StoreError(f"footprint layers at {list(layers)} h are outside lags {list(lag)}")
    if np.array_equal(index, np.arange(len(lag))):
        return values  # every layer present, in order: no copy of a grid-sized array
    chunk = np.zeros((len(lag), *values.shape[1:]), dtype="float32")
    chunk[index] = values
    return chunk


def to_chunk(
    foot: xr.DataArray, config: FootprintConfig, hysplit: HysplitConfig, receptor_time
) -> np.ndarray:
    """Place a ``calc_footprint`` result (or any footprint DataArray) on the store's chunk.

    The store's own writers use :func:`place_layers`; this checks a DataArray made
    elsewhere against the configured grid first. An empty footprint (no ``time``
    layers) becomes all zeros.

    Raises
    ------
    StoreError
        When the footprint's grid or layer times do not fit the configured grid.
    """
    grid = Grid.from_config(config)
    if foot.sizes.get("time", 0) == 0:
        empty = np.zeros((0, grid.ny, grid.nx), dtype="float32")
        return place_layers(np.zeros(0, dtype=np.int64), empty, config, hysplit)
    if set(foot.dims) != {"time", *grid.dims}:
        raise StoreError(f"footprint dims {foot.dims} do not match the grid dims {grid.dims}")
    foot = foot.transpose("time", *grid.dims)
    for dim, values, res in zip(
        grid.dims, (grid.y_centres, grid.x_centres), (grid.yres, grid.xres), strict=True
    ):
        got = foot[dim].values
        if got.shape != values.shape or not np.allclose(got, values, rtol=0, atol=1e-6 * res):
            raise StoreError(f"footprint {dim} coordinates do not match the configured grid")
    offsets = (pd.DatetimeIndex(foot["time"].values) - pd.Timestamp(receptor_time)) / pd.Timedelta(
        "1h"
    )
    hours = np.asarray(offsets, dtype="float64")
    if not np.array_equal(hours, np.round(hours)):
        lag = lags(config, hysplit)
        raise StoreError(f"footprint layers at {list(offsets)} h are outside lags {list(lag)}")
    return place_layers(
        hours.astype(np.int64), np.asarray(foot.values, dtype="float32"), config, hysplit
    )


def foot_array(
    location: Location, name: str, n_rows: int = 0, read_only: bool = False
) -> zarr.Array:
    """The ``foot`` array of footprint ``name``, viewed with at least ``n_rows`` rows.

    A packed (sharded) array is viewed through its inner chunks, one per row with
    keys ``c.<row>.0.0.0``: writes through it are unpacked chunks, and its codecs
    are those of every chunk, packed or not. Reading packed rows through the view
    finds nothing (zarr looks for the unpacked key): read them with
    :mod:`.chunks`.

    Raises
    ------
    StoreError
        When the footprint has no group in the store yet.
    """
    try:
        store = location.zarr_store(layout.foot_array(name), read_only=read_only)
        array = zarr.open_array(store, mode="r" if read_only else "r+")
    except (FileNotFoundError, zarr.errors.ArrayNotFoundError, zarr.errors.NodeTypeValidationError):
        raise StoreError(f"footprint {name!r} has no store in {location.root}") from None
    return _extended(_unpacked(array), n_rows)


def _unpacked(array: zarr.Array) -> zarr.Array:
    """A sharded ``array`` viewed as its inner chunks with their own keys; others as they are."""
    metadata = array.metadata
    sharding = metadata.codecs[0]
    if not isinstance(sharding, ShardingCodec):
        return array
    inner = dataclasses.replace(
        metadata,
        chunk_grid=RegularChunkGrid(chunk_shape=sharding.chunk_shape),
        codecs=sharding.codecs,
        chunk_key_encoding=DefaultChunkKeyEncoding(separator="."),
    )
    async_array = array._async_array
    return zarr.Array(
        AsyncArray(metadata=inner, store_path=async_array.store_path, config=async_array.config)
    )


def check_packable(location: Location, name: str) -> None:
    """Refuse to pack footprint ``name`` when it is format 1 (see :func:`pack_metadata`).

    Raises
    ------
    StoreError
        When the array's chunks carry no CRC-32C, or it has no store.
    """
    codecs = foot_array(location, name, read_only=True).metadata.codecs
    if not isinstance(codecs[-1], Crc32cCodec):
        raise StoreError(
            f"footprint {name!r} in {location.root} is format 1 (its chunks carry no CRC-32C, "
            "their digests are per simulation) and cannot be packed"
        )


def pack_metadata(location: Location, name: str) -> None:
    """Declare footprint ``name``'s array sharded by blocks of :data:`~.layout.BLOCK_ROWS` rows.

    Its inner chunks keep their codecs; the shard index is ``bytes`` → ``crc32c``
    and shard keys are ``c/<block>/0/0/0``, beside the unpacked ``c.<row>.0.0.0``.
    Nothing else in the metadata changes (a registrant may be growing the extent).

    Raises
    ------
    StoreError
        When the array is format 1 (its chunks carry no CRC-32C): such arrays are not packed.
    """
    check_packable(location, name)
    key = f"{layout.foot_array(name)}/zarr.json"
    meta = json.loads(location.read_bytes(key))
    if meta["codecs"][0]["name"] == "sharding_indexed":
        return
    inner = meta["chunk_grid"]["configuration"]["chunk_shape"]
    meta["chunk_grid"]["configuration"]["chunk_shape"] = [layout.BLOCK_ROWS, *inner[1:]]
    meta["codecs"] = [
        {
            "name": "sharding_indexed",
            "configuration": {
                "chunk_shape": inner,
                "codecs": meta["codecs"],
                "index_codecs": [
                    {"name": "bytes", "configuration": {"endian": "little"}},
                    {"name": "crc32c"},
                ],
                "index_location": "end",
            },
        }
    ]
    meta["chunk_key_encoding"] = {"name": "default", "configuration": {"separator": "/"}}
    location.write_bytes(key, json.dumps(meta, indent=2).encode())


def write_chunk(location: Location, array: zarr.Array, row: int, chunk: np.ndarray) -> None:
    """Write one simulation's chunk; this publishes the footprint's completion key.

    ``array`` is the footprint's, from :func:`foot_array` with ``row + 1`` rows or more.
    """
    array = array.with_config({"write_empty_chunks": True})
    # A selection with the chunk's own shape is a whole-chunk write: zarr then
    # encodes `chunk` as is, instead of first filling a chunk-sized buffer.
    with refused_writes(location.root):
        array[row : row + 1] = chunk[np.newaxis]


def delete_chunk(location: Location, name: str, row: int) -> None:
    """Delete one simulation's chunk (its footprint is then pending again)."""
    location.delete(layout.chunk_key(name, row))


def read_group(location: Location, name: str) -> xr.Dataset:
    """The small coordinate arrays of footprint ``name`` (grid, ``lag``, ``crs``), eagerly.

    ``simulation``-long arrays are left out: :func:`open_foot` takes them from the
    registry.
    """
    try:
        store = location.zarr_store(layout.footprint_group(name), read_only=True)
        # Not even opened: an index of a million simulation ids took a second to build.
        ds = xr.open_zarr(
            store,
            consolidated=False,
            chunks=None,
            decode_times=False,
            drop_variables=["simulation", "time", layout.FOOT],
        )
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        raise StoreError(f"footprint {name!r} has no store in {location.root}") from None
    keep = [v for v in ds.variables if "simulation" not in ds[v].dims]
    return ds[keep].load()
