"""Where a source event belongs (CRC-32 of its key modulo the partition count), and topics with the right counts.

- `partition_of` is what librdkafka's default partitioner does, checked against a real broker's placement.
- The publish client names that partition; the processors' intake refuses an event read from another one.
- After the in-memory broker restarts, `ensure_topics` makes the catalogue again, or refuses in one line when a
  client made a topic first with the broker's default count (sink parity: tests/sinks/test_sink_parity.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from harness import samples
from producers.client import EventProducer, key_for
from schemas.serde import Serde
from shekara.admin import WrongLayout, admin_client, ensure_topics, wait_for_broker
from shekara.embedded import free_port, launch
from shekara.partitioning import misplaced, partition_of
from shekara.settings import Settings
from shekara.topics import catalogue
from streams.intake import Accepted, Intake, Rejected

# --- pure ---------------------------------------------------------------------------------------------------


def test_partition_of_is_crc32_of_the_key_modulo_the_count() -> None:
    key = b"0123456789abcdef0123456789abcdef"
    assert partition_of(key, 8) == zlib.crc32(key) % 8
    assert {partition_of(f"k{i}".encode(), 8) for i in range(200)} == set(range(8))  # every partition is used
    assert partition_of(key, 1) == 0


def test_misplaced_names_both_partitions_and_the_rule() -> None:
    key = b"some key"
    home = partition_of(key, 8)
    assert misplaced(key, home, 8) is None
    assert misplaced(key, (home + 3) % 8, 8) == (
        f"on partition {(home + 3) % 8}; its key belongs on partition {home} of 8"
        " (CRC-32 of the key modulo the partition count)"
    )


def test_the_intake_refuses_an_event_read_off_its_keys_partition() -> None:
    s = Settings()
    serde = Serde.from_settings(s)
    intake = Intake(s, serde)
    record = samples.crossing("on-partition", event_time=samples.NOW)
    key, value, topic = key_for(record), serde.encode(record, s.topics.crossings), s.topics.crossings
    home = partition_of(key, s.partitions)
    now = datetime.now(UTC)
    assert isinstance(intake.admit(topic, key, value, now=now, partition=home), Accepted)
    assert isinstance(intake.admit(topic, key, value, now=now), Accepted)  # no partition given: not checked
    away = intake.admit(topic, key, value, now=now, partition=(home + 1) % s.partitions)
    assert isinstance(away, Rejected) and (away.stage, away.field) == ("validate", "partition")
    assert away.reason == misplaced(key, (home + 1) % s.partitions, s.partitions)
    # A wrong key read from its own partition is still a wrong key; with no key the key check names it.
    other = intake.admit(topic, b"other", value, now=now, partition=partition_of(b"other", s.partitions))
    assert isinstance(other, Rejected) and other.field == "key"
    assert getattr(intake.admit(topic, None, value, now=now, partition=5), "field", None) == "key"


# --- on the broker ------------------------------------------------------------------------------------------

pytest_broker = pytest.mark.integration


@pytest_broker
def test_librdkafkas_default_placement_is_partition_of(settings: Settings) -> None:
    """What a librdkafka producer that leaves partitioning to the client does agrees with `partition_of`."""
    placed: list[tuple[bytes, int]] = []

    def report(err: object, m: Message) -> None:
        placed.append((m.key() or b"", m.partition() or 0))

    p = Producer({"bootstrap.servers": settings.bootstrap_servers})
    for i in range(300):
        key = f"traveller-{i}".encode()
        p.produce(settings.topics.alert_actions, b"v", key, on_delivery=report)
    assert p.flush(10) == 0
    assert len(placed) == 300
    assert all(partition == partition_of(key, settings.partitions) for key, partition in placed)
    assert len({partition for _, partition in placed}) == settings.partitions


@pytest_broker
def test_the_publish_client_puts_each_event_on_its_keys_partition(settings: Settings) -> None:
    records = [samples.crossing(f"placed-{i}", traveller=samples.traveller(f"PL{i:06d}")) for i in range(40)]
    with EventProducer(settings, spool=False) as producer:
        for r in records:
            producer.publish(r)
    assert producer.stats["sent"] == len(records)
    conf = {"bootstrap.servers": settings.bootstrap_servers, "group.id": "placed", "enable.auto.commit": False}
    consumer = Consumer(conf)
    try:
        topic = settings.topics.crossings
        consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.partitions)])
        seen: dict[bytes, int] = {}
        for _ in range(100):
            for m in consumer.consume(100, timeout=0.5):
                if m.error() is None:
                    seen[m.key() or b""] = m.partition() or 0
            if len(seen) == len(records):
                break
    finally:
        consumer.close()
    assert len(seen) == len(records)
    assert all(partition == partition_of(key, settings.partitions) for key, partition in seen.items())
    assert len(set(seen.values())) > 1  # not all on one partition: the key decides


def _counts(s: Settings) -> dict[str, int]:
    topics = admin_client(s).list_topics(timeout=10).topics
    return {name: len(t.partitions) for name, t in topics.items()}


@pytest_broker
def test_after_a_broker_restart_the_topics_are_made_again_or_refused_in_one_line(tmp_path: Path) -> None:
    """A restarted in-memory broker is empty: topics a client makes by using them get Tansu's default count."""
    port = free_port()
    s = Settings(broker_url=f"kafka://127.0.0.1:{port}", data_dir=tmp_path / "var", partitions=8)
    wanted = {spec.name: spec.partitions for spec in catalogue(s)}
    broker = launch(port, tmp_path / "broker.log")
    try:
        wait_for_broker(s)
        ensure_topics(s)
        assert {n: c for n, c in _counts(s).items() if n in wanted} == wanted
        broker.stop()
        # A real restart on the same port, before any client: the project makes its topics again, as they were.
        broker = launch(port, tmp_path / "broker.log")
        wait_for_broker(s)
        assert ensure_topics(s) and {n: c for n, c in _counts(s).items() if n in wanted} == wanted
        broker.stop()
        # Again, but a client (librdkafka's default: auto-create on) asks for a source topic first.
        broker = launch(port, tmp_path / "broker.log")
        wait_for_broker(s)
        Producer({"bootstrap.servers": s.bootstrap_servers}).list_topics(s.topics.crossings, timeout=5)
        made_by_client = _counts(s)[s.topics.crossings]
        assert made_by_client != 8  # the broker's default, not the catalogue's
        with pytest.raises(WrongLayout) as refused:
            ensure_topics(s)
        line = str(refused.value)
        assert "\n" not in line
        assert f"topic {s.topics.crossings} has {made_by_client} partitions, the catalogue 8" in line
        assert "restart `shekara up`" in line
        # The command says the same line and exits 2, no traceback.
        env = {**os.environ, "SHEKARA_BROKER_URL": s.broker_url, "SHEKARA_DATA_DIR": str(tmp_path / "var")}
        done = subprocess.run(
            [sys.executable, "-m", "harness.cli", "topics"], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip() == f"error: {line}"
    finally:
        broker.stop()
