"""Particle tables: one zstd Parquet file per simulation, with page checksums.

The table is written exactly as the trajectory step returned it (R-STILT columns:
``time`` in minutes since release, ``indx``, ``long``, ``lati``, ``zagl``,
``foot``, ...), so footprints recomputed from a stored file equal those computed
from the run. The schema metadata records the simulation's registry entry (id,
receptor, row, meteorology name, scene id; not the registration time, so equal
runs write equal bytes) under ``pystilt_dask:*`` keys, which lets ``verify
--repair`` restore a lost registry entry from the particles alone. The HYSPLIT
log of the run is in the file's key-value metadata too (``pystilt_dask:log``),
but not in the Arrow schema pyarrow also stores there, which would hold it a
second time, base64-encoded.

Every page carries its CRC (``write_page_checksum``), and every read here checks
them (``page_checksum_verification``), so a damaged page is an error, never wrong
particles. This module is the package's only reader and writer of particle files.
A simulation whose file ``stilt-dask compact`` packed is read from its block's
file (:mod:`.packing`), with the same checks; its unpacked file, when present, wins.
"""

from __future__ import annotations

import io
import json
import posixpath

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..buffers import arrow_buffer
from ..errors import StoreError
from ..receptors import ColumnReceptor, MultiPointReceptor, PointReceptor, Receptor
from . import layout, packing
from .paths import Location

_PREFIX = "pystilt_dask:"
_DICTIONARY_COLUMNS = ["time", "indx"]
_KINDS = {"point": PointReceptor, "column": ColumnReceptor, "multipoint": MultiPointReceptor}


def to_bytes(
    particles: pd.DataFrame, receptor: Receptor, entry: pd.Series, log: str | None = None
) -> bytes:
    """Serialise a particle table to zstd Parquet with the simulation's registry entry.

    ``log`` (the HYSPLIT log of the run) is stored beside the entry; it must not
    vary between runs that should write equal bytes.
    """
    table = pa.Table.from_pandas(particles, preserve_index=False)
    scene_id = entry["scene_id"]
    extra = {
        f"{_PREFIX}sim_id": receptor.sim_id,
        f"{_PREFIX}receptor": json.dumps(receptor.model_dump(mode="json")),
        f"{_PREFIX}met": str(entry["met"]),
        f"{_PREFIX}row": str(int(entry["row"])),
        f"{_PREFIX}scene_id": "" if scene_id is None or pd.isna(scene_id) else str(scene_id),
    }
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **extra})
    return _encode(table, log)


def one_group(data: bytes) -> bytes:
    """A particle file's bytes rewritten as one row group, its page CRCs checked.

    Files written before :func:`to_bytes` wrote one group (a table over 2²⁰ rows
    was split) are packed so; nothing else in them changes.

    Raises
    ------
    OSError, pyarrow.ArrowException
        When a page fails its CRC, or the bytes are not a Parquet file.
    """
    parquet = pq.ParquetFile(pa.BufferReader(arrow_buffer(data)), page_checksum_verification=True)
    key = f"{_PREFIX}log".encode()
    log = (parquet.metadata.metadata or {}).get(key)
    table = parquet.read()
    kept = {k: v for k, v in (table.schema.metadata or {}).items() if k != key}
    return _encode(table.replace_schema_metadata(kept), None if log is None else log.decode())


def _encode(table: pa.Table, log: str | None) -> bytes:
    """``table`` as a particle file: one row group (``compact`` copies it whole), page CRCs."""
    sink = io.BytesIO()
    # Dictionaries pay off only for the few distinct times and particle numbers;
    # on the float columns they cost a fifth of the write and save nothing.
    with pq.ParquetWriter(
        sink,
        table.schema,
        compression="zstd",
        use_dictionary=_DICTIONARY_COLUMNS,
        write_page_checksum=True,
    ) as writer:
        writer.write_table(table, row_group_size=max(table.num_rows, 1))
        if log is not None:
            writer.add_key_value_metadata({f"{_PREFIX}log": log})
    return sink.getvalue()


