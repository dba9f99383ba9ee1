"""Parquet row groups moved between files as bytes, without decoding them.

A Parquet file is ``PAR1``, the column chunks of its row groups, its footer (a
Thrift compact-protocol ``FileMetaData``), the footer's length and ``PAR1``. A row
group's column chunks are one contiguous byte range, and its footer entry holds
their absolute offsets; so a row group moves to another file as that range plus
its entry with the offsets shifted. Packing particle files this way costs a read
and a copy per simulation instead of a decode and an encode (``compact``'s cost).

The Thrift codec is generic (field ids and types, as the compact protocol
describes itself); only the offsets a row group carries are interpreted. Each
page keeps the CRC-32 of its bytes (``write_page_checksum``), which
:func:`check_pages` verifies without decompressing anything.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

MAGIC = b"PAR1"

# Thrift compact-protocol types.
_STOP, _TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(
    13
)
_INTS = (_I16, _I32, _I64)

#: A decoded Thrift struct: field id -> (type, value).
Struct = dict[int, tuple[int, Any]]

# Field ids of parquet.thrift used here.
_META_NUM_ROWS, _META_ROW_GROUPS, _META_KEY_VALUES = 3, 4, 5
_GROUP_COLUMNS, _GROUP_NUM_ROWS, _GROUP_FILE_OFFSET, _GROUP_ORDINAL = 1, 3, 5, 7
_CHUNK_FILE_OFFSET, _CHUNK_META = 2, 3
# A column chunk's page indexes (4-7) live outside its byte range: they are dropped.
_CHUNK_PAGE_INDEXES = (4, 5, 6, 7)
_COLUMN_COMPRESSED, _COLUMN_DATA_PAGE, _COLUMN_INDEX_PAGE, _COLUMN_DICTIONARY_PAGE = 7, 9, 10, 11
# Bloom filters too (offset and length).
_COLUMN_BLOOM = (14, 15)
_PAGE_COMPRESSED_SIZE, _PAGE_CRC = 3, 4


# -- Thrift compact protocol ---------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _unzigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


def _value(buf: bytes, pos: int, kind: int) -> tuple[Any, int]:
    if kind in _INTS:
        n, pos = _varint(buf, pos)
        return _unzigzag(n), pos
    if kind == _BINARY:
        n, pos = _varint(buf, pos)
        return bytes(buf[pos : pos + n]), pos + n
    if kind == _STRUCT:
        return decode_struct(buf, pos)
    if kind in (_LIST, _SET):
        head = buf[pos]
        pos += 1
        size, element = head >> 4, head & 0x0F
        if size == 15:
            size, pos = _varint(buf, pos)
        items = []
        for _ in range(size):
            item, pos = _value(buf, pos, element)
            items.append(item)
        return (element, items), pos
    if kind in (_BYTE, _TRUE, _FALSE):  # booleans inside lists are a byte each
        return buf[pos], pos + 1
    if kind == _DOUBLE:
        return bytes(buf[pos : pos + 8]), pos + 8
    if kind == _MAP:
        size, pos = _varint(buf, pos)
        if not size:
            return (0, 0, []), pos
        head = buf[pos]
        pos += 1
        pairs = []
        for _ in range(size):
            key, pos = _value(buf, pos, head >> 4)
            item, pos = _value(buf, pos, head & 0x0F)
            pairs.append((key, item))
        return (head >> 4, head & 0x0F, pairs), pos
    raise ValueError(f"unknown Thrift type {kind}")


def decode_struct(buf: bytes, pos: int) -> tuple[Struct, int]:
    """The Thrift compact struct at ``pos`` of ``buf``, and the position after it.

    Raises
    ------
    ValueError, IndexError
        When the bytes are not a struct.
    """
    fields: Struct = {}
    last = 0
    while True:
        head = buf[pos]
        pos += 1
        if head == _STOP:
            return fields, pos
        kind, delta = head & 0x0F, head >> 4
        if delta:
            field = last + delta
        else:
            n, pos = _varint(buf, pos)
            field = _unzigzag(n)
        last = field
        # Integers are most of a footer: read inline.
        if _I16 <= kind <= _I64:
            byte = buf[pos]
            pos += 1
            if byte < 0x80:
                fields[field] = (kind, (byte >> 1) ^ -(byte & 1))
            else:
                n, pos = _varint(buf, pos - 1)
                fields[field] = (kind, (n >> 1) ^ -(n & 1))
        elif kind in (_TRUE, _FALSE):
            fields[field] = (kind, kind == _TRUE)
        else:
            value, pos = _value(buf, pos, kind)
            fields[field] = (kind, value)


def _put_varint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _put_value(out: bytearray, kind: int, value: Any) -> None:
    if kind in _INTS:
        _put_varint(out, (value << 1) ^ (value >> 63))
    elif kind == _BINARY:
        _put_varint(out, len(value))
        out += value
    elif kind == _STRUCT:
        _put_struct(out, value)
    elif kind in (_LIST, _SET):
        element, items = value
        if len(items) < 15:
            out.append(len(items) << 4 | element)
        else:
            out.append(0xF0 | element)
            _put_varint(out, len(items))
        for item in items:
            _put_value(out, element, item)
    elif kind in (_BYTE, _TRUE, _FALSE):
        out.append(value)
    elif kind == _DOUBLE:
        out += value
    elif kind == _MAP:
        key_kind, item_kind, pairs = value
        _put_varint(out, len(pairs))
        if pairs:
            out.append(key_kind << 4 | item_kind)
        for key, item in pairs:
            _put_value(out, key_kind, key)
            _put_value(out, item_kind, item)
    else:
        raise ValueError(f"unknown Thrift type {kind}")


def _put_struct(out: bytearray, fields: Struct) -> None:
    last = 0
    for field in sorted(fields):
        kind, value = fields[field]
        if kind in (_TRUE, _FALSE):
            kind = _TRUE if value else _FALSE
        if 0 < field - last <= 15:
            out.append((field - last) << 4 | kind)
        else:
            out.append(kind)
            _put_varint(out, (field << 1) ^ (field >> 63))
        last = field
        # Small integers are most of a footer: written inline.
        if _I16 <= kind <= _I64 and 0 <= value < 64:
            out.append(value << 1)
        elif kind not in (_TRUE, _FALSE):
            _put_value(out, kind, value)
    out.append(_STOP)


def encode_struct(fields: Struct) -> bytes:
    """``fields`` as a Thrift compact struct (the inverse of :func:`decode_struct`)."""
    out = bytearray()
    _put_struct(out, fields)
    return bytes(out)


# -- Parquet -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Footer:
    """A Parquet file's bytes and its decoded ``FileMetaData``."""

    data: bytes
    meta: Struct

    @classmethod
    def of(cls, data: bytes) -> Footer:
        """Decode the footer of a whole Parquet file's bytes.

        Raises
        ------
        ValueError
            When the bytes are not a Parquet file.
        """
        if len(data) < 12 or data[:4] != MAGIC or data[-4:] != MAGIC:
            raise ValueError("not a Parquet file (no PAR1 at both ends)")
        size = int.from_bytes(data[-8:-4], "little")
        start = len(data) - 8 - size
        if start < 4:
            raise ValueError("its footer is longer than the file")
        try:
            meta, end = decode_struct(data, start)
        except IndexError:
            raise ValueError("its footer is cut short") from None
        if end != len(data) - 8:
            raise ValueError("its footer does not end where its length says")
        return cls(data, meta)

    @property
    def schema(self) -> Any:
        """The Parquet schema (the list of schema elements), for comparing files."""
        return self.meta[2][1]

    def key_values(self) -> dict[bytes, bytes]:
        """The footer's key-value metadata."""
        found = self.meta.get(_META_KEY_VALUES, (_LIST, (_STRUCT, [])))[1][1]
        return {kv[1][1]: kv.get(2, (_BINARY, b""))[1] for kv in found}

    def groups(self) -> list[Group]:
        """Its row groups, each with its byte range."""
        return [
            Group(entry, self.data, *_extent(entry))
            for entry in self.meta.get(_META_ROW_GROUPS, (_LIST, (_STRUCT, [])))[1][1]
        ]


