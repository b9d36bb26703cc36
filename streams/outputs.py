"""The sinks of the topology: alerts, stays, dead letters and address-keyed registrations, out to Kafka.

A confluent-kafka producer (librdkafka, in C) rather than Faust's own: the processors emit in bulk after each
batch and librdkafka's batching costs far less per message than aiokafka's. Idempotent, ``acks=all``.

Exactly-once downstream rests on the order of three steps per batch (`streams.pipeline`, which takes them for
several batches at once while busy): outputs are handed to
this producer and flushed (`flush`), *then* the state is written (store and changelog, through this producer
too: `raw`), *then* the source offsets are acknowledged. A crash before the state write replays the batch and
re-emits the same records with the same ids (consumers keep the latest per id); a crash after it finds the
events already in the state and emits nothing new. No record is ever claimed by the state and lost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from schemas.records import Alert, DeadLetter
from schemas.serde import Serde
from shekara import metrics
from shekara.broker_watch import client_logger
from shekara.logs import get_logger
from shekara.settings import Limits, Settings

log = get_logger(__name__)
MAX_REASON_CHARS = 2_000  # a reason quoting a huge value is cut here (the value is in the source topic)
# A dead letter is written after its source message, but by another host's clock: read back from this much earlier.
LETTER_CLOCK_MARGIN_MS = 300_000
Coordinates = tuple[str, int, int]  # source topic, partition, offset of a dead-lettered message


class OutputError(RuntimeError):
    """Outputs could not be delivered: the batch must not be acknowledged (the worker stops and replays it)."""


def dead_letter(
    *,
    topic: str,
    partition: int | None,
    offset: int | None,
    key: bytes | None,
    value: bytes | None,
    stage: str,
    reason: str,
    field: str | None,
    now: datetime,
) -> DeadLetter:
    """The dead-letter record of one rejected message: where it came from, the raw bytes, and why."""
    return DeadLetter(
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        key=key,
        value=value,
        stage=stage,
        reason=reason,
        field=field,
        rejected_time=now,
    )


def bounded(letter: DeadLetter, limits: Limits) -> DeadLetter:
    """The dead letter cut to size, so it can always be sent: it must never fail where its message failed.

    The key keeps at most `limits.max_key_bytes`, the value what is left of `limits.dead_letter_payload_bytes`
    (their first bytes), the reason `MAX_REASON_CHARS`. The whole message stays at its source coordinates.
    """
    budget = limits.dead_letter_payload_bytes
    key, value, reason = letter.key, letter.value, letter.reason
    if key is not None and len(key) > min(budget, limits.max_key_bytes):
        key = key[: min(budget, limits.max_key_bytes)]
    room = budget - len(key or b"")
    if value is not None and len(value) > room:
        value = value[:room]
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 1] + "…"
    if key is letter.key and value is letter.value and reason is letter.reason:
        return letter
    return dataclasses.replace(letter, key=key, value=value, reason=reason, field=(letter.field or "")[:200] or None)


class Outputs:
    """Sends the topology's output records and waits for the broker to acknowledge them."""

    def __init__(self, settings: Settings, *, client_id: str = "shekara-processor") -> None:
        self.topics = settings.topics
        self.limits = settings.limits
        self.serde = Serde.from_settings(settings)
        self._producer = Producer(
            {
                **settings.kafka_config(),
                "client.id": client_id,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "batch.num.messages": 10000,
                "queue.buffering.max.messages": 500000,
                "logger": client_logger("streams.outputs.kafka"),  # an outage: a few lines, not 20 a second
            }
        )
        self._errors: list[str] = []
        self._lock = threading.Lock()
        self.sent = {"alerts": 0, "stays": 0, "dead_letters": 0, "address_registrations": 0}
        # Source coordinates already in the dead-letter topic past the committed offsets (`lettered_since`, at
        # assignment): a worker killed between its dead letter and its commit must not send it again on replay.
        self.lettered: set[Coordinates] = set()
        self.letters_not_resent = 0
        self._kill_after_dead_letters = settings.faust.kill_after_dead_letters  # tests only (settings)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            with self._lock:
                self._errors.append(f"{msg.topic()}: {err.str()}")

    def _produce(self, topic: str, key: bytes | None, value: bytes | None, partition: int = -1) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, partition=partition, on_delivery=self._on_delivery)
                return
            except BufferError:
                # librdkafka's queue is full: let it send, then retry (back-pressure, not loss).
                self._producer.poll(0.05)

    def alert(self, alert: Alert) -> None:
        self.alert_bytes(alert.alert_id.encode(), self.serde.encode(alert, self.topics.alerts))

    def alert_bytes(self, alert_id: bytes, value: bytes) -> None:
        """An alert already encoded (`streams.matching`)."""
        # Keyed by alert id: RAISED, RESOLVED and RETRACTED of one alert stay in order on one partition.
        self._produce(self.topics.alerts, alert_id, value)
        self.sent["alerts"] += 1
        self._count_alert(value)

    def stay_bytes(self, stay_id: bytes, value: bytes) -> None:
        """A stay already encoded (`streams.matching`)."""
        # Keyed by stay id on a compacted topic: the latest revision of each stay survives.
        self._produce(self.topics.stays, stay_id, value)
        self.sent["stays"] += 1
        metrics.events_out(self.topics.stays)

    def dead(self, letter: DeadLetter) -> None:
        if self.lettered and (letter.source_topic, letter.source_partition, letter.source_offset) in self.lettered:
            self.letters_not_resent += 1
            return
        letter = bounded(letter, self.limits)
        self._produce(self.topics.dead_letter, letter.key, self.serde.encode(letter, self.topics.dead_letter))
        self.sent["dead_letters"] += 1
        metrics.dead_letter(letter.stage, letter.reason)

    def address_registration(self, address_key: str, value: bytes) -> None:
        """Forward a registration's original bytes, re-keyed by address, to the address-crowding stage."""
        self._produce(self.topics.address_registrations, address_key.encode(), value)
        self.sent["address_registrations"] += 1
        metrics.events_out(self.topics.address_registrations)

    def handoff(self, key: bytes, partition: int, value: bytes) -> None:
        """An identity handoff (streams.handoff) to the new document's source partition, named explicitly."""
        self._produce(self.topics.identity_links, key, value, partition)
        metrics.events_out(self.topics.identity_links)

    def _count_alert(self, value: bytes) -> None:
        """Count a sent alert by type and action (the matching process hands it over encoded; alerts are few)."""
        metrics.events_out(self.topics.alerts)
        try:
            _, d = self.serde.decode_dict(value, self.topics.alerts)
            metrics.alert(str(d["type"]), str(d["action"]))
        except Exception as exc:  # a metric must never stop an output
            log.debug("alert not counted", error=str(exc))

    def raw(self, topic: str, key: bytes, value: bytes | None, partition: int) -> None:
        """A record as-is to a given partition (state changelogs: see `streams.stores`)."""
        self._produce(topic, key, value, partition)

    def pending(self) -> int:
        return len(self._producer)

    def flush_sync(self, timeout: float = 60.0) -> None:
        """Block until every record sent so far is acknowledged; raise `OutputError` if any was refused."""
        remaining = self._producer.flush(timeout)
        with self._lock:
            errors, self._errors = self._errors, []
        if remaining:
            raise OutputError(f"{remaining} output records not acknowledged within {timeout:.0f}s")
        if errors:
            raise OutputError(f"{len(errors)} output records refused by the broker, first: {errors[0]}")

    async def flush(self, timeout: float = 60.0) -> None:
        """`flush_sync` off the event loop, so Faust keeps heartbeating while the broker acknowledges."""
        if len(self._producer) == 0:
            self._producer.poll(0)
            with self._lock:
                if not self._errors:
                    return
        await asyncio.get_running_loop().run_in_executor(None, self.flush_sync, timeout)
        if self._kill_after_dead_letters and self.sent["dead_letters"]:
            os.kill(os.getpid(), signal.SIGKILL)  # dead letters acknowledged, nothing committed: as a kill -9 there

    def close(self) -> None:
        try:
            self.flush_sync(10.0)
        except OutputError as exc:
            log.warning("outputs not flushed at close", error=str(exc))


