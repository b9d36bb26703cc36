"""A traveller's history for the ops page, read from the topics that carry the pseudonymous traveller key.

The page links each alert to ``history?key=<traveller key>``. The history comes from what the page may read
without any secret: the stays topic (compacted: every closed stay, with its entry and exit crossings) and the
alerts topic (every alert record, raised, resolved or retracted, within the topic's retention). Crossings on
the source topics carry the document in clear and no traveller key (the keyed hash needs the pseudonym key,
which the page does not hold), so crossings are shown as the stays' entries and exits; those of a stay still
open are in its alerts' evidence. The warehouse holds every crossing: the page prints the analyst's command.

Each request scans both topics from the beginning with a reader that joins no group (bytes are filtered
before decoding: an Avro string is stored as its UTF-8 bytes, so a record naming the key contains them).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from schemas.records import Alert, Stay
from schemas.serde import DecodeError, Serde
from shekara.settings import Settings
from streams.console import alert_json
from streams.triage_topic import TriageUnavailable, reader_consumer

KEY_PATTERN = re.compile(r"^[0-9a-f]{16,128}$")  # a keyed traveller key: lowercase hex


def check_key(key: str) -> str:
    """The key, trimmed and lowercased; ValueError (one line) if it cannot be a traveller key."""
    key = key.strip().lower()
    if not KEY_PATTERN.match(key):
        raise ValueError("key: give the whole traveller key (hex), as the page and `shekara alerts` show it")
    return key


def scan(settings: Settings, topic: str, needle: bytes) -> Iterator[bytes]:
    """Values of `topic` (every partition, from the beginning to the current end) that contain `needle`."""
    consumer = reader_consumer(settings, "shekara-ops-history")
    try:
        meta = consumer.list_topics(topic, timeout=settings.reach_timeout_seconds).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise TriageUnavailable(f"topic {topic!r} does not exist on {settings.bootstrap_servers}")
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        left = set(meta.partitions)
        while left:
            for msg in consumer.consume(1000, 1.0):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        left.discard(msg.partition() or 0)
                    continue
                value = msg.value()
                if value and needle in value:
                    yield value
    finally:
        consumer.close()


def stay_json(stay: Stay) -> dict[str, Any]:
    def iso(t: Any) -> str | None:
        return t.isoformat() if t is not None else None

    return {
        "stay_id": stay.stay_id,
        "revision": stay.revision,
        "entry_time": iso(stay.entry_time),
        "exit_time": iso(stay.exit_time),
        "entry_checkpoint": stay.entry_checkpoint,
        "exit_checkpoint": stay.exit_checkpoint,
        "days": stay.days,
        "allowed_days": stay.allowed_days,
        "days_over": stay.days_over,
        "entry_basis": stay.entry_basis.value,
        "purpose": stay.purpose.value,
    }


def traveller_history(settings: Settings, key: str, checkpoints: Any) -> dict[str, Any]:
    """Crossings (from stays), stays (latest revision each, void ones left out) and alert records of one key."""
    key = check_key(key)
    serde = Serde.from_settings(settings)
    needle = key.encode()
    stays: dict[str, Stay] = {}
    for value in scan(settings, settings.topics.stays, needle):
        try:
            stay = serde.decode(value, settings.topics.stays)
        except DecodeError:
            continue  # the sink dead-letters what it cannot read; the page only leaves it out
        if isinstance(stay, Stay) and stay.traveller_key == key:
            held = stays.get(stay.stay_id)
            if held is None or stay.revision >= held.revision:
                stays[stay.stay_id] = stay
    alerts: list[dict[str, Any]] = []
    for value in scan(settings, settings.topics.alerts, needle):
        try:
            alert = serde.decode(value, settings.topics.alerts)
        except DecodeError:
            continue
        if isinstance(alert, Alert) and alert.traveller_key == key:
            alerts.append(alert_json(alert, checkpoints))
    kept = sorted((s for s in stays.values() if s.rule_id != "void"), key=lambda s: s.anchor_time)
    crossings: list[dict[str, Any]] = []
    for s in kept:
        if s.entry_time is not None:
            crossings.append(
                {
                    "time": s.entry_time.isoformat(),
                    "direction": "ENTRY",
                    "checkpoint_id": s.entry_checkpoint,
                    "event_id": s.entry_event_id,
                }
            )
        if s.exit_time is not None:
            crossings.append(
                {
                    "time": s.exit_time.isoformat(),
                    "direction": "EXIT",
                    "checkpoint_id": s.exit_checkpoint,
                    "event_id": s.exit_event_id,
                }
            )
    crossings.sort(key=lambda c: c["time"])
    alerts.sort(key=lambda a: (a["due_time"], a["emitted_time"]))
    return {
        "traveller_key": key,
        "crossings": crossings,
        "stays": [stay_json(s) for s in kept],
        "alerts": alerts,
        "warehouse": f"shekara sql --saved travel_history -p traveller_key={key}",
    }
