"""`--to-kafka`: a run published to the real embedded broker through the producer client."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import date

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from harness.simulator import FaultRates, SimulationConfig, simulate
from harness.simulator.kafka import publish
from schemas.serde import DecodeError, Serde
from shekara.settings import Settings


def _consume(settings: Settings, topics: list[str], want: int, timeout: float = 60.0) -> list[tuple[str, bytes, bytes]]:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"sim-test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    # Assigned partitions, no group join (joins are slow on the embedded broker).
    consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in range(settings.partitions)])
    out: list[tuple[str, bytes, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < want and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=1.0):
                if msg.error() is None:
                    out.append((msg.topic(), msg.key(), msg.value()))
    finally:
        consumer.close()
    return out


@pytest.mark.integration
def test_publish_sends_every_message_as_the_stream_says(settings: Settings) -> None:
    faults = FaultRates(duplicate=0.02, malformed=0.02)  # enough of both in a small run
    config = SimulationConfig(days=2, seed=13, scale=0.002, faults=faults, pseudonym_key=settings.pseudonym_key_bytes)
    stream = list(simulate(config))
    summary = publish(config, settings, speed=None, progress=False)
    assert summary.messages == len(stream) and summary.rejected_by_client == 0
    t = settings.topics
    got = _consume(settings, [t.crossings, t.registrations, t.status_changes], len(stream))
    assert len(got) == len(stream)
    serde = Serde.from_settings(settings)
    topic_of = {"crossing": t.crossings, "registration": t.registrations, "status_change": t.status_changes}
    want_ids = Counter((topic_of[ev.kind], ev.record.event_id) for ev in stream if ev.record is not None)
    want_raw = Counter((topic_of[ev.kind], ev.raw) for ev in stream if ev.raw is not None)
    assert sum(want_raw.values()) > 0
    got_ids: Counter[tuple[str, str]] = Counter()
    got_raw: Counter[tuple[str, bytes]] = Counter()
    for topic, key, value in got:
        try:
            record = serde.decode(value, topic)
        except DecodeError:
            got_raw[(topic, value)] += 1
            continue
        if (topic, value) in want_raw:  # a malformed payload that decodes (it fails validation downstream)
            got_raw[(topic, value)] += 1
            continue
        got_ids[(topic, record.event_id)] += 1
        assert key is not None and len(key) == 32
    assert got_ids == want_ids  # duplicates included
    assert got_raw == want_raw


@pytest.mark.integration
def test_publish_paces_by_speed(settings: Settings) -> None:
    config = SimulationConfig(days=1, seed=3, scale=0.0005, pseudonym_key=settings.pseudonym_key_bytes)
    # one simulated day at 86,400 simulated seconds per second: about a second of wall time
    started = time.monotonic()
    summary = publish(config, settings, speed=86_400.0, progress=False)
    elapsed = time.monotonic() - started
    assert summary.messages > 0
    assert elapsed >= 0.5


def test_publish_refuses_a_period_in_the_future() -> None:
    config = SimulationConfig(days=3, seed=1, scale=0.001, start=date(2099, 1, 1), pseudonym_key=b"k")
    with pytest.raises(ValueError, match="future"):
        publish(config, Settings(), speed=None, progress=False)
