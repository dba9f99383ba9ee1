"""Packed objects: where a simulation's stored bytes are found once ``compact`` packed them.

``stilt-dask compact`` (:mod:`.compact`) turns the completed simulations of each
block of :data:`~.layout.BLOCK_ROWS` rows into a few objects (``docs/store.md``,
"Packing"):

* a zarr v3 shard per footprint, ``foot/c/<block>/0/0/0``: the block's inner
  chunks, bytes as they were stored unpacked, then an index of ``(offset,
  nbytes)`` little-endian u64 pairs (``2**64 - 1`` twice for an absent chunk),
  then the CRC-32C of that index (the ``sharding_indexed`` codec, index at the end);
* ``particles/block-<block>.parquet`` (and ``error_particles/…``): one row group
  per simulation (copied as stored, see :mod:`.rowgroups`), the footer listing
  each simulation's registry entry and row group; the logs those particle files
  kept go to ``logs/block-<block>.parquet``;
* ``footprints/<name>.empty/block-<block>.json``: the block's empty markers.

**Unpacked wins.** A simulation's unpacked key, when present, is the one read:
runs write only unpacked keys, so a simulation rerun after it was packed
(``skip_existing=False``) is read from its new keys until the next ``compact``
packs them in place of the old. An empty marker goes with its chunk: the packed
marker counts only while the packed chunk is the one read.

This module is the one place that finds packed bytes; :mod:`.completion`,
:mod:`.status`, :mod:`.chunks` and :mod:`.particles` ask it.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from collections import OrderedDict
from typing import Any

import google_crc32c
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import layout, rowgroups
from .paths import Location

#: Bytes of a shard's index: an ``(offset, nbytes)`` u64 pair per row, then its CRC-32C.
INDEX_BYTES = layout.BLOCK_ROWS * 16 + 4
#: An absent inner chunk's offset and size in a shard index.
ABSENT = np.uint64(2**64 - 1)
#: Bytes of a particle block file's end read for its ids (1,024 ids of up to ~60 characters).
TAIL_BYTES = 2**16
#: Shard indexes kept per process (16 kB each).
CACHED_INDEXES = 4096

_SIMULATIONS = b"pystilt_dask:simulations"
_SIM_IDS = b"pystilt_dask:sim_ids"
_LOG_SCHEMA = pa.schema([("sim_id", pa.string()), ("log", pa.large_string())])


# -- shards --------------------------------------------------------------------------------


def encode_shard(chunks: dict[int, bytes]) -> bytes:
    """A shard of the inner chunks ``chunks`` (by row within the block), index at the end."""
    index = np.full((layout.BLOCK_ROWS, 2), ABSENT, dtype="<u8")
    parts, offset = [], 0
    for position in sorted(chunks):
        data = chunks[position]
        index[position] = (offset, len(data))
        parts.append(data)
        offset += len(data)
    body = index.tobytes()
    return b"".join([*parts, body, google_crc32c.value(body).to_bytes(4, "little")])


def parse_index(tail: bytes, key: str) -> np.ndarray:
    """The ``(BLOCK_ROWS, 2)`` index of a shard from its last :data:`INDEX_BYTES` bytes.

    Raises
    ------
    ValueError
        When the index fails its CRC-32C (or the shard is shorter than an index).
    """
    if len(tail) != INDEX_BYTES:
        raise ValueError(f"shard {key} is shorter than its index")
    body = tail[:-4]
    if google_crc32c.value(body) != int.from_bytes(tail[-4:], "little"):
        raise ValueError(f"shard {key}: its index's CRC-32C does not match its bytes")
    return np.frombuffer(body, dtype="<u8").reshape(layout.BLOCK_ROWS, 2)


def decode_shard(data: bytes, key: str) -> dict[int, bytes]:
    """Every inner chunk of a whole shard's bytes, by row within the block.

    Raises
    ------
    ValueError
        When the index fails its CRC-32C or points outside the shard.
    """
    index = parse_index(data[-INDEX_BYTES:], key)
    chunks = {}
    for position in np.flatnonzero(index[:, 0] != ABSENT):
        offset, size = (int(v) for v in index[position])
        if offset + size > len(data) - INDEX_BYTES:
            raise ValueError(f"shard {key}: its index points outside it")
        chunks[int(position)] = data[offset : offset + size]
    return chunks


def intact(data: bytes) -> bool:
    """Whether an inner chunk's last four bytes are the CRC-32C of the rest (format 2)."""
    return len(data) >= 4 and google_crc32c.value(data[:-4]) == int.from_bytes(data[-4:], "little")


