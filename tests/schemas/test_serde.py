"""Serialisation: both wire formats, schema resolution from older versions, clear decode errors, and a round trip
of every record type through the real embedded broker."""

from __future__ import annotations

import io
import json
import struct
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import fastavro
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from producers.client import topic_for
from schemas.convert import from_avro, to_avro
from schemas.records import (
    Alert,
    AlertAction,
    AlertType,
    Checkpoint,
    CheckpointKind,
    Conveyance,
    ConveyanceKind,
    Crossing,
    DeadLetter,
    Direction,
    Document,
    DocumentType,
    EntryBasis,
    EntryBasisKind,
    HostKind,
    Purpose,
    Registration,
    RegistrationAction,
    Severity,
    Sex,
    StatusChange,
    StatusChangeKind,
    Stay,
    Traveller,
)
from schemas.serde import DecodeError, Record, Serde, registry_client, schema_for, schema_versions
from shekara.settings import Settings

NOW = datetime(2025, 6, 1, 8, 30, 15, 123456, tzinfo=UTC)


def traveller(number: str = "N1234567", country: str = "UZB") -> Traveller:
    return Traveller(Document(DocumentType.PASSPORT, number, country), country, date(1990, 5, 17), Sex.M)


def sample_crossing(**kw: Any) -> Crossing:
    values: dict[str, Any] = {
        "event_id": "c-1",
        "event_time": NOW,
        "received_time": NOW + timedelta(minutes=3),
        "checkpoint": Checkpoint("KZ-UZ-ZHIBEK-ZHOLY", CheckpointKind.ROAD, "UZB"),
        "direction": Direction.ENTRY,
        "traveller": traveller(),
        "purpose": Purpose.TRANSIT,
        "entry_basis": EntryBasis(EntryBasisKind.VISA, date(2025, 6, 30), "V-778"),
        "source_system": "berkut",
        "declared_destination": "RUS",
        "planned_exit_checkpoint": "KZ-RU-PETUKHOVO",
        "migration_card_number": "MC-1",
        "conveyance": Conveyance(ConveyanceKind.BUS, "01KZ123"),
        "source_record_id": "B-42",
    }
    values.update(kw)
    return Crossing(**values)


def sample_registration(**kw: Any) -> Registration:
    values: dict[str, Any] = {
        "event_id": "r-1",
        "event_time": NOW,
        "received_time": NOW,
        "action": RegistrationAction.REGISTERED,
        "registration_id": "EQ-9",
        "traveller": traveller("AB998877", "CHN"),
        "host_kind": HostKind.HOTEL,
        "host_id": "HOTEL-77",
        "region": "KZ-75",
        "address": "Abay ave 1, Almaty",
        "valid_from": date(2025, 6, 1),
        "valid_until": date(2025, 6, 20),
        "source_system": "eqonaq",
    }
    values.update(kw)
    return Registration(**values)


def sample_status_change(**kw: Any) -> StatusChange:
    values: dict[str, Any] = {
        "event_id": "s-1",
        "event_time": NOW,
        "received_time": NOW,
        "kind": StatusChangeKind.EXPELLED,
        "traveller": traveller("TJ1234567", "TJK"),
        "authority": "MVD Almaty",
        "source_system": "mvd",
        "valid_from": date(2025, 6, 2),
        "valid_until": date(2030, 6, 2),
        "reference": "DEC-5",
    }
    values.update(kw)
    return StatusChange(**values)


def sample_alert() -> Alert:
    return Alert(
        "a" * 32,
        AlertAction.RAISED,
        AlertType.IN_COUNTRY_OVERSTAY,
        Severity.HIGH,
        "k" * 32,
        "UZB",
        None,
        ["c-1", "c-2"],
        "stay.visa_free",
        "2023-01-27",
        "stayed 35 days, 30 allowed",
        NOW,
        NOW + timedelta(seconds=1),
        5,
        {"allowed_days": "30"},
    )


def sample_stay() -> Stay:
    return Stay(
        "s" * 32,
        2,
        "k" * 32,
        "UZB",
        EntryBasisKind.VISA_FREE,
        Purpose.WORK,
        "c-1",
        None,
        NOW,
        None,
        "KZ-ROAD-1",
        None,
        12,
        30,
        0,
        "stay.visa_free",
        "2023-01-27",
        NOW,
    )


def sample_dead_letter() -> DeadLetter:
    return DeadLetter("shekara.crossings", 3, 1234, b"key", b"\xc3\x01garbage", "decode", "bad magic", None, NOW)


def samples() -> list[Record]:
    return [
        sample_crossing(),
        sample_crossing(conveyance=None, declared_destination=None, source_record_id=None),
        sample_registration(),
        sample_status_change(),
        sample_alert(),
        sample_stay(),
        sample_dead_letter(),
    ]


def registry_serde() -> Serde:
    return Serde.from_settings(Settings(schema_registry_url="mock://test-serde"))


