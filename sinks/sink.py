"""The sink: consume the source and output topics in batches and land them in ClickHouse, each event once.

Per batch: plan it (`sinks.batch`), record its intent (offset ranges + insert token), write it
(`sinks.writer`), dead-letter what can never be stored, and only then commit the offsets, synchronously.
A message is dead-lettered once, by one owner: a source event the stream processors refuse too (decode,
validation, key) is theirs, so the sink only leaves it out; the sink dead-letters what only it fails on, and
records each acknowledged dead letter (`sink_dead_lettered`) so a retried or replayed batch never sends it again.
ClickHouse down or refusing: retry with back-off, polling the paused consumer so it keeps its partitions.
A crash anywhere before the commit re-reads the batch; the recorded intent makes it the same batch with the
same token, so nothing is lost and nothing counted twice.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from itertools import compress, count, repeat
from operator import is_not, itemgetter
from typing import Any, cast

from confluent_kafka import (
    OFFSET_INVALID,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka import Message as KafkaMessage

from schemas.serde import Serde
from schemas.validation import catalogue_for
from shekara import metrics
from shekara.broker_watch import BrokerGone, BrokerWatch, client_logger
from shekara.collector import fewer_collections
from shekara.logs import get_logger
from shekara.rules import load_rules
from shekara.settings import Settings
from sinks.batch import Assembler, BatchPlan, Message, Messages, Rejected, pending_intent, plan_batch
from sinks.clickhouse import connect, is_embedded
from sinks.framing import Framer
from sinks.migrate import migrate
from sinks.query_server import QueryServer
from sinks.retention import OverstaySweep
from sinks.writer import Staged, TransientWriteError, Warehouse, WriteResult, routes
from streams import intake as processors_intake
from streams.outputs import bounded, dead_letter

log = get_logger(__name__)
CONSUME_CHUNK = 10_000  # messages per consume() call; batches are assembled from several
# Writers, each with its own ClickHouse session: one stages a batch (mostly ClickHouse's single-threaded Avro
# reader) while the other stores the one before it. Stores, dead letters and commits still go in batch order.
WRITERS = 2
MAX_IN_FLIGHT = WRITERS + 1  # batches with the writers: one stored, one staged, one waiting


@dataclass
class SinkStats:
    messages: int = 0  # consumed
    batches: int = 0  # written and committed
    staged: dict[str, int] = field(default_factory=dict)  # rows ClickHouse read, per table (before dedup)
    dead_lettered: int = 0  # rejected messages the sink owns (stage "sink", or topics only the sink reads)
    skipped: int = 0  # rejected messages the processors dead-letter (or dead letters that cannot be landed)
    tombstones: int = 0
    retries: int = 0  # failed attempts that were retried
    replayed: int = 0  # batches re-read from a recorded intent after a crash
    seconds: float = 0.0  # wall time of the run
    active_seconds: float = 0.0  # first message consumed to last batch committed (no group join, no idle)
    _first: float | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("_first")
        return d


AfterWrite = Callable[[BatchPlan, WriteResult], None]


def run_sink(
    settings: Settings,
    *,
    stop: threading.Event | None = None,
    once: bool = False,
    after_write: AfterWrite | None = None,
) -> SinkStats:
    """Run the sink until `stop` is set (or, with `once`, until every assigned partition is drained).

    Migrates the warehouse first. In embedded mode it also serves read-only analyst queries (`QueryServer`).
    `after_write` is called between a batch's insert and its offset commit: a fault-injection point for tests.
    """
    started = time.monotonic()
    stop = stop or threading.Event()
    stats = SinkStats()
    with fewer_collections():
        _run(settings, stats, stop, once, after_write)
    stats.seconds = time.monotonic() - started
    return stats


def _run(
    settings: Settings, stats: SinkStats, stop: threading.Event, once: bool, after_write: AfterWrite | None
) -> None:
    if settings.metrics.sink_port and not once:  # a drain (`--once`) ends before anyone would scrape it
        metrics.serve(settings.metrics.sink_port, settings.metrics.bind, settings.metrics.password.get_secret_value())
    clients = [connect(settings)]
    server: QueryServer | None = None
    sweep: OverstaySweep | None = None
    try:
        migrate(clients[0])
        clients += [connect(settings) for _ in range(WRITERS - 1)]
        framer = Framer(settings)
        warehouses = [Warehouse(client, settings, framer.explain) for client in clients]
        warehouses[0].load_rules(load_rules(settings.rules_file), settings.rules_file.read_bytes())
        warehouses[0].load_checkpoints(catalogue_for(settings), settings.checkpoints_file.read_bytes())
        if is_embedded(settings):
            server = QueryServer.start(settings)
        if settings.sink.overstay_sweep_interval > 0:  # exits of overstays: 5-year retention
            sweep = OverstaySweep(lambda: connect(settings), settings.sink.overstay_sweep_interval).start()
        _SinkLoop(settings, warehouses, framer, stats, after_write).run(stop, once)
    finally:
        if sweep is not None:
            sweep.stop()
        if server is not None:
            server.stop()
        for client in clients:
            client.close()


class _SinkLoop:
    def __init__(
        self,
        settings: Settings,
        warehouses: list[Warehouse],
        framer: Framer,
        stats: SinkStats,
        after_write: AfterWrite | None,
    ) -> None:
        self.settings = settings
        self.warehouses = warehouses
        self.framer = framer
        self.stats = stats
        self.after_write = after_write
        self.group_id = settings.sink.group_id
        # Batch intents, insert tokens and the sink's dead-letter record are kept per broker (`run` scopes it by
        # the cluster id): a restarted embedded broker numbers new messages from 0 again, and they must not
        # pass for batches already landed.
        self.ledger = self.group_id
        self.gone: str | None = None  # the broker was replaced (`shekara.broker_watch`): stop, commit nothing
        self.routes = routes(settings)
        t = settings.topics
        self.sources = frozenset({t.crossings, t.registrations, t.status_changes})
        self.serde = Serde.from_settings(settings)
        self.intake = processors_intake.Intake(settings, self.serde)  # asks who owns a ClickHouse refusal
        self.assembler = Assembler(settings.sink.batch_size, settings.sink.flush_interval)
        self.assigned: set[tuple[str, int]] = set()
        self.at_end: set[tuple[str, int]] = set()
        self.generation = 0  # bumped on every revocation: a batch from an older generation is abandoned
        self._callback_error: BaseException | None = None
        self._work: list[queue.Queue[_Work | None]] = [queue.Queue() for _ in warehouses]  # one per writer
        self._done: queue.Queue[_Done] = queue.Queue()
        self.in_flight = 0  # batches handed to the writers and not yet collected
        self.sequence = 0  # of the next batch handed out: batch n goes to writer n % len(warehouses)
        self._turn = threading.Condition()  # the writers store batches in sequence
        self._next_store = 0  # sequence number of the batch whose turn it is to be stored
        self._failure: BaseException | None = None  # a writer failed: answer every later batch as abandoned
        self._stats_lock = threading.Lock()
        self.paused = False
        self.consumer = Consumer(
            {
                **settings.kafka_config(),
                "group.id": self.group_id,
                "client.id": "shekara-sink",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
                "session.timeout.ms": int(settings.faust.session_timeout * 1000),
                "heartbeat.interval.ms": int(settings.faust.heartbeat_interval * 1000),
                "max.poll.interval.ms": int(settings.faust.max_poll_interval * 1000),
                # Large fetches: librdkafka's defaults cap a Python consumer at ~160k small messages/s here.
                "fetch.max.bytes": 100 * 1024 * 1024,
                "max.partition.fetch.bytes": 10 * 1024 * 1024,
                "queued.min.messages": 200_000,
                "fetch.wait.max.ms": 50,
                "logger": client_logger("shekara.sink.kafka"),  # an outage: a few lines, not one per reconnect
            }
        )
        self.producer = Producer(
            {
                **settings.kafka_config(),
                "client.id": "shekara-sink-dead-letter",
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 20,
                "logger": client_logger("shekara.sink.kafka"),
            }
        )

    # --- the loop (main thread: consumer, planning, commits) ------------------------------------------------

    def run(self, stop: threading.Event, once: bool) -> None:
        watch = BrokerWatch(self.settings, on_gone=lambda line: setattr(self, "gone", line)).start()
        if watch.cluster_id:
            self.ledger = f"{self.group_id}@{watch.cluster_id}"
        self.consumer.subscribe(list(self.routes), on_assign=self._on_assign, on_revoke=self._on_revoke)
        writers = [
            threading.Thread(target=self._writer, args=(i, stop), name=f"shekara-sink-writer-{i}", daemon=True)
            for i in range(len(self.warehouses))
        ]
        for writer in writers:
            writer.start()
        try:
            while not stop.is_set():
                if self.gone:
                    raise BrokerGone(self.gone)
                self._poll(0.05 if self.in_flight else 0.2)
                self._collect(block=False)
                now = time.monotonic()
                drained = bool(self.assigned) and self.assigned <= self.at_end
                due = self.assembler.ready(now) or (once and drained and len(self.assembler) > 0)
                if due and self.in_flight < MAX_IN_FLIGHT:
                    self._resume()
                    batch, intent = self.assembler.take(self.ledger, now)
                    self.in_flight += 1
                    plan = plan_batch(batch, intent, self.routes, self.framer)
                    self._work[self.sequence % len(self._work)].put(_Work(plan, self.generation, self.sequence))
                    self.sequence += 1
                elif due and not self._wait_for_writer(1.0):
                    self._pause()  # the writer is stuck (retrying): stop fetching, keep polling to stay in the group
                elif once and drained and not len(self.assembler) and not self.in_flight:
                    return
        finally:
            watch.stop()
            self.generation += 1  # stop retrying; a batch already written is still committed below
            for work_queue in self._work:
                work_queue.put(None)
            for writer in writers:
                writer.join()
            try:
                self._collect(block=False)
            finally:
                self.in_flight = 0  # the writer has answered everything it will ever answer
                if self.gone:  # nothing more to the new broker: no leave-group (see sinks.cli), no dead letters
                    self.producer.purge()
                else:
                    self.consumer.close()  # leaves the group; commits nothing (auto-commit is off)
                    self.producer.flush(10)
                    self.producer.close()  # else it lingers (reference cycles) and logs reconnect failures

    def _poll(self, timeout: float) -> None:
        now = time.monotonic()
        consumed = self.consumer.consume(CONSUME_CHUNK, timeout)
        if self._callback_error is not None:
            error, self._callback_error = self._callback_error, None
            raise error
        if not consumed:
            return
        # A KafkaError is true, None false (not `== None`: KafkaError's == against None leaves a TypeError
        # pending in confluent-kafka's C code).
        if not any(map(KafkaMessage.error, consumed)):  # the usual chunk: messages only
            messages = self._arrived(consumed)
        else:  # events too (end of partition): the messages between them, then each event, in order
            messages, start = Messages(), 0
            for i in compress(count(), map(is_not, map(KafkaMessage.error, consumed), repeat(None))):
                messages.extend(self._arrived(consumed[start:i]))
                self._event(consumed[i])
                start = i + 1
            messages.extend(self._arrived(consumed[start:]))
        if messages and self.stats._first is None:
            self.stats._first = now
        self.stats.messages += len(messages)
        metrics.events_in(messages.topics)
        self.assembler.add(messages, now)

    def _arrived(self, consumed: list[KafkaMessage]) -> Messages:
        messages = columns_of(consumed)
        if self.at_end and messages:  # an end-of-partition seen earlier no longer holds
            self.at_end.difference_update(zip(messages.topics, messages.partitions, strict=True))
        return messages

    def _event(self, m: KafkaMessage) -> None:
        err = m.error()
        if err is None:
            return
        if err.code() == KafkaError._PARTITION_EOF:
            tp = (str(m.topic()), int(m.partition() or 0))
            self.at_end.add(tp)
            self.assembler.partition_drained(*tp)
        elif err.fatal():
            raise KafkaException(err)
        else:
            log.warning("consumer error", error=str(err))

    def _collect(self, block: bool) -> None:
        """Commit the batches the writer finished, in order (all of them if `block`); re-raise its errors."""
        while self.in_flight:
            try:
                done = self._done.get(block=block)
            except queue.Empty:
                return
            self._handle(done)

    def _handle(self, done: _Done) -> None:
        self.in_flight -= 1
        if done.error is not None:
            raise done.error
        if done.result is not None:  # None: abandoned (revoked or stopping), re-read later
            self._commit(done)

    def _wait_for_writer(self, timeout: float) -> bool:
        """Block until the writer finishes a batch (committing it), for at most `timeout`; False if it did not.

        Waiting here rather than pausing the partitions keeps the consumer's prefetched messages: a pause
        drops them and costs a refetch.
        """
        try:
            done = self._done.get(timeout=timeout)
        except queue.Empty:
            return False
        self._handle(done)
        return True

    def _commit(self, done: _Done) -> None:
        if self.gone:
            return  # offsets of the old broker would skip the new broker's messages
        offsets = [TopicPartition(r.topic, r.partition, r.last + 1) for r in done.plan.intent.ranges]
        for attempt in range(3):
            try:
                if offsets:
                    self.consumer.commit(offsets=offsets, asynchronous=False)
                break
            except KafkaException as exc:
                # Not committing loses nothing: the batch is re-read, and its intent and the dedup check make
                # the re-read a no-op. So a few quick tries, never a long stall of the consumer.
                with self._stats_lock:
                    self.stats.retries += 1
                log.warning("offset commit failed", error=str(exc), attempt=attempt + 1)
                time.sleep(0.2)
        else:
            return
        plan, result = done.plan, done.result
        assert result is not None
        self.stats.batches += 1
        metrics.sink_batch(len(plan.messages))
        self._record_lag(offsets)
        if self.stats._first is not None:
            self.stats.active_seconds = time.monotonic() - self.stats._first
        self.stats.tombstones += plan.tombstones
        letters, skipped = self._owned([*plan.rejected, *result.rejected])
        self.stats.dead_lettered += len(letters)
        self.stats.skipped += len(skipped)
        for table, tr in result.tables.items():
            self.stats.staged[table] = self.stats.staged.get(table, 0) + tr.staged
            metrics.events_out(table, tr.staged)
        log.debug("batch committed", messages=len(plan.messages), token=plan.intent.token)

    def _record_lag(self, committed: list[TopicPartition]) -> None:
        """Lag behind each partition's end as librdkafka last heard it (cached: no request to the broker)."""
        for tp in committed:
            try:
                _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high >= 0:
                metrics.sink_lag(self.group_id, tp.topic, tp.partition, high - tp.offset)

    def _pause(self) -> None:
        if not self.paused and self.assigned:
            self.consumer.pause([TopicPartition(t, p) for t, p in self.assigned])
            self.paused = True

    def _resume(self) -> None:
        if self.paused:
            self.consumer.resume([TopicPartition(t, p) for t, p in self.assigned])
            self.paused = False

    # --- the writer thread: ClickHouse and dead letters -----------------------------------------------------

    def _writer(self, index: int, stop: threading.Event) -> None:
        """Writes every batch handed to writer `index`: stages it on its own session, then, in its turn, stores it.

        ClickHouse releases the GIL, so the writers overlap each other and the consumer. Answers every batch
        (written, abandoned or failed) so the main thread never waits in vain, and in batch order.
        """
        warehouse, work_queue = self.warehouses[index], self._work[index]
        while (work := work_queue.get()) is not None:
            staged: Staged | BaseException | None = None
            if self._failure is None:
                try:
                    staged = self._retrying(lambda: warehouse.stage(work.plan), stop, work.generation, "stage")
                except BaseException as exc:  # handed to the main thread, which stops the sink
                    staged = exc
            with self._turn:
                self._turn.wait_for(lambda: self._next_store == work.sequence)
            try:
                self._done.put(self._finish(warehouse, work, staged, stop))
            finally:
                with self._turn:
                    self._next_store += 1
                    self._turn.notify_all()

    def _finish(
        self, warehouse: Warehouse, work: _Work, staged: Staged | BaseException | None, stop: threading.Event
    ) -> _Done:
        """In batch order: store a staged batch and dead-letter its rejects; the answer for the main thread."""
        if self._failure is not None or staged is None:  # after a failure, or abandoned: re-read later
            return _Done(work.plan, work.generation, None, None)
        if isinstance(staged, BaseException):
            self._failure = staged
            return _Done(work.plan, work.generation, None, staged)
        try:
            result = self._write(warehouse, work, staged, stop)
        except BaseException as exc:
            self._failure = exc
            return _Done(work.plan, work.generation, None, exc)
        return _Done(work.plan, work.generation, result, None)

    def _write(self, warehouse: Warehouse, work: _Work, staged: Staged, stop: threading.Event) -> WriteResult | None:
        """Store and dead-letter one batch, retrying with back-off; None if abandoned (revoked or stopping)."""
        plan = work.plan
        ready = [staged]

        def insert() -> WriteResult:
            # A retry stages afresh: staging is session state, and a failed session (a restarted server) lost it.
            batch = ready.pop() if ready else warehouse.stage(plan)
            warehouse.record_intent(self.ledger, plan.intent)  # before any row reaches a fact table
            with metrics.SINK_INSERT.time():
                return warehouse.store(batch)

        result = self._retrying(insert, stop, work.generation, "write")
        if result is None:
            return None
        if self.after_write is not None:
            self.after_write(plan, result)
        letters, skipped = self._owned([*plan.rejected, *result.rejected])
        if skipped:
            log.info("left out", count=len(skipped), first=f"{skipped[0].stage}: {skipped[0].reason[:200]}")
        sent: set[tuple[str, int, int]] = set()  # acknowledged, over the attempts: never produced again

        def produce_letters() -> None:
            self._dead_letter(warehouse, letters, sent)

        if letters and self._retrying(produce_letters, stop, work.generation, "dead-letter") is None:
            return None
        return result

    def _owned(self, rejected: list[Rejected]) -> tuple[list[Rejected], list[Rejected]]:
        """(the rejects the sink dead-letters, those it only leaves out): see `owner`."""
        letters: list[Rejected] = []
        skipped: list[Rejected] = []
        dead_letter_topic = self.settings.topics.dead_letter
        for r in rejected:
            (letters if owner(r, self.sources, dead_letter_topic, self.intake) == "sink" else skipped).append(r)
        return letters, skipped

    def _retrying(self, step: Callable[[], Any], stop: threading.Event, generation: int, what: str) -> Any:
        """Run `step` until it succeeds; None if stopped or our partitions were revoked meanwhile."""
        backoff = self.settings.sink.retry_backoff
        while True:
            if generation != self.generation:
                return None
            try:
                result = step()
                return True if result is None else result
            except (TransientWriteError, KafkaException, _DeliveryFailed) as exc:
                with self._stats_lock:
                    self.stats.retries += 1
                log.warning(f"{what} failed, retrying", error=str(exc)[:500], backoff=backoff)
            if stop.wait(backoff):
                return None
            backoff = min(backoff * 2, self.settings.sink.retry_backoff_max)

    def _dead_letter(self, warehouse: Warehouse, rejected: list[Rejected], sent: set[tuple[str, int, int]]) -> None:
        """Produce the dead letters of `rejected` not produced before, and record each one acknowledged.

        `sent`: source coordinates acknowledged by earlier attempts at this batch (filled here). Only the
        unacknowledged ones are produced again on a retry, or on a replay after a crash (`sink_dead_lettered`):
        the topic holds one dead letter per message. A crash between an acknowledgement and its record is the
        one window left for a second copy; `dead_letters` in ClickHouse keeps one row per message even then.
        """
        topic = self.settings.topics.dead_letter
        recorded = warehouse.dead_lettered(self.ledger, [r.message for r in rejected])
        done = recorded | sent
        todo = [r for r in rejected if (r.message.topic, r.message.partition, r.message.offset) not in done]
        failures: list[str] = []

        def delivered(err: KafkaError | None, _msg: KafkaMessage, *, at: tuple[str, int, int]) -> None:
            if err is not None:
                failures.append(str(err))
            else:
                sent.add(at)

        now = datetime.now(UTC)
        for r in todo:
            m = r.message
            # Cut to size (`settings.limits`): a dead letter carrying a 500 KB key twice would be refused for ever.
            letter = bounded(
                dead_letter(
                    topic=m.topic,
                    partition=m.partition,
                    offset=m.offset,
                    key=m.key,
                    value=m.value,
                    stage=r.stage,
                    reason=r.reason,
                    field=r.field,
                    now=now,
                ),
                self.settings.limits,
            )
            at = (m.topic, m.partition, m.offset)
            self.producer.produce(
                topic,
                key=letter.key,
                value=self.serde.encode(letter, topic),
                on_delivery=partial(delivered, at=at),
            )
            self.producer.poll(0)
        left = self.producer.flush(30)
        warehouse.record_dead_lettered(self.ledger, sorted(sent - recorded))
        if left or failures:
            raise _DeliveryFailed(f"{left} dead letters undelivered; errors: {failures[:3]}")
        for r in todo:
            metrics.dead_letter(r.stage, r.reason)
        if todo:
            log.warning("dead-lettered", count=len(todo), first=todo[0].reason[:200])

    # --- group membership ---------------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            self._assign(consumer, partitions)
        except BaseException as exc:  # librdkafka cannot carry it out of its callback: re-raised after consume()
            self._callback_error = exc

    def _assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned |= {(tp.topic, tp.partition) for tp in partitions}
        # The rejects check each source event's partition against CRC32(key) % the topic's count (from metadata).
        topics = consumer.list_topics(timeout=10).topics
        counts = {r.table: len(topics[t].partitions) for t, r in self.routes.items() if t in topics}
        for w in self.warehouses:
            w.source_partitions = {table: counts.get(table, n) for table, n in w.source_partitions.items()}
        committed: dict[tuple[str, int], int] = {}
        for tp in consumer.committed(partitions, timeout=30):
            offset = tp.offset
            if offset == OFFSET_INVALID or offset < 0:
                offset, _high = consumer.get_watermark_offsets(tp, timeout=10)
            committed[(tp.topic, tp.partition)] = offset
        intent = pending_intent(self.warehouses[0].recent_intents(self.ledger), committed)
        if intent is not None:
            self.assembler.cut = intent
            self.stats.replayed += 1
            log.warning("replaying an uncommitted batch", token=intent.token, ranges=len(intent.ranges))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            self.generation += 1  # the writer gives up retries and skips queued batches
            self._collect(block=True)  # a batch already written is committed while we still own it
        except BaseException as exc:  # re-raised after consume()
            self._callback_error = exc
        finally:
            self.assigned -= {(tp.topic, tp.partition) for tp in partitions}
            self.at_end -= {(tp.topic, tp.partition) for tp in partitions}
            self.assembler.drop()  # the next owner re-reads from the committed offsets
            self.paused = False


