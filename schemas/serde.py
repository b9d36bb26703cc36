"""Encode and decode event records, with or without a schema registry.

Two wire formats, told apart by their first bytes, and readers accept both whatever the mode:

* Avro single-object encoding (``C3 01`` + 8-byte CRC-64-AVRO fingerprint + body): the embedded default.
  The fingerprint names one schema version kept in ``schemas/avro``, so no registry is needed.
* Confluent wire format (``00`` + 4-byte schema id + body): when ``settings.schema_registry_url`` is set,
  encoded by confluent-kafka's `AvroSerializer` (subjects use the topic-name strategy and compatibility
  BACKWARD); decoded here with the registry's writer schema, so a corrupt enum index is refused as in the other.

Data written with an older schema version is resolved to the latest one (the reader schema), so consumers
always see the current shape.
"""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from schemas.convert import RECORD_TYPES, AvroDict, from_avro, to_avro
from schemas.records import Alert, AlertTriage, Crossing, DeadLetter, Registration, StatusChange, Stay
from shekara.logs import get_logger
from shekara.settings import Settings

Record = Crossing | Registration | StatusChange | Alert | Stay | DeadLetter | AlertTriage

AVRO_DIR = Path(__file__).resolve().parent / "avro"
SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = 0
_SINGLE_HEADER = len(SINGLE_OBJECT_MAGIC) + 8
_CONFLUENT_HEADER = 5
_FILE_NAME = re.compile(r"^(?P<stem>[a-z_]+)\.v(?P<version>\d+)\.avsc$")

log = get_logger(__name__)


def failure_reason(exc: BaseException) -> str:
    """How reading untrusted bytes failed, without quoting them: the bytes a string failed on are a name or a
    document number, and a reason goes wherever the dead letter goes (the warehouse's `dead_letters` included)."""
    if isinstance(exc, UnicodeDecodeError):
        return f"a string is not UTF-8 ({exc.reason} at its byte {exc.start})"
    if isinstance(exc, EOFError):
        return "the bytes end before the record does"
    return type(exc).__name__


