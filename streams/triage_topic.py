"""The triage states on Kafka: read the compacted alert-actions topic into a `TriageBoard`, publish a new state.

Readers assign every partition from the beginning with no group membership and no commits (like the console's
alert reader): each ops page replica and each console holds every alert's state, and none takes partitions or
moves offsets from another.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from schemas.records import AlertTriage
from schemas.serde import DecodeError, Serde
from shekara.logs import get_logger
from shekara.settings import Settings
from streams.triage import TriageBoard, TriageRequest, apply

log = get_logger(__name__)


class TriageUnavailable(RuntimeError):
    """The alert-actions topic cannot be read or written now (one line, naming the topic and the broker)."""


def reader_consumer(settings: Settings, client_id: str) -> Consumer:
    return Consumer(
        {
            **settings.kafka_config(),
            "group.id": f"{client_id}-{uuid.uuid4().hex[:12]}",  # required by librdkafka; never joined or committed
            "client.id": client_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
        }
    )


def read_board(
    settings: Settings,
    board: TriageBoard,
    *,
    follow: bool = False,
    stop: threading.Event | None = None,
    client_id: str = "shekara-triage-reader",
    timeout: float | None = None,
) -> None:
    """Fill `board` from the beginning of the topic; set `board.ready` at its end; with `follow`, go on until `stop`."""
    topic = settings.topics.alert_actions
    serde = Serde.from_settings(settings)
    stop = stop or threading.Event()
    consumer = reader_consumer(settings, client_id)
    try:
        meta = consumer.list_topics(topic, timeout=timeout or settings.reach_timeout_seconds).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise TriageUnavailable(
                f"triage topic {topic!r} does not exist on {settings.bootstrap_servers}: run `shekara topics`"
            )
        partitions = sorted(meta.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        at_end: set[int] = set()
        while not stop.is_set():
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition() or 0)
                    if len(at_end) == len(partitions):
                        board.ready.set()
                        if not follow:
                            return
                else:
                    log.warning("triage reader error", error=str(err))
                continue
            key = (msg.key() or b"").decode("utf-8", "replace")
            value = msg.value()
            if value is None:
                board.remove(key)  # a tombstone: compaction will drop the alert's state
                continue
            try:
                record = serde.decode(value, topic)
            except DecodeError as exc:
                log.warning(
                    "unreadable triage record", partition=msg.partition(), offset=msg.offset(), reason=exc.reason
                )
                continue
            if isinstance(record, AlertTriage):
                board.put(record)
            else:
                log.warning("not a triage record", partition=msg.partition(), offset=msg.offset())
    finally:
        consumer.close()


def follow_in_background(
    settings: Settings, board: TriageBoard, stop: threading.Event, client_id: str
) -> threading.Thread:
    """`read_board` with `follow` in a daemon thread; a failure is logged and retried (the page keeps serving)."""

    def run() -> None:
        while not stop.is_set():
            try:
                read_board(settings, board, follow=True, stop=stop, client_id=client_id)
            except Exception as exc:
                log.warning("triage reader stopped; restarting", error=str(exc))
                stop.wait(2.0)

    thread = threading.Thread(target=run, name="shekara-triage-reader", daemon=True)
    thread.start()
    return thread


class TriagePublisher:
    """Publishes triage states keyed by alert id; one idempotent producer per process."""

    def __init__(self, settings: Settings, client_id: str = "shekara-triage") -> None:
        self.settings = settings
        self.serde = Serde.from_settings(settings)
        self.producer = Producer(
            {**settings.kafka_config(), "client.id": client_id, "enable.idempotence": True, "acks": "all"}
        )

    def publish(self, state: AlertTriage) -> None:
        """Send `state` and wait for the broker's acknowledgement; TriageUnavailable if it does not come."""
        topic = self.settings.topics.alert_actions
        errors: list[str] = []

        def delivered(err: object, _msg: object) -> None:
            if err is not None:
                errors.append(str(err))

        self.producer.produce(
            topic, key=state.alert_id.encode(), value=self.serde.encode(state, topic), on_delivery=delivered
        )
        left = self.producer.flush(self.settings.reach_timeout_seconds)
        if left or errors:
            reason = errors[0] if errors else "no acknowledgement in time"
            raise TriageUnavailable(f"the triage state was not stored on {self.settings.bootstrap_servers}: {reason}")

    def act(self, board: TriageBoard, request: TriageRequest, now: datetime | None = None) -> AlertTriage:
        """Apply a validated request to the board's current state, publish the result and hold it in the board."""
        state = apply(board.get(request.alert_id), request, now or datetime.now(UTC))
        self.publish(state)
        board.put(state)
        return state