def owner(
    r: Rejected, sources: frozenset[str], dead_letter_topic: str, intake: processors_intake.Intake | None = None
) -> str:
    """Who dead-letters a rejected message: "processors", "sink", or "nobody".

    The stream processors read the source topics and refuse there everything the sink's decode and
    validation refuse (the sink mirrors their intake): such a message is theirs. The sink owns what only it
    reads (the processors' outputs) and what only it fails on: a source record ClickHouse refuses is the
    processors' when their own `intake` (same settings) refuses it too, and the sink's only when the intake
    accepts it. A dead letter that cannot be landed is nobody's: dead-lettering it could go on for ever.
    """
    m = r.message
    if m.topic == dead_letter_topic:
        return "nobody"
    if m.topic not in sources:
        return "sink"
    if r.stage == "decode" or r.mirrors_intake:
        return "processors"
    if intake is not None and _intake_refuses(intake, m):
        return "processors"
    return "sink"


def _intake_refuses(intake: processors_intake.Intake, m: Message) -> bool:
    """Whether the processors refuse `m`, judged as they judge it: against its Kafka timestamp (rare: a refusal)."""
    now = datetime.fromtimestamp(m.timestamp / 1000, UTC) if m.timestamp is not None else datetime.now(UTC)
    verdict = intake.admit(m.topic, m.key, m.value, now=now, partition=m.partition)
    return isinstance(verdict, processors_intake.Rejected)