class DecodeError(ValueError):
    """A message that cannot be decoded; `reason` says what is wrong (bad magic, unknown schema, truncated...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SchemaVersion:
    """One ``<stem>.v<N>.avsc`` file: the raw JSON, the fastavro-parsed form and its single-object fingerprint."""

    record_name: str
    version: int
    path: Path
    raw: dict[str, Any]
    parsed: dict[str, Any]
    fingerprint: bytes  # 8 bytes, little-endian CRC-64-AVRO of the parsing canonical form


@cache
def schema_versions() -> dict[str, list[SchemaVersion]]:
    """Every schema version in ``schemas/avro``, by record name, oldest first."""
    found: dict[str, list[SchemaVersion]] = {}
    for path in sorted(AVRO_DIR.glob("*.avsc")):
        m = _FILE_NAME.match(path.name)
        if not m:
            raise ValueError(f"{path}: schema files are named <record>.v<N>.avsc")
        raw = json.loads(path.read_text())
        parsed: dict[str, Any] = parse_schema(raw)  # type: ignore[assignment]  # a record schema is a dict
        fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))
        sv = SchemaVersion(raw["name"], int(m["version"]), path, raw, parsed, fp)
        found.setdefault(sv.record_name, []).append(sv)
    for name, versions in found.items():
        versions.sort(key=lambda v: v.version)
        numbers = [v.version for v in versions]
        if numbers != list(range(1, len(numbers) + 1)):
            raise ValueError(f"schema versions of {name} must run 1..N without gaps, found {numbers}")
    return found


def latest_version(record_name: str) -> SchemaVersion:
    try:
        return schema_versions()[record_name][-1]
    except KeyError:
        raise KeyError(f"no Avro schema for record {record_name!r} in {AVRO_DIR}") from None


@cache
def _by_fingerprint() -> dict[bytes, SchemaVersion]:
    index: dict[bytes, SchemaVersion] = {}
    for versions in schema_versions().values():
        for sv in versions:
            if sv.fingerprint in index:
                raise ValueError(f"{sv.path} and {index[sv.fingerprint].path} have the same fingerprint")
            index[sv.fingerprint] = sv
    return index


def schema_for(record_type: type) -> dict[str, Any]:
    """The parsed (fastavro) latest schema of a record type: the writer schema."""
    return latest_version(record_type.__name__).parsed


def raw_schema_for(record_type: type) -> dict[str, Any]:
    """The latest schema of a record type as written in its ``.avsc`` file (plain JSON)."""
    return latest_version(record_type.__name__).raw


def fingerprint_of(record_type: type) -> bytes:
    """The 8-byte single-object fingerprint of the latest schema of `record_type`."""
    return latest_version(record_type.__name__).fingerprint


# --- enums read as ints --------------------------------------------------------------------------------------
# fastavro 1.13 reads an enum index with Python indexing, so a corrupt index -1 becomes the last symbol; ClickHouse
# refuses it. An enum's wire encoding IS a zig-zag int, so the body is read with every enum replaced by "int" and
# the indexes are mapped to symbols here, refusing any outside 0..len(symbols)-1, as ClickHouse does.

Convert = Callable[[Any], Any]


class _BadEnum(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _enums_as_ints(node: Any, enums: dict[str, list[str]]) -> Any:
    """A copy of raw schema `node` with every enum definition and reference replaced by "int"; fills `enums`."""
    if isinstance(node, str):
        return "int" if node in enums else node
    if isinstance(node, list):
        return [_enums_as_ints(n, enums) for n in node]
    if isinstance(node, dict):
        if node.get("type") == "enum":
            enums[node["name"]] = list(node["symbols"])
            if "namespace" in node:
                enums[f"{node['namespace']}.{node['name']}"] = list(node["symbols"])
            return "int"
        return {
            k: (_enums_as_ints(v, enums) if k in ("type", "fields", "items", "values") else v) for k, v in node.items()
        }
    return node


def _enum_converter(name: str, symbols: list[str], where: str) -> Convert:
    last = len(symbols) - 1

    def convert(index: int) -> str:
        if 0 <= index <= last:
            return symbols[index]
        raise _BadEnum(f"{where}: enum {name} index {index} is out of range 0..{last}")

    return convert


def _converter(node: Any, enums: dict[str, list[str]], named: dict[str, Convert | None], where: str) -> Convert | None:
    """What turns the decoded value of raw schema `node` (enums read as ints) into its Avro value; None: nothing to."""
    if isinstance(node, str):
        if node in enums:
            return _enum_converter(node.rsplit(".", 1)[-1], enums[node], where)
        return named.get(node)
    if isinstance(node, list):
        return _union_converter(node, enums, named, where)
    kind = node.get("type")
    if kind == "enum":
        return _enum_converter(node["name"], enums[node["name"]], where)
    if kind == "record":
        fields = [
            (f["name"], c)
            for f in node["fields"]
            if (c := _converter(f["type"], enums, named, f"{where}.{f['name']}" if where else f["name"])) is not None
        ]
        convert_record = _record_converter(fields) if fields else None
        named[node["name"]] = convert_record
        if "namespace" in node:
            named[f"{node['namespace']}.{node['name']}"] = convert_record
        return convert_record
    if kind == "array":
        item = _converter(node["items"], enums, named, f"{where}[]")
        return None if item is None else (lambda v: [item(x) for x in v])
    if kind == "map":
        value = _converter(node["values"], enums, named, f"{where}{{}}")
        return None if value is None else (lambda v: {k: value(x) for k, x in v.items()})
    if isinstance(kind, dict | list):
        return _converter(kind, enums, named, where)
    return None  # a primitive, with or without a logical type


def _record_converter(fields: list[tuple[str, Convert]]) -> Convert:
    def convert(d: dict[str, Any]) -> dict[str, Any]:
        for name, c in fields:
            d[name] = c(d[name])
        return d

    return convert


def _union_converter(
    branches: list[Any], enums: dict[str, list[str]], named: dict[str, Convert | None], where: str
) -> Convert | None:
    """Branches told apart by the Python type fastavro reads them as; an enum beside an int would be ambiguous."""
    by_type: dict[type, Convert] = {}
    for b in branches:
        c = _converter(b, enums, named, where)
        if c is None:
            continue
        kind = b if isinstance(b, str) and b not in enums else (b.get("type") if isinstance(b, dict) else b)
        py = int if (isinstance(b, str) and b in enums) or kind == "enum" else list if kind == "array" else dict
        if py in by_type:
            raise ValueError(f"{where}: a union with two branches of one Python type holding enums")
        by_type[py] = c
    if not by_type:
        return None
    plain = [b for b in branches if isinstance(b, str) and b in ("int", "long")]
    if int in by_type and plain:
        raise ValueError(f"{where}: a union of an enum and an int cannot be read with enums as ints")

    def convert(v: Any) -> Any:
        c = by_type.get(type(v))
        return v if c is None else c(v)

    return convert


@dataclass(frozen=True)
class _IntEnumReading:
    writer: dict[str, Any]  # the writer schema, parsed, with enums as "int"
    reader: dict[str, Any] | None  # the same for the latest version; None when that is the writer
    convert: Convert | None  # indexes to symbols (None: the record has no enum)


@cache
def _int_enum_reading(record_name: str, version: int) -> _IntEnumReading:
    return _int_enum_reading_of(record_name, schema_versions()[record_name][version - 1].raw, f"v{version}")


def _int_enum_reading_of(record_name: str, writer_raw: Any, label: str) -> _IntEnumReading:
    """How to read a body written with `writer_raw` (a version in schemas/avro or a registry's schema, `label`)."""
    latest = schema_versions()[record_name][-1]
    writer_enums: dict[str, list[str]] = {}
    writer_int = parse_schema(_enums_as_ints(writer_raw, writer_enums))
    reader_int: Any = None
    enums = writer_enums
    if writer_raw != latest.raw:
        enums = {}
        reader_int = parse_schema(_enums_as_ints(latest.raw, enums))
        for name, symbols in enums.items():
            if writer_enums.get(name, symbols) != symbols:
                # Indexes are mapped with one symbol list: resolving changed symbols would need the writer's list.
                raise ValueError(f"{record_name}: enum {name} symbols differ between {label} and v{latest.version}")
    convert = _converter(latest.raw, enums, {}, "")
    return _IntEnumReading(writer_int, reader_int, convert)  # type: ignore[arg-type]


def _read_body(data: bytes, start: int, reading: _IntEnumReading, what: str) -> AvroDict:
    """The Avro dict in `data[start:]`, read with enums as ints and mapped to symbols; `what` names the writer."""
    buf = io.BytesIO(data)
    buf.seek(start)
    try:
        d = fastavro.schemaless_reader(buf, reading.writer, reading.reader)
    except Exception as exc:  # any failure to parse untrusted bytes is a decode error, never a crash
        raise DecodeError(f"truncated or corrupt {what} body: {failure_reason(exc)}") from exc
    if buf.tell() != len(data):
        raise DecodeError(f"corrupt {what} body: {len(data) - buf.tell()} bytes left over")
    if reading.convert is not None:
        try:
            d = reading.convert(d)
        except _BadEnum as exc:
            raise DecodeError(f"corrupt {what} body: {exc.reason}") from exc
    return d  # type: ignore[return-value]


# Registry clients are shared per URL: the `mock://` client keeps its schemas in the instance, so producer and
# consumer in one process must share it, and a real client caches ids the same way.
_registries: dict[str, Any] = {}
_registries_lock = threading.Lock()


def registry_client(url: str) -> Any:
    """The process-wide confluent-kafka `SchemaRegistryClient` for `url` (``mock://...`` gives the in-process mock)."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    with _registries_lock:
        client = _registries.get(url)
        if client is None:
            client = SchemaRegistryClient.new_client({"url": url})
            _registries[url] = client
        return client


class Serde:
    """Encodes records for a topic and decodes either wire format back. Safe to share between threads."""

    def __init__(self, registry: Any | None = None) -> None:
        self._registry = registry
        self._serializers: dict[str, Any] = {}
        self._readings_by_id: dict[int, _IntEnumReading] = {}
        self._names_by_id: dict[int, str] = {}
        self._subjects_configured: set[str] = set()
        self._lock = threading.Lock()
        # Warm the schema cache now so a broken schema file fails at start-up, not on the first message.
        _by_fingerprint()

    @classmethod
    def from_settings(cls, settings: Settings) -> Serde:
        """Registry mode iff `settings.schema_registry_url` is set; otherwise single-object encoding."""
        url = settings.schema_registry_url
        return cls(registry_client(url) if url else None)

    @property
    def uses_registry(self) -> bool:
        return self._registry is not None

    # --- encoding ---------------------------------------------------------------------------------------

    def encode(self, record: Record, topic: str) -> bytes:
        """`record` in this serde's wire format, with the latest schema version as writer."""
        return self.encode_dict(type(record).__name__, to_avro(record), topic)

    def encode_dict(self, record_name: str, d: AvroDict, topic: str) -> bytes:
        """An Avro dict (shaped by the latest schema of `record_name`) in this serde's wire format."""
        if self._registry is not None:
            return self._encode_confluent(record_name, d, topic)
        sv = latest_version(record_name)
        buf = io.BytesIO()
        buf.write(SINGLE_OBJECT_MAGIC)
        buf.write(sv.fingerprint)
        fastavro.schemaless_writer(buf, sv.parsed, d)
        return buf.getvalue()

    def _encode_confluent(self, record_name: str, d: AvroDict, topic: str) -> bytes:
        from confluent_kafka.serialization import MessageField, SerializationContext

        serializer = self._serializers.get(record_name) or self._make_serializer(record_name)
        self._configure_subject(f"{topic}-value")
        data = serializer(d, SerializationContext(topic, MessageField.VALUE))
        assert data is not None  # only None for a None value
        return bytes(data)

    def _make_serializer(self, record_name: str) -> Any:
        from confluent_kafka.schema_registry.avro import AvroSerializer

        with self._lock:
            if record_name not in self._serializers:
                self._serializers[record_name] = AvroSerializer(
                    self._registry,
                    json.dumps(latest_version(record_name).raw),
                    conf={"auto.register.schemas": True, "subject.name.strategy.type": "TOPIC"},
                )
            return self._serializers[record_name]

    def _configure_subject(self, subject: str) -> None:
        """Set BACKWARD compatibility on a subject once, before its first schema is registered."""
        if subject in self._subjects_configured:
            return
        from confluent_kafka.schema_registry import ConfigCompatibilityLevel, SchemaRegistryError, ServerConfig

        registry: Any = self._registry
        with self._lock:
            if subject in self._subjects_configured:
                return
            try:
                registry.set_config(subject, ServerConfig(compatibility=ConfigCompatibilityLevel.BACKWARD))
            except SchemaRegistryError as exc:
                # A registry run by ops may forbid config changes; registering still works under its policy.
                log.warning("cannot set subject compatibility", subject=subject, error=str(exc))
            self._subjects_configured.add(subject)

    # --- decoding ---------------------------------------------------------------------------------------

    def decode(self, data: bytes, topic: str) -> Record:
        """The record in `data` (either wire format), resolved to the latest schema version."""
        name, d = self.decode_dict(data, topic)
        try:
            return from_avro(RECORD_TYPES[name], d)
        except ValueError as exc:
            raise DecodeError(f"{name}: {exc}") from exc

    def decode_dict(self, data: bytes, topic: str) -> tuple[str, AvroDict]:
        """(record name, Avro dict in the latest schema's shape): the fast path, no dataclass is built."""
        if not data:
            raise DecodeError("empty message: no value bytes")
        if data[:2] == SINGLE_OBJECT_MAGIC:
            return self._decode_single_object(data)
        if data[0] == CONFLUENT_MAGIC:
            return self._decode_confluent(data, topic)
        raise DecodeError(
            f"bad magic byte 0x{data[0]:02x}: expected 0xc3 0x01 (Avro single-object) or 0x00 (Confluent wire format)"
        )

    def _decode_single_object(self, data: bytes) -> tuple[str, AvroDict]:
        if len(data) < _SINGLE_HEADER:
            raise DecodeError(f"truncated single-object header: {len(data)} bytes, need {_SINGLE_HEADER}")
        fp = bytes(data[2:_SINGLE_HEADER])
        writer = _by_fingerprint().get(fp)
        if writer is None:
            raise DecodeError(f"unknown schema fingerprint {fp.hex()}: not one of the versions in schemas/avro")
        reading = _int_enum_reading(writer.record_name, writer.version)
        return writer.record_name, _read_body(data, _SINGLE_HEADER, reading, f"{writer.record_name} v{writer.version}")

    def _decode_confluent(self, data: bytes, topic: str) -> tuple[str, AvroDict]:
        if len(data) <= _CONFLUENT_HEADER:
            raise DecodeError(f"truncated Confluent header: {len(data)} bytes, need more than {_CONFLUENT_HEADER}")
        schema_id = int.from_bytes(data[1:_CONFLUENT_HEADER], "big")
        if self._registry is None:
            raise DecodeError(
                f"Confluent wire-format message (schema id {schema_id}) but no schema registry is configured"
            )
        from confluent_kafka.schema_registry import SchemaRegistryError

        try:
            name = self._record_name_for_id(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise DecodeError(f"unknown schema id {schema_id} in the registry: {exc.error_message}") from exc
            raise  # the registry is unwell, not the message: let the caller retry rather than dead-letter it
        # Read here, not by confluent-kafka's AvroDeserializer: fastavro alone reads a corrupt enum index -1 as the
        # last symbol (see "enums read as ints"), which would store a value nobody sent.
        reading = self._readings_by_id.get(schema_id)
        if reading is None:
            writer_raw = json.loads(self._registry.get_schema(schema_id).schema_str)  # cached by the client
            try:
                reading = _int_enum_reading_of(name, writer_raw, f"schema id {schema_id}")
            except Exception as exc:  # a schema we cannot read with ours: its messages are undecodable
                raise DecodeError(f"schema id {schema_id} cannot be read as {name}: {exc}") from exc
            self._readings_by_id[schema_id] = reading
        return name, _read_body(data, _CONFLUENT_HEADER, reading, f"Confluent-framed {name} (schema id {schema_id})")

    def _record_name_for_id(self, schema_id: int) -> str:
        name = self._names_by_id.get(schema_id)
        if name is None:
            schema = self._registry.get_schema(schema_id)  # type: ignore[union-attr]
            full = json.loads(schema.schema_str).get("name", "")
            name = full.rsplit(".", 1)[-1]
            if name not in RECORD_TYPES:
                raise DecodeError(f"schema id {schema_id} is {full!r}, not a record of the Shekara contract")
            self._names_by_id[schema_id] = name
        return name
