"""Avro messages to ClickHouse staging tables without decoding them in Python.

Decoding an event into Python objects costs ~13 µs (fastavro); ClickHouse reads Avro natively in C++ at a
fraction of that. So the sink only frames: it appends fields of its own to each message (the message's index
in the batch, its partition and offset, its Kafka timestamp and key: an Avro record's binary encoding is the
concatenation of its fields, so appending them to the body is a valid encoding of the writer schema plus
trailing fields), and joins the messages of one writer schema into an Avro object container file that
ClickHouse ingests into a temporary staging table. The message's wire header stays in place: the container
schema starts with a 10-byte fixed field that covers it (`WIRE_HEADER`), which ClickHouse skips as it has
no column. Everything here is pure.
"""

from __future__ import annotations

import io
import json
import struct
from functools import lru_cache
from typing import Any

import fastavro

from schemas.serde import latest_version

# Trailing fields the sink appends to every record body: the message's index in the batch, its partition, its
# offset minus the first offset of that partition in the batch (small, so cheap to encode), and what the
# stream processors judge a source event by besides its body (`streams.intake`): the message's Kafka
# timestamp in ms (null when not known) and its key (empty when it has none). The timestamp is a double, exact
# for any ms timestamp below 2**53 (year 287,396): packing one is ~10x cheaper than a variable-length long.
MSG_FIELD, PARTITION_FIELD, DELTA_FIELD, TS_FIELD, KEY_FIELD = "_msg", "_partition", "_delta", "_ts", "_key"
_TRAILER_FIELDS = [
    {"name": MSG_FIELD, "type": "long"},
    {"name": PARTITION_FIELD, "type": "int"},
    {"name": DELTA_FIELD, "type": "long"},
    {"name": TS_FIELD, "type": ["null", "double"]},
    {"name": KEY_FIELD, "type": "bytes"},
]
TRAILER_COLUMNS = [
    (MSG_FIELD, "UInt64"),
    (PARTITION_FIELD, "UInt32"),
    (DELTA_FIELD, "UInt64"),
    (TS_FIELD, "Nullable(Float64)"),
    (KEY_FIELD, "String"),
]
_SYNC = b"shekara-sink-ocf"  # any 16 bytes: the container has a single block
# Leading field of every staged record: the message's wire header (Avro single-object: C3 01 + fingerprint),
# kept rather than sliced off, as copying every body cost a tenth of the sink's Python time. A shorter header
# (Confluent: 5 bytes) is padded to this length, a longer one cut to it (`framed`).
WIRE_HEADER = 10
_WIRE_HEADER_FIELD = {"name": "_wire_header", "type": {"type": "fixed", "name": "_wire_header", "size": WIRE_HEADER}}


def clickhouse_type(avro: Any) -> str:
    """The ClickHouse column type a ClickHouse Avro reader fills from an Avro type."""
    if isinstance(avro, list):
        branches = [b for b in avro if b != "null"]
        if len(branches) != 1:
            raise ValueError(f"unions other than [null, T] are not staged: {avro}")
        inner = clickhouse_type(branches[0])
        return f"Nullable({inner})" if "null" in avro else inner
    if isinstance(avro, str):
        primitive = {
            "string": "String",
            "bytes": "String",
            "int": "Int32",
            "long": "Int64",
            "boolean": "Bool",
            "float": "Float32",
            "double": "Float64",
        }
        if avro not in primitive:
            raise ValueError(f"named type references are not staged: {avro!r}")
        return primitive[avro]
    logical = avro.get("logicalType")
    if logical == "timestamp-micros":
        return "DateTime64(6, 'UTC')"
    if logical == "timestamp-millis":
        return "DateTime64(3, 'UTC')"
    if logical == "date":
        return "Date32"
    kind = avro["type"]
    if kind == "record":
        return "Tuple(" + ", ".join(f"{f['name']} {clickhouse_type(f['type'])}" for f in avro["fields"]) + ")"
    if kind == "enum":
        return "String"
    if kind == "array":
        return f"Array({clickhouse_type(avro['items'])})"
    if kind == "map":
        return f"Map(String, {clickhouse_type(avro['values'])})"
    return clickhouse_type(kind)


def stage_columns(record_name: str) -> list[tuple[str, str]]:
    """Columns of the staging table of a record: the latest schema's fields plus the trailer."""
    raw = latest_version(record_name).raw
    cols = [(f["name"], clickhouse_type(f["type"])) for f in raw["fields"]]
    return [*cols, *TRAILER_COLUMNS]


def stage_ddl(table: str, record_name: str) -> str:
    cols = ", ".join(f"`{name}` {ctype}" for name, ctype in stage_columns(record_name))
    return f"CREATE TEMPORARY TABLE IF NOT EXISTS `{table}` ({cols})"


@lru_cache(maxsize=64)
def _container_header(writer_schema_json: str) -> bytes:
    """The OCF header for a writer schema extended by the trailer fields (cached per schema)."""
    schema = json.loads(writer_schema_json)
    extended = {**schema, "fields": [_WIRE_HEADER_FIELD, *schema["fields"], *_TRAILER_FIELDS]}
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(extended), [], sync_marker=_SYNC)
    return out.getvalue()


def zigzag(n: int) -> bytes:
    """Avro's variable-length zig-zag encoding of an int or long."""
    if 0 <= n < ZIGZAG_CACHED:
        return ZIGZAG_TABLE[n]
    return _zigzag(n)


def _zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# Trailer values are small (batch index, partition, offset minus the batch's first offset, key length): a
# lookup table makes framing ~3x cheaper than encoding each one.
ZIGZAG_CACHED = 1 << 18
ZIGZAG_TABLE = [_zigzag(i) for i in range(ZIGZAG_CACHED)]
NO_TIMESTAMP = b"\x00"  # the null branch of the `_ts` union
NO_KEY = ZIGZAG_TABLE[0]  # empty bytes
_DOUBLE = struct.Struct("<d").pack


def timestamp_field(ms: int | None) -> bytes:
    """The `_ts` trailer field: the union's branch index, then the timestamp (ms) if there is one."""
    return NO_TIMESTAMP if ms is None else b"\x02" + _DOUBLE(ms)


def key_field(key: bytes | None) -> bytes:
    """The `_key` trailer field (Avro bytes): a message without a key has an empty one."""
    if not key:
        return NO_KEY
    n = len(key)
    return (ZIGZAG_TABLE[n] if n < ZIGZAG_CACHED else _zigzag(n)) + key


def framed(value: bytes, header: int) -> bytes:
    """A message whose wire header is `header` bytes long, as a staged record starts: with `WIRE_HEADER` bytes."""
    if header == WIRE_HEADER:
        return value
    return bytes(WIRE_HEADER - header) + value if header < WIRE_HEADER else value[header - WIRE_HEADER :]


def container(writer_schema_json: str, parts: list[bytes], count: int) -> bytes:
    """An Avro object container file (one block) of `count` records whose encodings are `parts` joined."""
    size = sum(map(len, parts))
    # One join, one copy of the block (~40 MB for 100,000 crossings): the writer holds the GIL while copying.
    return b"".join([_container_header(writer_schema_json), zigzag(count), zigzag(size), *parts, _SYNC])