class _Indexes:
    """Shard indexes read so far, by shard URL: one range read per shard, not per row.

    A shard is rewritten when ``compact`` merges rows into it, so an index found
    stale (a row it lacks, or bytes that fail their CRC) is read again once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: OrderedDict[str, np.ndarray] = OrderedDict()

    def get(self, location: Location, key: str, fresh: bool = False) -> np.ndarray:
        url = location.url(key)
        if not fresh:
            with self._lock:
                if url in self._held:
                    self._held.move_to_end(url)
                    return self._held[url]
        try:
            index = parse_index(location.read_range(key, -INDEX_BYTES), key)
        except FileNotFoundError:
            self.drop(location, key)
            raise
        with self._lock:
            self._held[url] = index
            while len(self._held) > CACHED_INDEXES:
                self._held.popitem(last=False)
        return index

    def drop(self, location: Location, key: str) -> None:
        with self._lock:
            self._held.pop(location.url(key), None)


_INDEXES = _Indexes()


def _packed_chunk(location: Location, name: str, row: int) -> bytes:
    key = layout.shard_key(name, layout.block_of(row))
    position = row % layout.BLOCK_ROWS
    for fresh in (False, True):
        index = _INDEXES.get(location, key, fresh)
        offset, size = (int(v) for v in index[position])
        if offset == int(ABSENT):
            continue  # perhaps packed since this index was read
        data = location.read_range(key, offset, offset + size)
        if len(data) == size and intact(data):
            return data
        if fresh:
            return data  # damaged: the reader's CRC check names it
    raise FileNotFoundError(f"{key} holds no chunk of row {row}")


def chunk_bytes(location: Location, name: str, row: int) -> bytes:
    """The stored bytes of footprint ``name``'s chunk at ``row``: unpacked, else from its shard.

    Raises
    ------
    FileNotFoundError
        When the chunk was never written.
    ValueError
        When its shard's index fails its CRC-32C (``verify --repair`` removes the shard).
    """
    try:
        return location.read_bytes(layout.chunk_key(name, row))
    except FileNotFoundError:
        pass
    return _packed_chunk(location, name, row)


def shard_positions(location: Location, name: str, block: int) -> np.ndarray:
    """Rows (within the block) whose chunk the block's shard holds; none when it is unreadable."""
    try:
        index = _INDEXES.get(location, layout.shard_key(name, block), fresh=True)
    except (FileNotFoundError, ValueError):
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(index[:, 0] != ABSENT)


def shard_blocks(location: Location, name: str) -> list[int]:
    """Blocks that have a shard of footprint ``name``, from one listing."""
    names = location.list_folders(layout.shard_folder(name))
    return sorted(
        int(n) for n in names if n.isdigit() and location.exists(layout.shard_key(name, int(n)))
    )


# -- particle blocks -----------------------------------------------------------------------


def plain_template(footer: rowgroups.Footer) -> rowgroups.Footer:
    """An empty particle block file of ``footer``'s columns: what a block's footer starts from.

    Its schema is the particle file's without the ``pystilt_dask:*`` metadata
    (a simulation's entry and log are not the block's).

    Raises
    ------
    KeyError, pyarrow.ArrowException
        When ``footer`` carries no Arrow schema.
    """
    serialized = base64.b64decode(footer.key_values()[b"ARROW:schema"])
    schema = pa.ipc.read_schema(pa.py_buffer(serialized))
    plain = {k: v for k, v in (schema.metadata or {}).items() if not k.startswith(b"pystilt")}
    sink = io.BytesIO()
    # The particle files' encodings: their row groups are copied, not re-encoded.
    with pq.ParquetWriter(
        sink,
        schema.with_metadata(plain),
        compression="zstd",
        use_dictionary=["time", "indx"],
        write_page_checksum=True,
    ):
        pass
    return rowgroups.Footer.of(sink.getvalue())


def particle_block(
    template: rowgroups.Footer, held: list[tuple[dict, rowgroups.Group | None]]
) -> list[Any]:
    """A particle block file: each simulation's row group as stored, their entries in the footer.

    The file is returned as its parts (:func:`.rowgroups.join`), to be written
    one after the other.

    ``held`` are ``(entry, group)`` pairs, ``entry`` being the ``pystilt_dask:*``
    metadata of the simulation's particle file without its log, ``group`` its
    row group (``None`` for an empty table); ``template`` is
    :func:`plain_template` of their schema.
    """
    entries, groups = [], []
    for entry, group in held:
        entries.append({**entry, "row_group": len(groups) if group is not None else None})
        if group is not None:
            groups.append(group)
    key_values = {  # the ids last: status reads them from the file's end (block_ids)
        _SIMULATIONS.decode(): json.dumps(entries),
        _SIM_IDS.decode(): "\n".join(e["sim_id"] for e in entries),
    }
    return rowgroups.join(template, groups, key_values)


def footer_entries(footer: rowgroups.Footer) -> dict[str, dict]:
    """The entries a block file's footer lists, by simulation id (:func:`block_entries`)."""
    return {e["sim_id"]: e for e in json.loads(footer.key_values()[_SIMULATIONS])}


def encode_logs(logs: dict[str, str]) -> bytes:
    """A block's logs file: ``sim_id``, ``log``."""
    table = pa.table({"sim_id": list(logs), "log": list(logs.values())}, schema=_LOG_SCHEMA)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", write_page_checksum=True)
    return sink.getvalue()


