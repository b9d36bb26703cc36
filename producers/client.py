"""The producer client a checkpoint, airport or hotel integrator uses: validate, encode, publish, never lose.

`EventProducer.publish` validates a source event (raising `ValidationError` naming the field), encodes it with
the project's `Serde`, and hands it to an idempotent confluent-kafka producer (``acks=all``), keyed by the
public partition key of the traveller's document (`shekara.pseudonym.partition_key`) so one traveller's events
stay in order on one partition. Producers hold no secret: the keyed traveller key is computed downstream.

When the broker becomes unreachable (librdkafka reports all brokers down, a delivery fails, or the producer hits
a fatal error) every message still inside librdkafka is purged and written, in order, to a durable on-disk
spool (`producers.spool`); from then on new events go behind them into the spool. A background thread checks
the broker's metadata and, once it and the target topics are back, drains the spool in order, removing each
message only after the broker acknowledged it. When the spool is empty, publishing goes direct again.

Duplicates are possible at the moment of an outage (a message purged while in flight may have reached the
broker) and are harmless: every event carries a stable `event_id` and the sinks deduplicate on it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from types import TracebackType
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import ClusterMetadata

from producers.spool import Spool, SpooledMessage
from schemas.convert import to_avro
from schemas.records import Alert, Crossing, DeadLetter, Registration, StatusChange, Stay
from schemas.serde import Serde
from schemas.validation import ValidationError, catalogue_for, validate
from shekara.logs import get_logger
from shekara.partitioning import partition_of
from shekara.pseudonym import partition_key
from shekara.settings import Settings

SourceEvent = Crossing | Registration | StatusChange
# What became of one published message: acknowledged by the broker, written to the spool (the broker was
# unreachable: it is sent from there, in order), or refused for good (the reason says why).
Outcome = Literal["sent", "spooled", "refused"]
OnOutcome = Callable[[Outcome, str], None]

log = get_logger(__name__)
# librdkafka retries a refused connection every few hundred ms and logs each one; keep that out of the way
# unless someone is debugging (our own outage/drain messages say what matters).
_rdkafka_log = logging.getLogger("shekara.librdkafka")

# Delivery errors that no retry can fix: counted as failed and logged instead of blocking the spool forever.
_PERMANENT = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError._INVALID_ARG,
    }
)
_DRAIN_BATCH = 500
_RETRY_INTERVAL_S = 0.5


def topic_for(record: Any, settings: Settings) -> str:
    """The topic a record belongs on."""
    t = settings.topics
    if isinstance(record, Crossing):
        return t.crossings
    if isinstance(record, Registration):
        return t.registrations
    if isinstance(record, StatusChange):
        return t.status_changes
    if isinstance(record, Alert):
        return t.alerts
    if isinstance(record, Stay):
        return t.stays
    if isinstance(record, DeadLetter):
        return t.dead_letter
    raise TypeError(f"not a record of the event contract: {type(record).__name__}")


def key_for(record: SourceEvent) -> bytes:
    """Message key of a source event: the public partition key of its document (no secret needed)."""
    doc = record.traveller.document
    return partition_key(doc.issuing_country, doc.number).encode()


def prepare(record: SourceEvent, settings: Settings, serde: Serde) -> tuple[str, bytes, bytes]:
    """Validate, key and encode a source event: its (topic, key, value). Raises `ValidationError` naming the
    field, also when the event cannot be encoded or its message would pass `settings.limits.max_value_bytes`."""
    validate(
        record,
        now=datetime.now(UTC),
        max_future_skew_s=settings.max_future_skew_seconds,
        limits=settings.limits,
        catalogue=catalogue_for(settings),
    )
    topic = topic_for(record, settings)
    try:
        value = serde.encode(record, topic)
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. text that is not valid Unicode
        raise ValidationError("(message)", f"cannot be encoded: {exc}") from None
    limit = settings.limits.max_value_bytes
    if len(value) > limit:
        where, text = max(strings(to_avro(record)), key=lambda s: len(s[1]), default=("(message)", ""))
        raise ValidationError(
            where, f"is {len(text):,} characters: the message would be {len(value):,} bytes; the limit is {limit:,}"
        )
    return topic, key_for(record), value


def strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string in a plain (JSON or Avro dict) value, keys included, with the dotted path holding it."""
    if isinstance(value, str):
        yield path or "(message)", value
    elif isinstance(value, dict):
        for k, v in value.items():
            where = f"{path}.{k}" if path else str(k)
            yield where, str(k)
            yield from strings(v, where)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from strings(v, f"{path}[{i}]")