def parse(data: bytes) -> tuple[pd.DataFrame, dict[str, str]]:
    """The table and the ``pystilt_dask:*`` metadata (without the prefix) of a file's bytes.

    Raises
    ------
    OSError, pyarrow.ArrowException
        When a page fails its CRC, or the bytes are not a Parquet file.
    """
    parquet = pq.ParquetFile(io.BytesIO(data), page_checksum_verification=True)
    return parquet.read().to_pandas(), _ours(parquet.metadata.metadata)


def read(location: Location, key: str, row: int | None = None) -> pd.DataFrame:
    """Read a particle table, unpacked or packed; raises ``FileNotFoundError`` when it is absent.

    ``row``: the simulation's row, when the caller knows it (else the registry is
    read to find its packed block).

    Raises
    ------
    StoreError
        When the file is damaged (a page fails its CRC, or it does not parse).
    """
    return stored(location, key, row)[0]


def stored(
    location: Location, key: str, row: int | None = None
) -> tuple[pd.DataFrame, dict[str, str]]:
    """A particle table and its ``pystilt_dask:*`` metadata, unpacked or packed (see :func:`read`).

    A packed simulation's metadata is its block footer's entry, without the log.
    """
    try:
        data = location.read_bytes(key)
    except FileNotFoundError:
        return _packed(location, key, row)
    try:
        return parse(data)
    except Exception as exc:
        raise _damaged(key, exc) from None


def _packed(location: Location, key: str, row: int | None) -> tuple[pd.DataFrame, dict[str, str]]:
    """The packed table and entry of the simulation whose unpacked file ``key`` would be."""
    folder, name = posixpath.split(key)
    sim_id = name.removesuffix(layout.PARQUET_SUFFIX)
    if row is None:
        row = packed_row(location, sim_id)
    try:
        return packing.read_packed(location, folder, sim_id, row)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise _damaged(layout.block_key(folder, layout.block_of(row)), exc, sim_id) from None


def packed_row(location: Location, sim_id: str) -> int:
    """The registered row of ``sim_id``; ``FileNotFoundError`` when it is not registered."""
    from .registry import read as read_registry  # the registry module reads particle metadata

    try:
        return read_registry(location).row(sim_id)
    except StoreError:
        raise FileNotFoundError(f"simulation {sim_id!r} is not registered") from None


def metadata(location: Location, key: str, row: int | None = None) -> dict[str, str]:
    """The ``pystilt_dask:*`` metadata of a particle file (its footer only), without the prefix.

    A packed simulation's is its block footer's entry, with the log it kept.

    Raises
    ------
    FileNotFoundError
        When the file is absent.
    StoreError
        When its footer cannot be read.
    """
    try:
        data = location.read_bytes(key)
    except FileNotFoundError:
        _, meta = _packed(location, key, row)
        sim_id, row = meta["sim_id"], int(meta["row"])
        log = packing.packed_log(location, sim_id, row)
        return {**meta, **({"log": log} if log is not None else {})}
    try:
        return _ours(pq.read_metadata(pa.BufferReader(data)).metadata)
    except Exception as exc:
        raise _damaged(key, exc) from None


def receptor(meta: dict[str, str]) -> Receptor:
    """The receptor a particle file's metadata records (under the id it was registered as).

    Raises
    ------
    KeyError, ValueError
        When the metadata holds no receptor, or not a valid one.
    """
    fields = json.loads(meta["receptor"])
    built = _KINDS[fields["kind"]].model_validate(fields)
    sim_id = meta["sim_id"]
    return built if built.sim_id == sim_id else built.registered_as(sim_id)


def _ours(metadata: dict[bytes, bytes] | None) -> dict[str, str]:
    """The ``pystilt_dask:*`` entries of a file's key-value metadata, without the prefix."""
    return {
        k.decode().removeprefix(_PREFIX): v.decode()
        for k, v in (metadata or {}).items()
        if k.decode().startswith(_PREFIX)
    }


def _damaged(key: str, exc: BaseException, sim_id: str | None = None) -> StoreError:
    sim_id = sim_id or posixpath.basename(key).removesuffix(layout.PARQUET_SUFFIX)
    return StoreError(
        f"the particle file of simulation {sim_id!r} ({key}) is damaged "
        f"({type(exc).__name__}: {exc}); run `stilt-dask verify --repair`"
    )
