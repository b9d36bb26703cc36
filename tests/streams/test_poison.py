"""No single message stops a processor partition (issue 15, item 1), against the real broker and a real worker.

Poison messages (500 KB keys, 950 KB values, key and value near 1 MB together, a 3 MB value, a 20 MB key) sit on
every source topic and on address-registrations ahead of ordinary events of the same partition. The worker must
dead-letter each poison message once, with its reason and a bounded payload, process the ordinary events after
them, and a restarted worker must not meet the poison again (its offsets were committed past). Before the fix the
first one made the worker fatal on every restart: its dead letter was over librdkafka's 1 MB message limit.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from confluent_kafka import Producer

from harness import readback
from schemas.records import Crossing, Direction
from schemas.serde import Serde
from shekara.partitioning import partition_of
from shekara.pseudonym import partition_key
from shekara.settings import Settings
from streams.worker import read_status
from tests.conftest import one_partition
from tests.streams.test_topology import NOW, crossing, wait_for, worker


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return one_partition(settings)  # every event on partition 0, where its key belongs


pytestmark = pytest.mark.integration

BIG_KEY = b"k" * 500_000
BIG_VALUE = b"\x00" + b"v" * 949_999  # over the 900 KB value limit, under the broker's 1 MB


def _encoded(settings: Settings, record: Crossing) -> tuple[str, bytes, bytes]:
    topic = settings.topics.crossings
    key = partition_key(record.traveller.document.issuing_country, record.traveller.document.number).encode()
    return topic, key, Serde.from_settings(settings).encode(record, topic)


def _publish(settings: Settings, items: list[tuple[str, bytes | None, bytes | None]]) -> None:
    # The producer's own limit (1 MB) is raised to let them all through; the embedded broker has none this low.
    p = Producer({"bootstrap.servers": settings.bootstrap_servers, "message.max.bytes": 100_000_000})
    for topic, key, value in items:
        # on the key's partition, as the publish client puts it: the intake refuses an event anywhere else
        p.produce(topic, key=key, value=value, partition=partition_of(key, settings.partitions) if key else 0)
    assert p.flush(20) == 0


@pytest.mark.slow
def test_poison_messages_are_dead_lettered_once_and_the_partition_goes_on(settings: Settings, tmp_path: Path) -> None:
    s = settings.model_copy(update={"allowed_lateness_seconds": 2})
    s.faust = s.faust.model_copy(update={"web_enabled": False})
    t = s.topics
    topics = [t.crossings, t.registrations, t.status_changes, t.address_registrations]
    valid = _encoded(s, crossing("ok-1", "PP0000001", NOW - timedelta(days=3), Direction.ENTRY))[2]
    poison: list[tuple[str, bytes | None, bytes | None]] = [
        (t.crossings, BIG_KEY, valid),  # a valid event under a 500 KB key
        (t.crossings, b"small", BIG_VALUE),  # a 950 KB value
        (t.crossings, b"K" * 400_000, b"\x00" + b"w" * 580_000),  # key and value near the broker's limit together
        (t.registrations, BIG_KEY, b"\x00"),  # the other sources and the address stage: the same
        (t.status_changes, None, BIG_VALUE),
        (t.address_registrations, BIG_KEY, b"\x00"),
        # The embedded broker takes far larger messages than Kafka's default 1 MB: 20 MB here.
        (t.crossings, b"huge", b"\x00" * 3_000_000),
        (t.registrations, b"x" * 20_000_000, b"\x00"),
    ]
    after = [
        _encoded(s, crossing("in-1", "PP0000001", NOW - timedelta(days=3), Direction.ENTRY)),
        _encoded(s, crossing("out-1", "PP0000001", NOW - timedelta(days=1), Direction.EXIT)),
    ]
    _publish(s, [*poison, *after])

    with worker(s, tmp_path, "poison-test", "first") as status:
        progress = readback.GroupProgress(s, "poison-test", topics)
        stays = wait_for(lambda: readback.read_stays(s), timeout=90)
        progress.wait_until_caught_up(timeout=60)
        dead = readback.read_dead_letters(s)
        alive = read_status(status)
    assert alive is not None and time.time() - alive["updated"] < 10  # still running and writing its status

    # The ordinary events after the poison were processed: P's stay closed (P is the only valid traveller).
    assert [(st.entry_event_id, st.exit_event_id) for st in stays.values()] == [("in-1", "out-1")]
    # Each poison message dead-lettered exactly once, with its reason, its coordinates and a bounded payload.
    got = {(d.source_topic, d.source_offset): d for d in dead}
    assert len(dead) == len(got) == 8
    assert {(tp, f) for (tp, _), f in ((k, d.field) for k, d in got.items())} == {
        (t.crossings, "key"),
        (t.crossings, "value"),
        (t.registrations, "key"),
        (t.status_changes, "value"),
        (t.address_registrations, None),  # the address stage's dead letters name no field; the reason says it
    }
    first = got[t.crossings, 0]
    assert first.stage == "validate" and first.reason.startswith("message key is 500000 bytes, more than the limit")
    assert got[t.crossings, 1].reason.startswith("message value is 950000 bytes")
    assert got[t.crossings, 2].field == "key"
    assert got[t.address_registrations, 0].reason.startswith("message key is 500000 bytes")
    for d in dead:
        assert len(d.key or b"") + len(d.value or b"") <= s.limits.dead_letter_payload_bytes

    # A restarted worker starts past the poison: nothing is dead-lettered again, nothing is lost.
    with worker(s, tmp_path, "poison-test", "second"):
        progress.wait_until_caught_up(timeout=60)
        progress.close()
        again = readback.read_dead_letters(s)
    assert len(again) == 8