# --- converters -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("record", samples(), ids=lambda r: type(r).__name__)
def test_convert_round_trip_and_schema_valid(record: Record) -> None:
    d = to_avro(record)
    assert fastavro.validate(d, schema_for(type(record)), raise_errors=True)
    assert from_avro(type(record), d) == record


def test_from_avro_names_missing_field() -> None:
    d = to_avro(sample_crossing())
    del d["direction"]
    with pytest.raises(ValueError, match="direction"):
        from_avro(Crossing, d)


# --- single-object encoding (embedded default) ------------------------------------------------------------


@pytest.mark.parametrize("record", samples(), ids=lambda r: type(r).__name__)
def test_single_object_round_trip(record: Record) -> None:
    serde = Serde()
    data = serde.encode(record, "t")
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == schema_versions()[type(record).__name__][-1].fingerprint
    assert serde.decode(data, "t") == record
    name, d = serde.decode_dict(data, "t")
    assert name == type(record).__name__ and d == to_avro(record)


def test_single_object_body_is_plain_avro() -> None:
    """The body after the 10-byte header is the schemaless Avro encoding any Avro library can read."""
    record = sample_registration()
    data = Serde().encode(record, "t")
    body = fastavro.schemaless_reader(io.BytesIO(data[10:]), schema_for(Registration), None)
    assert body["host_id"] == "HOTEL-77" and body["valid_until"] == date(2025, 6, 20)


def _encode_with_version(record: Crossing | Alert, version: int) -> bytes:
    sv = schema_versions()[type(record).__name__][version - 1]
    d = {k: v for k, v in to_avro(record).items() if k in {f["name"] for f in sv.raw["fields"]}}
    buf = io.BytesIO(b"\xc3\x01" + sv.fingerprint)
    buf.seek(0, 2)
    fastavro.schemaless_writer(buf, sv.parsed, d)
    return buf.getvalue()


def test_older_writer_version_resolves_to_latest() -> None:
    record = sample_crossing()
    data = _encode_with_version(record, 1)
    decoded = Serde().decode(data, "t")
    assert isinstance(decoded, Crossing)
    assert decoded.source_record_id is None  # the v2 field, defaulted
    assert decoded == sample_crossing(source_record_id=None)