def columns_of(consumed: list[KafkaMessage]) -> Messages:
    """Consumed messages (no events among them) as columns.

    Each column is one C-level pass over the chunk (`map` of an accessor): a Python loop calling the six
    accessors of every message cost more than half of the consumer thread's time.
    """
    stamps = list(map(KafkaMessage.timestamp, consumed))  # what the processors judge event times against
    ms: list[int | None] = list(map(itemgetter(1), stamps))
    if TIMESTAMP_NOT_AVAILABLE in map(itemgetter(0), stamps):
        ms = [ts if kind != TIMESTAMP_NOT_AVAILABLE else None for kind, ts in stamps]
    return Messages(
        cast(list[str], list(map(KafkaMessage.topic, consumed))),
        cast(list[int], list(map(KafkaMessage.partition, consumed))),
        cast(list[int], list(map(KafkaMessage.offset, consumed))),
        list(map(KafkaMessage.key, consumed)),
        list(map(KafkaMessage.value, consumed)),
        ms,
    )


@dataclass(frozen=True)
class _Work:
    plan: BatchPlan
    generation: int
    sequence: int  # stored, dead-lettered and committed in this order


@dataclass(frozen=True)
class _Done:
    plan: BatchPlan
    generation: int
    result: WriteResult | None  # None: abandoned
    error: BaseException | None


class _DeliveryFailed(RuntimeError):
    """Dead letters could not be delivered: retry before committing, or they would be lost."""