@dataclass(frozen=True)
class Group:
    """One row group: its footer entry and where its column chunks are in ``data``."""

    entry: Struct
    data: bytes
    start: int
    stop: int

    @property
    def num_rows(self) -> int:
        """Rows in the group."""
        return self.entry[_GROUP_NUM_ROWS][1]

    def check_pages(self) -> None:
        """Check every page's CRC-32 against its bytes, without decompressing.

        Raises
        ------
        ValueError
            When a page's CRC does not match its bytes, or the pages do not fill
            their column chunk exactly.
        """
        view = memoryview(self.data)
        for chunk in self.entry[_GROUP_COLUMNS][1][1]:
            pos, stop = _chunk_extent(chunk[_CHUNK_META][1])
            while pos < stop:
                try:
                    header, pos = decode_struct(self.data, pos)
                except IndexError:
                    raise ValueError("a page header is cut short") from None
                size = header[_PAGE_COMPRESSED_SIZE][1]
                # Pages written before particle files carried CRCs have none to check
                # (Arrow's verification reads them so too).
                crc = header.get(_PAGE_CRC)
                if crc is not None and zlib.crc32(view[pos : pos + size]) != crc[1] & 0xFFFFFFFF:
                    raise ValueError("a page's CRC does not match its bytes")
                pos += size
            if pos != stop:
                raise ValueError("a column chunk's pages overrun it")


