"""`sinks.sink.owner` asks the processors' intake about a source record ClickHouse refused at staging."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.serde import Serde
from shekara.partitioning import partition_of
from shekara.pseudonym import partition_key
from shekara.settings import Settings, TopicNames
from sinks.batch import Message, Rejected
from sinks.sink import owner
from streams.intake import Accepted, Intake
from tests.schemas.test_serde import sample_crossing
from tests.schemas.test_serde_enums import _bytes_with

SOURCES = frozenset({"crossings", "registrations", "status-changes"})
REFUSED = "ClickHouse cannot read the record: Cannot parse Avro"


def _settings() -> Settings:
    return Settings(
        topics=TopicNames(crossings="crossings", registrations="registrations", status_changes="status-changes")
    )


def _refused_at_staging(key: bytes, value: bytes, ms: int | None) -> Rejected:
    # on its key's partition: the intake refuses an event anywhere else (shekara.partitioning)
    return Rejected(Message("crossings", partition_of(key, Settings().partitions), 7, key, value, ms), "sink", REFUSED)


def test_a_source_record_clickhouse_alone_refuses_is_the_sinks() -> None:
    s = _settings()
    intake = Intake(s, Serde())
    record = sample_crossing()
    doc = record.traveller.document
    key = partition_key(doc.issuing_country, doc.number).encode()
    value = Serde().encode(record, "crossings")
    ms = int(record.received_time.timestamp() * 1000) + 60_000
    assert isinstance(intake.admit("crossings", key, value, now=datetime.fromtimestamp(ms / 1000, UTC)), Accepted)
    assert owner(_refused_at_staging(key, value, ms), SOURCES, "dead", intake) == "sink"


def test_a_source_record_the_intake_refuses_too_is_the_processors() -> None:
    s = _settings()
    intake = Intake(s, Serde())
    record = sample_crossing()
    doc = record.traveller.document
    key = partition_key(doc.issuing_country, doc.number).encode()
    ms = int(record.received_time.timestamp() * 1000) + 60_000
    path = "direction"
    bad_enum = _bytes_with(record, path, -1)  # ClickHouse: unreadable Avro; fastavro alone read it as a symbol
    assert owner(_refused_at_staging(key, bad_enum, ms), SOURCES, "dead", intake) == "processors"
    good = Serde().encode(record, "crossings")
    assert owner(_refused_at_staging(b"another key", good, ms), SOURCES, "dead", intake) == "processors"
    assert owner(_refused_at_staging(key, good, None), SOURCES, "dead", intake) == "sink"  # no timestamp: now
    # without an intake to ask (the old rule), a refusal at staging stays the sink's
    assert owner(_refused_at_staging(key, bad_enum, ms), SOURCES, "dead") == "sink"
    # the processors' outputs are the sink's whatever the intake would say
    out = Rejected(Message("alerts", 0, 1, key, bad_enum, ms), "sink", REFUSED)
    assert owner(out, SOURCES, "dead", intake) == "sink"