def lettered_since(
    settings: Settings, starts: Mapping[tuple[str, int], int], *, timeout: float = 30.0
) -> set[Coordinates]:
    """Source coordinates at or past `starts` (committed offsets) that already have a dead letter.

    Run at assignment only. A dead letter is written after its source message was, so the dead-letter topic is
    read from the time of the first uncommitted source message (less a clock margin) to its end; a partition with
    nothing uncommitted costs one fetch. The letters are keyed like their source, not by source partition, so
    every dead-letter partition is read from that time. Ends are found by fetching to end of partition, not by
    asking for the high watermark: the embedded broker (Tansu) reports the last batch's base offset + 1 there.
    """
    consumer = Consumer(
        {
            **settings.kafka_config(),
            "group.id": f"shekara-letters-{uuid.uuid4()}",  # assign() only: never joins or commits
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "logger": client_logger("streams.outputs.lettered"),
        }
    )
    try:
        deadline = time.monotonic() + timeout
        first = _first_timestamps(consumer, starts, deadline)
        if not first:
            return set()
        since = max(0, min(first.values()) - LETTER_CLOCK_MARGIN_MS)
        found: set[Coordinates] = set()
        serde = Serde.from_settings(settings)
        for value in _read_letters_from(consumer, settings.topics.dead_letter, since, deadline):
            try:
                letter = serde.decode(value, settings.topics.dead_letter)
            except ValueError:
                continue  # not a dead letter of ours: nothing to skip for it
            if not isinstance(letter, DeadLetter) or letter.source_partition is None or letter.source_offset is None:
                continue
            committed = starts.get((letter.source_topic, letter.source_partition))
            if (
                committed is not None
                and letter.source_offset >= committed
                and (
                    letter.source_topic,
                    letter.source_partition,
                )
                in first
            ):
                found.add((letter.source_topic, letter.source_partition, letter.source_offset))
        return found
    finally:
        consumer.close()


