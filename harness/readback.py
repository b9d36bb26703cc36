"""Reading the topology's outputs back, and asking how far a consumer group has got (evaluation, tests, bench).

Plain confluent-kafka: output topics are read from the beginning to their current end with no group
(`assign`, no commits), and a group's progress is its committed offsets against the partitions' ends.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from harness.scoring import final_alerts as final_alerts  # kept here for callers that read then take the set
from schemas.records import Alert, AlertAction, DeadLetter, Stay
from schemas.serde import Serde
from shekara.settings import Settings

AlertRecord = tuple[str, int, str]  # (alert_id, revision, action): one record of an alert's life


@dataclass(frozen=True, slots=True)
class Raw:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


def _consumer(settings: Settings) -> Consumer:
    return Consumer(
        {
            **settings.kafka_config(),
            "group.id": f"shekara-readback-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
        }
    )


def end_offsets(
    settings: Settings, topics: Iterable[str], *, consumer: Consumer | None = None, idle: float = 0.3
) -> dict[tuple[str, int], int]:
    """Next offset after the last message of every partition of `topics`.

    Not just the high watermark: the embedded broker reports the base offset of the last record batch + 1, so
    the true end is found by reading from there to the end (one fetch per partition).
    """
    own = consumer is None
    c = consumer or _consumer(settings)
    try:
        out: dict[tuple[str, int], int] = {}
        md = c.list_topics(timeout=10)
        starts = []
        for topic in topics:
            for p in md.topics[topic].partitions:
                _, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
                out[(topic, p)] = high
                if high > 0:
                    starts.append(TopicPartition(topic, p, high - 1))
        if starts:
            c.assign(starts)
            quiet_until = time.monotonic() + idle
            while time.monotonic() < quiet_until:
                msgs = c.consume(num_messages=10000, timeout=0.05)
                for m in msgs:
                    name, p, offset = m.topic(), m.partition(), m.offset()
                    if m.error() or name is None or p is None or offset is None:
                        continue
                    out[(name, p)] = max(out[(name, p)], offset + 1)
                if msgs:
                    quiet_until = time.monotonic() + idle
            c.unassign()
        return out
    finally:
        if own:
            c.close()


def read_topic(settings: Settings, topic: str, *, timeout: float = 60.0) -> list[Raw]:
    """Every message now on `topic`, in partition-offset order."""
    c = _consumer(settings)
    try:
        ends = {p: high for (_, p), high in end_offsets(settings, [topic], consumer=c).items()}
        wanted = {p: high for p, high in ends.items() if high > 0}
        if not wanted:
            return []
        c.assign([TopicPartition(topic, p, 0) for p in wanted])
        got: dict[int, list[Raw]] = {p: [] for p in wanted}
        deadline = time.monotonic() + timeout
        while any(not got[p] or got[p][-1].offset < wanted[p] - 1 for p in wanted):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end within {timeout:.0f}s")
            for m in c.consume(num_messages=10000, timeout=0.5):
                if m.error():
                    raise KafkaException(m.error())
                p, offset = m.partition(), m.offset()
                if p is not None and offset is not None and p in got and offset < wanted[p]:
                    got[p].append(Raw(topic, p, offset, m.key(), m.value(), m.timestamp()[1]))
        return [r for p in sorted(got) for r in got[p]]
    finally:
        c.close()


def read_records(settings: Settings, topic: str) -> list[tuple[Raw, object]]:
    serde = Serde.from_settings(settings)
    return [(r, serde.decode(r.value, topic)) for r in read_topic(settings, topic) if r.value is not None]


def read_alerts(settings: Settings) -> list[Alert]:
    return [rec for _, rec in read_records(settings, settings.topics.alerts) if isinstance(rec, Alert)]


def read_stays(settings: Settings) -> dict[str, Stay]:
    """The latest revision of each stay (what the compacted topic keeps)."""
    latest: dict[str, Stay] = {}
    for _, rec in read_records(settings, settings.topics.stays):
        if isinstance(rec, Stay):
            old = latest.get(rec.stay_id)
            if old is None or rec.revision >= old.revision:
                latest[rec.stay_id] = rec
    return latest


def read_dead_letters(settings: Settings) -> list[DeadLetter]:
    return [rec for _, rec in read_records(settings, settings.topics.dead_letter) if isinstance(rec, DeadLetter)]


class GroupProgress:
    """How far a consumer group has got on some topics: one admin client and one consumer, reused."""

    def __init__(self, settings: Settings, group: str, topics: Iterable[str]) -> None:
        self.group = group
        self.topics = list(topics)
        self._admin = AdminClient(settings.kafka_config())
        self._consumer = _consumer(settings)
        self._settings = settings

    def committed(self) -> dict[tuple[str, int], int]:
        """Offsets the group has committed (missing partitions: nothing committed yet)."""
        wanted = set(self.topics)
        futures = self._admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(self.group)])
        out: dict[tuple[str, int], int] = {}
        for fut in futures.values():
            for tp in fut.result().topic_partitions or []:
                if tp.topic in wanted and tp.offset >= 0:
                    out[(tp.topic, tp.partition)] = tp.offset
        return out

    def lag(self) -> int:
        """Messages on the topics that the group has not committed yet."""
        ends = end_offsets(self._settings, self.topics, consumer=self._consumer)
        done = self.committed()
        return sum(max(0, high - done.get(tp, 0)) for tp, high in ends.items())

    def wait_until_caught_up(self, *, timeout: float = 300.0, settle: float = 2.0) -> None:
        """Block until the group has committed everything and it stayed so for `settle` seconds."""
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            if self.lag() == 0:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= settle:
                    return
            else:
                quiet_since = None
            time.sleep(0.25)
        raise TimeoutError(f"consumer group {self.group} still lags {self.lag()} messages after {timeout:.0f}s")

    def close(self) -> None:
        self._consumer.close()


def action_counts(alerts: Iterable[Alert]) -> dict[AlertAction, int]:
    counts: dict[AlertAction, int] = dict.fromkeys(AlertAction, 0)
    for a in alerts:
        counts[a.action] += 1
    return counts