class EventProducer:
    """Validates, encodes and publishes source events; spools to disk while the broker is unreachable.

    Thread-safe. Use as a context manager, or call `close()` (which flushes). `stats` counts: accepted (valid and
    taken in charge), rejected (invalid), dead_lettered (refused input passed to the dead-letter topic), sent
    (acknowledged by the broker, including from the spool), spooled (written to the spool), drained (sent from
    the spool), failed (permanent broker errors).
    """

    def __init__(self, settings: Settings, *, spool: bool = True, client_id: str = "shekara-producer") -> None:
        self.settings = settings
        self.serde = Serde.from_settings(settings)
        self.stats: dict[str, int] = dict.fromkeys(
            ("accepted", "rejected", "dead_lettered", "sent", "spooled", "drained", "failed"), 0
        )
        self._client_id = client_id
        t = settings.topics
        self._sources = {t.crossings, t.registrations, t.status_changes}
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._outage = False
        self._undelivered: list[SpooledMessage] = []
        # Directly produced messages without a delivery report yet (len(producer) also counts librdkafka's own
        # requests and events, so it is not a message count).
        self._in_flight = 0
        self._next_drain = 0.0
        # One spool per client id: a spool has one owner process, which alone may drain it (see Spool).
        self.spool_dir = settings.spool_dir / client_id
        self._spool = Spool(self.spool_dir) if spool else None
        # A spool left non-empty by an earlier run goes first: new events queue behind it.
        self._spooling = bool(self._spool is not None and len(self._spool))
        if self._spooling:
            log.info("resuming non-empty spool", pending=len(self._spool or ()), spool=str(self.spool_dir))
        self._producer = self._new_producer()
        self._closed = False
        self.spool_left = 0  # set by close(): messages kept in the spool for the next run (this one's and older)
        self._thread = threading.Thread(target=self._run, name=f"{client_id}-io", daemon=True)
        self._thread.start()

    # --- public API -------------------------------------------------------------------------------------

    def publish(self, record: SourceEvent, *, on_outcome: OnOutcome | None = None) -> None:
        """Validate (raises `ValidationError`), then send or spool. Returns once the event is accepted.

        `on_outcome` is called once, later and from the io thread, with what became of it (see `Outcome`); a
        message spooled is not reported again when the spool sends it.
        """
        if self._closed:
            raise RuntimeError("publish on a closed EventProducer")
        try:
            topic, key, value = prepare(record, self.settings, self.serde)
        except ValidationError:
            self.stats["rejected"] += 1
            raise
        self._enqueue(topic, key, value, on_outcome=on_outcome)

    def publish_dead_letter(self, letter: DeadLetter, *, on_outcome: OnOutcome | None = None) -> None:
        """Send a refused input to the dead-letter topic (same delivery guarantees, no validation, no key)."""
        if self._closed:
            raise RuntimeError("publish on a closed EventProducer")
        topic = self.settings.topics.dead_letter
        value = self.serde.encode(letter, topic)
        self._enqueue(topic, letter.key, value, count="dead_lettered", on_outcome=on_outcome)

    def flush(self, timeout: float = 30.0) -> int:
        """Wait until everything accepted is acknowledged by the broker; returns how many are still pending."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        while True:
            pending = self.pending()
            if pending == 0 or time.monotonic() >= deadline:
                return pending
            self._wake.set()
            time.sleep(0.02)

    def pending(self) -> int:
        """Messages accepted but not yet acknowledged: inside librdkafka plus in the spool."""
        with self._lock:
            in_client = self._in_flight
            spooling = self._spooling
        return in_client + (len(self._spool) if spooling and self._spool is not None else 0)

    @property
    def spooling(self) -> bool:
        """True while new events go to the spool (broker unreachable, or the spool is still draining)."""
        return self._spooling

    def close(self, timeout: float = 30.0) -> None:
        """Flush (up to `timeout`), stop the background thread and close the spool. Unsent events stay spooled."""
        if self._closed:
            return
        left = self.flush(timeout)
        self._closed = True
        self._stop.set()
        self._wake.set()
        self._thread.join()
        with self._lock:
            if self._spool is not None and (self._in_flight or self._undelivered):
                self._move_to_spool()
            if left:
                log.warning("closing with events not yet delivered", pending=left, spooled=self._spool is not None)
            if self._spool is not None:
                self.spool_left = len(self._spool)
                self._spool.close()

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- sending ----------------------------------------------------------------------------------------

    def _new_producer(self) -> Producer:
        level = logging.DEBUG if self.settings.log_level.upper() == "DEBUG" else logging.CRITICAL
        _rdkafka_log.setLevel(level)
        conf: dict[str, Any] = {
            **self.settings.kafka_config(),
            "client.id": self._client_id,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            # Never let a produce create a topic with broker defaults: partitions must match the catalogue.
            "allow.auto.create.topics": False,
            # Back-stop for outages librdkafka cannot see as "all brokers down" (e.g. a silent network drop).
            "message.timeout.ms": 30000 if self._spool is not None else 300000,
            "reconnect.backoff.max.ms": 1000,
            "error_cb": self._on_error,
            "logger": _rdkafka_log,
        }
        return Producer(conf)

    def _partition(self, topic: str, key: bytes | None) -> int:
        """The partition of a source event, named explicitly (shekara.partitioning: the processors and the sink
        refuse an event elsewhere); -1 (librdkafka's choice) for the other topics."""
        if key and topic in self._sources:
            return partition_of(key, self.settings.partitions)
        return -1

    def _enqueue(
        self, topic: str, key: bytes | None, value: bytes, count: str = "accepted", on_outcome: OnOutcome | None = None
    ) -> None:
        report = self._on_delivery if on_outcome is None else partial(self._on_delivery, on_outcome=on_outcome)
        while True:
            with self._lock:
                if self._spooling and self._spool is not None:
                    self._spool.put(SpooledMessage(topic, key, value))
                    self.stats["spooled"] += 1
                    self.stats[count] += 1
                    if on_outcome is not None:
                        on_outcome("spooled", "")
                    return
                try:
                    self._producer.produce(topic, value, key, self._partition(topic, key), on_delivery=report)
                    self._in_flight += 1
                    self.stats[count] += 1
                    return
                except BufferError:
                    pass  # librdkafka's queue is full: let the io thread serve delivery reports, then retry
                except KafkaException as exc:
                    error = exc.args[0]
                    if not isinstance(error, KafkaError) or error.code() not in _PERMANENT:
                        raise
                    # Refused before sending (e.g. larger than the client's message.max.bytes): this message's fault.
                    self.stats["rejected"] += 1
                    raise ValidationError("(message)", f"refused by the Kafka client: {error.str()}") from None
            self._wake.set()
            time.sleep(0.005)

    def _on_delivery(self, err: KafkaError | None, msg: Message, on_outcome: OnOutcome | None = None) -> None:
        """Delivery report of a directly produced message (runs on the io thread, inside poll)."""
        outcome: Outcome = "sent"
        if err is None:
            self.stats["sent"] += 1
        elif err.code() in _PERMANENT or self._spool is None:
            outcome = "refused"
            self.stats["failed"] += 1
            log.error("event not delivered", topic=msg.topic(), error=err.str(), permanent=err.code() in _PERMANENT)
        else:
            outcome = "spooled"
            # Kept in memory until _move_to_spool runs (moments later, same thread), so these earliest failures
            # are written before the messages purged after them: the spool keeps each key's order.
            self._undelivered.append(SpooledMessage(msg.topic() or "", msg.key(), msg.value() or b""))
            self._outage = True
        if on_outcome is not None:
            on_outcome(outcome, "" if err is None else f"{err.name()} ({err.str()})")
        with self._lock:
            self._in_flight -= 1  # last: flush() sees the message settled only once its outcome is reported

    def _on_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN or err.fatal():
            self._outage = True
        self._wake.set()

    # --- io thread ----------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._producer.poll(0.02)
                if self._outage:
                    self._handle_outage()
                if self._spooling and time.monotonic() >= self._next_drain:
                    self._drain()
                elif not self._spooling and not self._in_flight:
                    self._wake.wait(0.05)
                    self._wake.clear()
            except Exception as exc:  # the io thread must survive anything, or the spool would never drain
                log.error("producer io thread error", error=repr(exc))
                time.sleep(_RETRY_INTERVAL_S)
        # Serve the last delivery reports before close() decides what is left.
        self._producer.poll(0)

    def _handle_outage(self) -> None:
        with self._lock:
            self._outage = False
            if self._spool is None:
                return
            if self._spooling and not self._in_flight and not self._undelivered:
                return  # already spooling and nothing in flight: nothing to move
            was_spooling = self._spooling
            self._spooling = True
            moved = self._move_to_spool()
            # A fresh producer (new producer id) after an outage: the broker may have lost the old id's state.
            self._producer = self._new_producer()
            self._next_drain = time.monotonic() + _RETRY_INTERVAL_S
        if not was_spooling or moved:
            log.warning("broker unreachable: spooling events to disk", moved=moved, spool=str(self.spool_dir))

    def _move_to_spool(self) -> int:
        """Write failed and still-queued messages to the spool, in produce order; call with the lock held."""
        assert self._spool is not None
        self._producer.purge(in_queue=True, in_flight=True, blocking=True)
        deadline = time.monotonic() + 30
        while self._in_flight and time.monotonic() < deadline:
            self._producer.poll(0.05)  # purge reports land in self._undelivered, after earlier failures
        if self._in_flight:
            log.error("delivery reports still outstanding after purge", count=self._in_flight)
        moved = len(self._undelivered)
        for m in self._undelivered:
            self._spool.put(m)
        self.stats["spooled"] += moved
        self._undelivered.clear()
        return moved

    def _metadata(self) -> ClusterMetadata | None:
        """The cluster's metadata, or None if the broker does not answer."""
        try:
            return self._producer.list_topics(timeout=2)
        except KafkaException:
            return None

    @staticmethod
    def _topics_ready(md: ClusterMetadata, topics: set[str]) -> bool:
        for name in topics:
            t = md.topics.get(name)
            if t is None or t.error is not None or not t.partitions:
                return False
        return True

    def _drain(self) -> None:
        """Send one batch from the front of the spool and wait for its acknowledgements."""
        assert self._spool is not None
        # Ask the broker before touching the spool: no disk writes while it is down.
        md = self._metadata()
        if md is None:
            self._next_drain = time.monotonic() + _RETRY_INTERVAL_S
            return
        batch = self._spool.take(_DRAIN_BATCH)
        if not batch:
            # The broker answered and nothing is left: go direct again.
            with self._lock:
                if not len(self._spool) and not self._undelivered:
                    self._spooling = False
                    log.info("spool drained: publishing directly again", drained=self.stats["drained"])
            return
        ids = [pqid for pqid, _ in batch]
        if not self._topics_ready(md, {m.topic for _, m in batch}):
            # A broker restarted without its topics (e.g. in-memory Tansu): wait for them, never auto-create.
            self._spool.release(ids)
            self._next_drain = time.monotonic() + _RETRY_INTERVAL_S
            return
        results: dict[int, KafkaError | None] = {}
        for pqid, m in batch:
            report = self._drain_report(results, pqid)
            self._producer.produce(m.topic, m.value, m.key, self._partition(m.topic, m.key), on_delivery=report)
        deadline = time.monotonic() + 35  # message.timeout.ms + margin
        while len(results) < len(batch) and time.monotonic() < deadline and not self._stop.is_set():
            self._producer.poll(0.05)
        delivered = [i for i in ids if i in results and results[i] is None]
        permanent = [i for i in ids if (e := results.get(i)) is not None and e.code() in _PERMANENT]
        retry = [i for i in ids if i not in results or (results[i] is not None and i not in permanent)]
        self._spool.ack(delivered + permanent)
        self.stats["sent"] += len(delivered)
        self.stats["drained"] += len(delivered)
        if permanent:
            self.stats["failed"] += len(permanent)
            log.error("spooled events not deliverable", count=len(permanent))
        if retry:
            reasons = sorted({e.name() for i in retry if (e := results.get(i)) is not None} or {"no report"})
            log.warning("spool drain interrupted", retry=len(retry), delivered=len(delivered), errors=reasons)
            with self._lock:
                # Void whatever of the batch is still inside librdkafka before those messages go back in line.
                self._producer.purge(in_queue=True, in_flight=True, blocking=True)
                deadline = time.monotonic() + 5
                while len(results) < len(batch) and time.monotonic() < deadline:
                    self._producer.poll(0.05)
                self._spool.release(retry)
                self._producer = self._new_producer()
            self._next_drain = time.monotonic() + _RETRY_INTERVAL_S

    @staticmethod
    def _drain_report(results: dict[int, KafkaError | None], pqid: int) -> Callable[[KafkaError | None, Message], None]:
        def report(err: KafkaError | None, _msg: Message) -> None:
            results[pqid] = err

        return report