def _read_to_end(
    consumer: Consumer, assign: list[TopicPartition], deadline: float, what: str, *, first_only: bool = False
) -> Iterator[Message]:
    """The messages of the assigned partitions from their offsets to their end, or only the first of each."""
    consumer.assign(assign)
    open_ = {(tp.topic, tp.partition) for tp in assign}
    while open_ and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        error = msg.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                open_.discard((msg.topic() or "", msg.partition() or 0))
            continue
        yield msg
        if first_only:
            tp = (msg.topic() or "", msg.partition() or 0)
            open_.discard(tp)
            consumer.incremental_unassign([TopicPartition(*tp)])
    if open_:
        raise KafkaException(f"{what}: {len(open_)} partitions not read to their end in time")


def _first_timestamps(
    consumer: Consumer, starts: Mapping[tuple[str, int], int], deadline: float
) -> dict[tuple[str, int], int]:
    """The Kafka timestamp (ms) of the message at each partition's start, for those with one."""
    first: dict[tuple[str, int], int] = {}
    assign = [TopicPartition(t, p, start) for (t, p), start in starts.items()]
    for msg in _read_to_end(consumer, assign, deadline, "source read-back", first_only=True):
        first.setdefault((msg.topic() or "", msg.partition() or 0), msg.timestamp()[1])
    return first


def _read_letters_from(consumer: Consumer, topic: str, since_ms: int, deadline: float) -> list[bytes]:
    """Every value of `topic` written at or after `since_ms`, up to its current end."""
    meta = consumer.list_topics(topic, timeout=max(1.0, deadline - time.monotonic()))
    partitions = sorted(meta.topics[topic].partitions)
    found = consumer.offsets_for_times(
        [TopicPartition(topic, p, since_ms) for p in partitions], timeout=max(1.0, deadline - time.monotonic())
    )
    assign = [TopicPartition(topic, tp.partition, tp.offset) for tp in found if tp.offset >= 0]
    if not assign:
        return []
    return [m.value() or b"" for m in _read_to_end(consumer, assign, deadline, "dead-letter read-back") if m.value()]
