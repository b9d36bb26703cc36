"""The producer client against the real embedded broker: round trip, rejection, keying, and no loss and no
reordering when the broker goes away and comes back (spooled to disk meanwhile)."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from producers import build
from producers.client import EventProducer, key_for, topic_for
from producers.spool import Spool, SpoolBusyError
from schemas.records import Crossing
from schemas.serde import Serde
from schemas.validation import ValidationError
from shekara.admin import ensure_topics, wait_for_broker
from shekara.embedded import EmbeddedBroker, free_port, launch
from shekara.pseudonym import partition_key
from shekara.settings import Settings, TopicNames
from tests.schemas.test_serde import _consume_all, sample_crossing, sample_registration, sample_status_change

pytestmark = pytest.mark.integration


def own_settings(tmp_path: Path, port: int) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    names = {k: f"{v}.{suffix}" for k, v in TopicNames().model_dump().items()}
    return Settings(
        broker_url=f"kafka://127.0.0.1:{port}", data_dir=tmp_path / "var", partitions=4, topics=TopicNames(**names)
    )


def crossing(seq: int, traveller: int) -> Crossing:
    return build.crossing(
        checkpoint_id="KZ-KG-KORDAI",
        checkpoint_kind="ROAD",
        border_country="KGZ",
        direction="ENTRY" if seq % 2 == 0 else "EXIT",
        document_number=f"AC{traveller:07d}",
        issuing_country="KGZ",
        birth_date="1991-04-05",
        sex="F",
        purpose="PRIVATE",
        entry_basis="VISA_FREE",
        source_system="berkut",
        source_record_id=str(seq),
    )


def kill(broker: EmbeddedBroker) -> None:
    """Clean-up only (the outage itself uses a graceful stop): Tansu takes seconds to exit on SIGTERM."""
    broker.process.kill()
    broker.process.wait()


def wait_until(condition: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def sequences_by_key(settings: Settings, expected: int) -> dict[bytes, list[int]]:
    """Consumed crossings per key, as the source sequence numbers, in partition (delivery) order."""
    serde = Serde()
    by_key: dict[bytes, list[int]] = defaultdict(list)
    for msg in _consume_all(settings, settings.topics.crossings, expected, timeout=30):
        record = serde.decode(msg.value(), msg.topic())
        assert isinstance(record, Crossing) and record.source_record_id is not None
        by_key[msg.key()].append(int(record.source_record_id))
    return by_key


def test_round_trip_of_each_source_event(settings: Settings) -> None:
    records = [sample_crossing(), sample_registration(), sample_status_change()]
    with EventProducer(settings, spool=False) as producer:
        for record in records:
            producer.publish(record)
        assert producer.flush(15) == 0
        assert producer.stats["accepted"] == producer.stats["sent"] == 3
    serde = Serde()
    for record in records:
        topic = topic_for(record, settings)
        [msg] = _consume_all(settings, topic, 1)
        assert msg.key() == key_for(record)
        assert serde.decode(msg.value(), topic) == record


def test_key_is_the_public_partition_key_of_the_document() -> None:
    a, b = crossing(1, 7), crossing(2, 7)
    key = key_for(a)
    assert key == key_for(b) and len(key) == 32
    assert key == partition_key(a.traveller.document.issuing_country, "ac 000-0007").encode()  # normalised
    assert b"AC0000007" not in key  # the document number never travels in clear in the key
    assert key != key_for(crossing(1, 8))


def test_invalid_event_is_rejected_with_the_field(settings: Settings) -> None:
    with EventProducer(settings, spool=False) as producer:
        bad = sample_registration(region="Almaty")
        with pytest.raises(ValidationError) as info:
            producer.publish(bad)
        assert info.value.field == "region"
        assert producer.stats["rejected"] == 1 and producer.stats["accepted"] == 0
        assert producer.flush(5) == 0
    assert _consume_all(settings, settings.topics.registrations, 1, timeout=1.5) == []


def test_one_travellers_events_stay_in_order_on_one_partition(settings: Settings) -> None:
    with EventProducer(settings) as producer:
        for seq in range(300):
            producer.publish(crossing(seq, seq % 5))
        assert producer.flush(15) == 0
    by_key = sequences_by_key(settings, 300)
    assert len(by_key) == 5
    for seqs in by_key.values():
        assert seqs == sorted(seqs) and len(seqs) == 60


@pytest.mark.slow
def test_outage_spools_then_delivers_everything_in_order(tmp_path: Path) -> None:
    port = free_port()
    broker = launch(port)
    settings = own_settings(tmp_path, port)
    try:
        wait_for_broker(settings)
        ensure_topics(settings)
        with EventProducer(settings) as producer:
            for seq in range(100):
                producer.publish(crossing(seq, seq % 7))
            assert producer.flush(15) == 0  # delivered to the first broker (lost with it: Tansu is in memory)

            broker.stop()
            for seq in range(100, 400):
                producer.publish(crossing(seq, seq % 7))
            assert wait_until(lambda: producer.spooling)
            assert producer.flush(1) > 0  # nowhere to send

            broker = launch(port)
            wait_for_broker(settings)
            # Topics are not back yet, so the spool cannot drain: these must queue behind it.
            for seq in range(400, 500):
                producer.publish(crossing(seq, seq % 7))
            assert producer.spooling
            ensure_topics(settings)
            assert producer.flush(30) == 0
            assert producer.stats["accepted"] == 500
            assert producer.stats["spooled"] == producer.stats["drained"] == 400
            assert wait_until(lambda: not producer.spooling)
        by_key = sequences_by_key(settings, 400)
        delivered = sorted(s for seqs in by_key.values() for s in seqs)
        assert delivered == list(range(100, 500))  # nothing lost, nothing twice
        for seqs in by_key.values():
            assert seqs == sorted(seqs)  # and each traveller's events in the order published
    finally:
        kill(broker)


@pytest.mark.slow
def test_spool_survives_a_producer_restart(tmp_path: Path) -> None:
    port = free_port()  # nothing listens here yet: the broker is unreachable from the start
    settings = own_settings(tmp_path, port)
    first = EventProducer(settings)
    for seq in range(50):
        first.publish(crossing(seq, seq % 3))
    assert wait_until(lambda: first.spooling)
    first.close(timeout=0.5)
    spool = Spool(first.spool_dir)
    assert len(spool) == 50
    spool.close()

    broker = launch(port)
    try:
        wait_for_broker(settings)
        ensure_topics(settings)
        with EventProducer(settings) as second:
            assert second.spooling  # resumes behind the spooled events
            for seq in range(50, 60):
                second.publish(crossing(seq, seq % 3))
            assert second.flush(30) == 0
            assert second.stats["drained"] == 60
        by_key = sequences_by_key(settings, 60)
        assert sorted(s for seqs in by_key.values() for s in seqs) == list(range(60))
        for seqs in by_key.values():
            assert seqs == sorted(seqs)
    finally:
        kill(broker)


def test_a_spool_has_one_owner(settings: Settings) -> None:
    with EventProducer(settings, client_id="owner") as producer:
        with pytest.raises(SpoolBusyError, match="in use by another process"):
            EventProducer(settings, client_id="owner")
        assert producer.spool_dir == settings.spool_dir / "owner"
    EventProducer(settings, client_id="owner").close()  # free again once the first one closed


def test_registry_mode_publishes_confluent_wire_format(settings: Settings) -> None:
    registry_settings = settings.model_copy(update={"schema_registry_url": "mock://producer-test"})
    record = sample_status_change()
    with EventProducer(registry_settings, spool=False) as producer:
        producer.publish(record)
        assert producer.flush(10) == 0
    [msg] = _consume_all(settings, settings.topics.status_changes, 1)
    assert msg.value()[0] == 0
    assert Serde.from_settings(registry_settings).decode(msg.value(), msg.topic()) == record