def _chunk_extent(column: Struct) -> tuple[int, int]:
    first = column[_COLUMN_DATA_PAGE][1]
    dictionary = column.get(_COLUMN_DICTIONARY_PAGE, (_I64, 0))[1]
    if 0 < dictionary < first:
        first = dictionary
    return first, first + column[_COLUMN_COMPRESSED][1]


def _extent(entry: Struct) -> tuple[int, int]:
    extents = [_chunk_extent(chunk[_CHUNK_META][1]) for chunk in entry[_GROUP_COLUMNS][1][1]]
    return min(e[0] for e in extents), max(e[1] for e in extents)


def _moved(entry: Struct, shift: int, ordinal: int) -> Struct:
    """``entry`` with its offsets shifted by ``shift`` bytes and its position ``ordinal``."""
    chunks = []
    for chunk in entry[_GROUP_COLUMNS][1][1]:
        column = dict(chunk[_CHUNK_META][1])
        for field in (_COLUMN_DATA_PAGE, _COLUMN_INDEX_PAGE, _COLUMN_DICTIONARY_PAGE):
            if field in column and column[field][1] > 0:
                column[field] = (_I64, column[field][1] + shift)
        for field in _COLUMN_BLOOM:
            column.pop(field, None)
        moved = {k: v for k, v in chunk.items() if k not in _CHUNK_PAGE_INDEXES}
        moved[_CHUNK_META] = (_STRUCT, column)
        if moved.get(_CHUNK_FILE_OFFSET, (_I64, 0))[1] > 0:
            moved[_CHUNK_FILE_OFFSET] = (_I64, moved[_CHUNK_FILE_OFFSET][1] + shift)
        chunks.append(moved)
    out = dict(entry)
    out[_GROUP_COLUMNS] = (_LIST, (_STRUCT, chunks))
    if out.get(_GROUP_FILE_OFFSET, (_I64, 0))[1] > 0:
        out[_GROUP_FILE_OFFSET] = (_I64, out[_GROUP_FILE_OFFSET][1] + shift)
    out[_GROUP_ORDINAL] = (_I16, ordinal)
    return out


def join(template: Footer, groups: list[Group], key_values: dict[str, str]) -> list[bytes]:
    """A Parquet file of ``groups``, in order, as parts to write one after another.

    ``template`` is a file of the same schema (its version, schema, ``created_by``,
    column orders and key-value metadata are kept); ``key_values`` are added to
    its key-value metadata, last and in their order.
    """
    parts: list[Any] = [MAGIC]
    position = len(MAGIC)
    entries = []
    for ordinal, group in enumerate(groups):
        entries.append(_moved(group.entry, position - group.start, ordinal))
        parts.append(memoryview(group.data)[group.start : group.stop])
        position += group.stop - group.start
    meta = dict(template.meta)
    meta[_META_NUM_ROWS] = (_I64, sum(g.num_rows for g in groups))
    meta[_META_ROW_GROUPS] = (_LIST, (_STRUCT, entries))
    added = {k.encode(): v.encode() for k, v in key_values.items()}
    # Added entries come last, in their order (see :func:`trailing_value`).
    pairs = {k: v for k, v in template.key_values().items() if k not in added} | added
    meta[_META_KEY_VALUES] = (
        _LIST,
        (_STRUCT, [{1: (_BINARY, k), 2: (_BINARY, v)} for k, v in pairs.items()]),
    )
    footer = encode_struct(meta)
    return [*parts, footer, len(footer).to_bytes(4, "little"), MAGIC]


def trailing_value(tail: bytes, key: str) -> bytes | None:
    """The value of key-value entry ``key`` of a Parquet footer, found in the file's last bytes.

    A footer's key-value metadata comes after its row groups, and only a short
    ``created_by`` and column orders follow it: an entry added last by
    :func:`join` is within the file's last bytes ``tail``, found there without
    decoding the row groups (1.5 MB of footer for 1,024 row groups of 12 columns).
    Any entry is found when ``tail`` holds the whole footer.

    Returns
    -------
    bytes or None
        ``None`` when ``tail`` does not hold the whole entry.
    """
    name = key.encode()
    head = bytes([1 << 4 | _BINARY])
    length = bytearray()
    _put_varint(length, len(name))
    marker = head + bytes(length) + name + head
    at = tail.rfind(marker)
    if at < 0:
        return None
    try:
        size, pos = _varint(tail, at + len(marker))
    except IndexError:
        return None
    if pos + size >= len(tail) or tail[pos + size] != _STOP:
        return None
    return tail[pos : pos + size]
