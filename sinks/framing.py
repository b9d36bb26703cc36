"""Which schema wrote a message, from its wire header alone (no decoding): the sink's `batch.Resolve`."""

from __future__ import annotations

import json

from schemas.convert import RECORD_TYPES
from schemas.serde import CONFLUENT_MAGIC, SINGLE_OBJECT_MAGIC, DecodeError, Serde, registry_client, schema_versions
from shekara.settings import Settings
from sinks.batch import Writer, schema_json

_SINGLE_HEADER = len(SINGLE_OBJECT_MAGIC) + 8
_CONFLUENT_HEADER = 5


class Framer:
    """Resolves a message's writer schema: single-object fingerprints from ``schemas/avro``, Confluent schema
    ids from the registry (cached). Raises `schemas.serde.DecodeError` (a ValueError) for unreadable headers."""

    def __init__(self, settings: Settings) -> None:
        self.single_object: dict[bytes, Writer] = {
            sv.fingerprint: Writer(sv.record_name, schema_json(sv.raw))
            for versions in schema_versions().values()
            for sv in versions
        }
        self._registry_url = settings.schema_registry_url
        self._by_id: dict[int, Writer] = {}
        self._serde = Serde.from_settings(settings)

    def __call__(self, value: bytes) -> tuple[Writer, int]:
        if value[:2] == SINGLE_OBJECT_MAGIC:
            if len(value) < _SINGLE_HEADER:
                raise DecodeError(f"truncated single-object header: {len(value)} bytes, need {_SINGLE_HEADER}")
            writer = self.single_object.get(bytes(value[2:_SINGLE_HEADER]))
            if writer is None:
                raise DecodeError(
                    f"unknown schema fingerprint {bytes(value[2:_SINGLE_HEADER]).hex()}: "
                    "not one of the versions in schemas/avro"
                )
            return writer, _SINGLE_HEADER
        if value[:1] == bytes((CONFLUENT_MAGIC,)):
            if len(value) <= _CONFLUENT_HEADER:
                raise DecodeError(f"truncated Confluent header: {len(value)} bytes, need more than {_CONFLUENT_HEADER}")
            schema_id = int.from_bytes(value[1:_CONFLUENT_HEADER], "big")
            return self._by_id.get(schema_id) or self._registry_writer(schema_id), _CONFLUENT_HEADER
        if not value:
            raise DecodeError("empty message: no value bytes")
        raise DecodeError(
            f"bad magic byte 0x{value[0]:02x}: expected 0xc3 0x01 (Avro single-object) or 0x00 (Confluent wire format)"
        )

    def _registry_writer(self, schema_id: int) -> Writer:
        if not self._registry_url:
            raise DecodeError(f"Confluent wire-format message (schema id {schema_id}) but no schema registry is set")
        from confluent_kafka.schema_registry import SchemaRegistryError

        try:
            schema = registry_client(self._registry_url).get_schema(schema_id)
        except SchemaRegistryError as exc:
            raise DecodeError(f"unknown schema id {schema_id} in the registry: {exc}") from exc
        raw = json.loads(schema.schema_str)
        name = str(raw.get("name", "")).rsplit(".", 1)[-1]
        if name not in RECORD_TYPES:
            raise DecodeError(f"schema id {schema_id} is {raw.get('name')!r}, not a record of the Shekara contract")
        writer = Writer(name, schema_json(raw))
        self._by_id[schema_id] = writer
        return writer

    def explain(self, value: bytes) -> str | None:
        """Why `value` cannot be decoded (the serde's own reason), or None if it decodes."""
        try:
            self._serde.decode_dict(value, "")
        except DecodeError as exc:
            return exc.reason
        return None