def block_ids(location: Location, folder: str, block: int) -> list[str]:
    """Ids of the simulations a particle block file lists, found in its footer's bytes.

    The ids are the footer's last key-value entry (:func:`particle_block`): they
    are found in the file's last :data:`TAIL_BYTES` without parsing the footer
    (1.5 MB for 1,024 simulations). A file whose ids are not there (longer ids,
    or written before they came last) is searched through its whole footer.

    Raises
    ------
    FileNotFoundError
        When there is no such file.
    ValueError, OSError
        When its footer holds no ids.
    """
    key = layout.block_key(folder, block)
    tail = location.read_range(key, -TAIL_BYTES)
    ids = rowgroups.trailing_value(tail, _SIM_IDS.decode())
    if ids is None and len(tail) >= 8:
        footer = int.from_bytes(tail[-8:-4], "little") + 8
        if footer > len(tail):
            ids = rowgroups.trailing_value(location.read_range(key, -footer), _SIM_IDS.decode())
    if ids is None:
        raise ValueError(f"{key}: its footer lists no simulations")
    text = ids.decode()
    return text.split("\n") if text else []


def block_entries(parquet: pq.ParquetFile) -> dict[str, dict]:
    """The entries a block file's footer lists, by simulation id."""
    entries = json.loads((parquet.metadata.metadata or {})[_SIMULATIONS])
    return {e["sim_id"]: e for e in entries}


def open_block(location: Location, folder: str, block: int) -> pq.ParquetFile:
    """A particle block file, its pages checked on every read; ``FileNotFoundError`` if absent."""
    key = layout.block_key(folder, block)
    if location.is_local:
        return pq.ParquetFile(location.url(key), page_checksum_verification=True)
    return pq.ParquetFile(
        pa.BufferReader(location.read_buffer(key)), page_checksum_verification=True
    )


def read_packed(
    location: Location, folder: str, sim_id: str, row: int
) -> tuple[pd.DataFrame, dict[str, str]]:
    """A packed simulation's particle table and its entry (the metadata a particle file has).

    Raises
    ------
    FileNotFoundError
        When its block file is absent or does not list it.
    OSError, ValueError, pyarrow.ArrowException
        When the block file is damaged.
    """
    block = layout.block_of(row)
    parquet = open_block(location, folder, block)
    entry = block_entries(parquet).get(sim_id)
    if entry is None:
        raise FileNotFoundError(f"{layout.block_key(folder, block)} does not list {sim_id!r}")
    group = entry.pop("row_group")
    if group is None:
        table = parquet.schema_arrow.empty_table()
    else:
        table = parquet.read_row_group(group)
    return table.to_pandas(), entry


def packed_log(location: Location, sim_id: str, row: int) -> str | None:
    """The log kept for a packed simulation (its particle file's), or ``None``."""
    key = layout.block_key(layout.LOGS, layout.block_of(row))
    try:
        table = pq.read_table(
            pa.BufferReader(location.read_buffer(key)), filters=[("sim_id", "=", sim_id)]
        )
    except FileNotFoundError:
        return None
    logs = table["log"].to_pylist()
    return logs[0] if logs else None


# -- empty markers -------------------------------------------------------------------------


def empty_ids(location: Location, name: str, block: int) -> set[str]:
    """Ids the packed empty markers of ``block`` hold (none when absent or unreadable)."""
    try:
        return set(json.loads(location.read_bytes(layout.empty_block_key(name, block))))
    except (FileNotFoundError, ValueError):
        return set()


# -- one simulation ------------------------------------------------------------------------


def packed_exists(location: Location, key: str, sim_id: str, row: int) -> bool:
    """Whether the packed objects of ``row``'s block hold this simulation's ``key``.

    ``key`` is one of its keys (:mod:`.layout`): particles, transport-error
    particles, a chunk or an empty marker; others are never packed. A packed
    empty marker counts only while the packed chunk is the one read.
    """
    block = layout.block_of(row)
    for folder, of in ((layout.PARTICLES, layout.particles_key),
                       (layout.ERROR_PARTICLES, layout.error_particles_key)):  # fmt: skip
        if key == of(sim_id):
            try:
                return sim_id in block_ids(location, folder, block)
            except FileNotFoundError:
                return False
            except Exception:
                return False  # damaged: verify names it; the simulation is redone
    if key.startswith(f"{layout.FOOTPRINTS}/"):
        name = key[len(layout.FOOTPRINTS) + 1 :].split(".", 1)[0]
        if key == layout.chunk_key(name, row):
            return row % layout.BLOCK_ROWS in shard_positions(location, name, block)
        if key == layout.empty_key(name, sim_id):
            return (
                not location.exists(layout.chunk_key(name, row))
                and packed_exists(location, layout.chunk_key(name, row), sim_id, row)
                and sim_id in empty_ids(location, name, block)
            )
    return False