def test_an_alert_written_before_revisions_reads_revision_0() -> None:
    """Alert v2 numbers an alert's records; a v1 record (no revision) reads 0, as the warehouse stores it."""
    revised = replace(sample_alert(), action=AlertAction.RESOLVED, revision=3)
    assert Serde().decode(Serde().encode(revised, "t"), "t") == revised
    decoded = Serde().decode(_encode_with_version(revised, 1), "t")
    assert isinstance(decoded, Alert) and decoded == replace(revised, revision=0)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty message"),
        (b"\x7bjson", "bad magic byte 0x7b"),
        (b"\xc3\x01\x00", "truncated single-object header"),
        (b"\xc3\x01" + b"\x00" * 8 + b"body", "unknown schema fingerprint 0000000000000000"),
        (b"\x00\x00\x00\x00\x07body", "no schema registry is configured"),
    ],
)
def test_decode_errors_say_what_is_wrong(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        Serde().decode(data, "t")
    assert reason in info.value.reason


def test_truncated_and_padded_bodies_are_rejected() -> None:
    data = Serde().encode(sample_crossing(), "t")
    with pytest.raises(DecodeError, match="truncated or corrupt Crossing v2 body"):
        Serde().decode(data[:-4], "t")
    with pytest.raises(DecodeError, match="2 bytes left over"):
        Serde().decode(data + b"\x00\x00", "t")


def test_a_string_that_is_not_utf8_is_rejected_without_quoting_its_bytes() -> None:
    # fastavro's UnicodeDecodeError carries the string's bytes: a document number, in clear, which would
    # reach the dead letter's reason and the warehouse.
    crossing = sample_crossing()
    name = crossing.traveller.document.number
    data = Serde().encode(crossing, "t")
    assert name.encode() in data
    at = data.index(name.encode())
    with pytest.raises(DecodeError) as info:
        Serde().decode(data[:at] + b"\xff" + data[at + 1 :], "t")
    assert "not UTF-8" in info.value.reason
    assert name[1:] not in info.value.reason and name[1:] not in str(info.value)


# --- Confluent wire format with the in-process mock registry ------------------------------------------------


@pytest.mark.parametrize("record", samples(), ids=lambda r: type(r).__name__)
def test_confluent_round_trip_with_mock_registry(record: Record) -> None:
    serde = registry_serde()
    topic = f"t-{type(record).__name__}"
    data = serde.encode(record, topic)
    assert data[0] == 0
    schema_id = struct.unpack(">I", data[1:5])[0]
    registered = registry_client("mock://test-serde").get_latest_version(f"{topic}-value")
    assert registered.schema_id == schema_id
    assert json.loads(registered.schema.schema_str)["name"] == type(record).__name__
    assert serde.decode(data, topic) == record
    assert serde.decode_dict(data, topic) == (type(record).__name__, to_avro(record))


def test_readers_accept_both_formats_in_either_mode() -> None:
    record = sample_status_change()
    plain, registry = Serde(), registry_serde()
    assert registry.decode(plain.encode(record, "t1"), "t1") == record
    assert plain.decode(plain.encode(record, "t1"), "t1") == record
    assert registry.decode(registry.encode(record, "t1"), "t1") == record


def test_confluent_older_version_resolves_to_latest() -> None:
    """A producer still on Crossing v1 registers v1 under the subject; a reader on v2 reads it."""
    client = registry_client("mock://test-serde-v1")
    v1 = schema_versions()["Crossing"][0]
    old_producer = AvroSerializer(client, json.dumps(v1.raw), conf={"subject.name.strategy.type": "TOPIC"})
    record = sample_crossing(source_record_id=None)
    v1_dict = {k: v for k, v in to_avro(record).items() if k != "source_record_id"}
    data = old_producer(v1_dict, SerializationContext("old", MessageField.VALUE))
    assert data is not None
    new = Serde(client)
    assert new.decode(data, "old") == record
    assert new.encode(record, "old") != data  # the v2 writer registered a new schema version
    assert client.get_latest_version("old-value").version == 2


@pytest.mark.parametrize("bad", [-1, -5, 99])
def test_confluent_body_with_a_corrupt_enum_index_is_a_decode_error(bad: int) -> None:
    """Registry mode too: fastavro alone (confluent-kafka's AvroDeserializer) reads index -1 as the last symbol."""
    from tests.schemas.test_serde_enums import _bytes_with, _enum_sites

    record = sample_crossing()
    serde = registry_serde()
    framed = serde.encode(record, "t-enum")  # registers the schema: its id is in the first five bytes
    path, _ = next(iter(_enum_sites(schema_versions()["Crossing"][-1].raw, to_avro(record), {}, "")))
    good, corrupt = (_bytes_with(record, p, b)[10:] for p, b in (("", 0), (path, bad)))
    assert serde.decode(framed[:5] + good, "t-enum") == record  # the hand-made body is right when valid
    with pytest.raises(DecodeError) as caught:
        serde.decode(framed[:5] + corrupt, "t-enum")
    assert f"{path}: enum" in caught.value.reason and f"index {bad} is out of range" in caught.value.reason
    assert caught.value.reason.startswith("corrupt Confluent-framed Crossing (schema id ")
    with pytest.raises(DecodeError, match="bytes left over"):
        serde.decode(framed + b"\x00", "t-enum")


def test_confluent_unknown_schema_id() -> None:
    with pytest.raises(DecodeError, match="unknown schema id 999"):
        registry_serde().decode(b"\x00\x00\x00\x03\xe7body", "t")


_FUZZ_SERDES = {"single-object": Serde(), "registry": Serde.from_settings(Settings(schema_registry_url="mock://fuzz"))}
_FUZZ_INPUTS = [(mode, serde.encode(r, "fuzz")) for mode, serde in _FUZZ_SERDES.items() for r in samples()]


@hypothesis_settings(max_examples=400, deadline=None)
@given(which=st.integers(0, len(_FUZZ_INPUTS) - 1), cut=st.integers(0, 300), noise=st.binary(max_size=48))
def test_damaged_messages_raise_decode_error_and_nothing_else(which: int, cut: int, noise: bytes) -> None:
    """Truncated or garbled bytes never crash a reader: they decode (if still valid Avro) or raise DecodeError."""
    mode, data = _FUZZ_INPUTS[which]
    damaged = data[:cut] + noise
    try:
        record = _FUZZ_SERDES[mode].decode(damaged, "fuzz")
    except DecodeError as exc:
        assert exc.reason
    else:
        assert type(record).__name__ in {"Crossing", "Registration", "StatusChange", "Alert", "Stay", "DeadLetter"}


# --- through the real broker ------------------------------------------------------------------------------


def _consume_all(settings: Settings, topic: str, expected: int, timeout: float = 20.0) -> list[Any]:
    consumer = Consumer(
        {"bootstrap.servers": settings.bootstrap_servers, "group.id": f"test-{topic}", "enable.auto.commit": False}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=5).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out: list[Any] = []
        import time

        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                out.append(msg)
        return out
    finally:
        consumer.close()


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["single-object", "registry"])
def test_every_record_type_round_trips_through_the_broker(settings: Settings, mode: str) -> None:
    serde = Serde() if mode == "single-object" else Serde.from_settings(Settings(schema_registry_url="mock://broker"))
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "enable.idempotence": True})
    records = samples()
    for record in records:
        topic = topic_for(record, settings)
        producer.produce(topic, serde.encode(record, topic), key=type(record).__name__.encode())
    assert producer.flush(15) == 0
    received: list[Record] = []
    for topic in sorted({topic_for(r, settings) for r in records}):
        expected = sum(1 for r in records if topic_for(r, settings) == topic)
        msgs = _consume_all(settings, topic, expected)
        received.extend(serde.decode(m.value(), topic) for m in msgs)
    assert sorted(map(repr, received)) == sorted(map(repr, records))
