"""The sink end to end: real embedded broker (Tansu), real ClickHouse engine (chDB), no mocks."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Producer

from harness import samples
from harness.readback import read_dead_letters
from schemas.serde import Serde
from shekara.pseudonym import partition_key
from shekara.settings import Settings
from sinks.batch import BatchPlan
from sinks.clickhouse import connect, query_endpoint_file
from sinks.sink import SinkStats, run_sink
from sinks.writer import WriteResult

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def fast(settings: Settings, **sink: object) -> Settings:
    return settings.model_copy(
        update={"sink": settings.sink.model_copy(update={"flush_interval": 0.2, "retry_backoff": 0.1, **sink})}
    )


def publish(settings: Settings, records: list, extra: list[tuple[str, bytes]] = ()) -> None:  # type: ignore[assignment]
    serde = Serde.from_settings(settings)
    t = settings.topics
    topics = {"Crossing": t.crossings, "Registration": t.registrations, "StatusChange": t.status_changes}
    topics |= {"Stay": t.stays, "Alert": t.alerts}
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 5})
    for r in records:
        topic = topics[type(r).__name__]
        producer.produce(topic, key=_key(settings, r), value=serde.encode(r, topic))
    for topic, value in extra:
        producer.produce(topic, key=b"bad", value=value)
    assert producer.flush(30) == 0


def _key(settings: Settings, record: object) -> bytes:
    """Source events are keyed by their partition key (or the sink dead-letters them, as the processors do)."""
    traveller = getattr(record, "traveller", None)
    if traveller is None:
        return b"k"
    doc = traveller.document
    return partition_key(doc.issuing_country, doc.number).encode()


def counts(settings: Settings, *tables: str) -> dict[str, int]:
    client = connect(settings)
    try:
        return {t: int(client.query(f"SELECT count() FROM {t}").result_rows[0][0]) for t in tables}
    finally:
        client.close()


def scalar(settings: Settings, sql: str) -> object:
    client = connect(settings)
    try:
        return client.query(sql).result_rows[0][0]
    finally:
        client.close()


def test_sink_lands_every_topic_once_and_leaves_out_bad_input(settings: Settings):
    s = fast(settings)
    records = [samples.crossing(f"c{i}") for i in range(20)]
    records += [samples.registration(f"r{i}") for i in range(3)]
    records += [samples.status_change(f"sc{i}") for i in range(2)]
    records += [samples.stay("st1"), samples.alert("a1")]
    wrong = Serde.from_settings(s).encode(samples.registration("on-wrong-topic"), s.topics.crossings)
    publish(s, records, [(s.topics.crossings, b"\x01not avro"), (s.topics.crossings, wrong)])

    stats = run_sink(s, once=True)
    assert stats.messages == len(records) + 2
    # Both are refused by the processors too, who dead-letter them: the sink leaves them out, and only that.
    assert (stats.skipped, stats.dead_lettered) == (2, 0)
    tables = ("crossings", "registrations", "status_changes", "stays", "alerts")
    assert counts(s, *tables) == {"crossings": 20, "registrations": 3, "status_changes": 2, "stays": 1, "alerts": 1}
    assert read_dead_letters(s) == []

    again = run_sink(s, once=True)  # offsets were committed: nothing is read or written twice
    assert again.messages == 0
    assert counts(s, *tables)["crossings"] == 20
    assert scalar(s, "SELECT sum(crossings) FROM daily_flows") == 20


def test_sink_leaves_out_what_the_processors_refuse(settings: Settings):
    # Judged like `streams.intake`: against the message's Kafka timestamp, and keyed by the partition key.
    s = fast(settings)
    ahead = samples.crossing("ahead", event_time=datetime.now(UTC) + timedelta(hours=1))
    badly_keyed = Serde.from_settings(s).encode(samples.crossing("badly-keyed"), s.topics.crossings)
    publish(s, [samples.crossing("good"), ahead], [(s.topics.crossings, badly_keyed)])

    stats = run_sink(s, once=True)
    assert (stats.skipped, stats.dead_lettered) == (2, 0)  # the processors' to dead-letter (`sinks.sink.owner`)
    assert counts(s, "crossings") == {"crossings": 1}


class Crash(Exception):
    pass


@pytest.mark.faults
def test_crash_between_insert_and_commit_loses_and_duplicates_nothing(settings: Settings):
    publish(settings, [samples.crossing(f"c{i}", event_time=samples.NOW + timedelta(seconds=i)) for i in range(300)])
    written: list[BatchPlan] = []

    def crash_on_second(plan: BatchPlan, result: WriteResult) -> None:
        written.append(plan)
        if len(written) == 2:
            raise Crash("killed after the insert, before the offset commit")

    with pytest.raises(Crash):
        run_sink(fast(settings, batch_size=100), once=True, after_write=crash_on_second)
    assert len(written) == 2
    # the second batch is in ClickHouse but its offsets were never committed
    assert counts(settings, "crossings")["crossings"] == 200

    # restart with another batch size: the uncommitted batch is re-read as recorded, then the rest
    stats = run_sink(fast(settings, batch_size=1000), once=True)
    assert stats.replayed == 1
    assert stats.messages == 200
    assert counts(settings, "crossings")["crossings"] == 300
    assert scalar(settings, "SELECT uniqExact(event_id) FROM crossings") == 300
    assert scalar(settings, "SELECT sum(crossings) FROM daily_flows") == 300
    assert scalar(settings, "SELECT sum(entries) FROM monthly_balance") == 300


def test_writers_store_batches_in_offset_order_and_each_event_once(settings: Settings):
    # Small batches keep both writers busy: one stages a batch while the other stores the one before it.
    records = [samples.crossing(f"c{i}", event_time=samples.NOW + timedelta(seconds=i)) for i in range(400)]
    publish(settings, records)
    publish(settings, records[100:250])  # a producer's resend: the same events in later batches
    stored: list[BatchPlan] = []
    stats = run_sink(fast(settings, batch_size=37), once=True, after_write=lambda plan, _result: stored.append(plan))

    assert stats.batches == len(stored) >= 15
    # Stored in offset order: on every partition each batch starts where the one stored before it ended.
    next_offset: dict[tuple[str, int], int] = {}
    for plan in stored:
        for r in plan.intent.ranges:
            assert next_offset.get((r.topic, r.partition), r.first) == r.first, (r, next_offset)
            next_offset[(r.topic, r.partition)] = r.last + 1
    assert sum(len(p.messages) for p in stored) == 550
    assert counts(settings, "crossings")["crossings"] == 400
    assert scalar(settings, "SELECT uniqExact(event_id) FROM crossings") == 400
    assert scalar(settings, "SELECT sum(crossings) FROM daily_flows") == 400


@contextmanager
def running_sink(settings: Settings) -> Iterator[tuple[threading.Event, list[SinkStats]]]:
    stop = threading.Event()
    out: list[SinkStats] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            out.append(run_sink(settings, stop=stop))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    endpoint = query_endpoint_file(settings)
    deadline = time.monotonic() + 30
    while not endpoint.exists() and time.monotonic() < deadline and not errors:
        time.sleep(0.05)
    try:
        assert endpoint.exists(), errors
        yield stop, out
    finally:
        stop.set()
        thread.join(30)
        assert not errors, errors


def wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.faults
def test_clickhouse_outage_is_retried_with_backoff_without_loss(settings: Settings):
    s = fast(settings)
    with running_sink(s) as (_stop, stats):
        admin = connect(s)  # same process: shares the sink's engine

        def stored() -> int:
            return int(admin.query("SELECT count() FROM crossings").result_rows[0][0])

        try:
            publish(s, [samples.crossing("probe")])
            wait_for(lambda: stored() == 1)  # the sink is consuming
            admin.command("DETACH TABLE daily_flows")  # every insert into crossings now fails
            publish(s, [samples.crossing(f"c{i}") for i in range(50)])
            time.sleep(2.0)
            assert stored() == 1
            admin.command("ATTACH TABLE daily_flows")
            wait_for(lambda: stored() == 51)
        finally:
            admin.close()
    assert stats[0].retries >= 2
    assert stats[0].batches == 2
    assert scalar(s, "SELECT sum(crossings) FROM daily_flows") == 51


def test_analysts_query_read_only_while_the_sink_runs(settings: Settings):
    s = fast(settings)
    publish(s, [samples.crossing(f"c{i}") for i in range(7)])
    env = {
        **os.environ,
        "SHEKARA_CLICKHOUSE_DSN": s.clickhouse_dsn,
        "SHEKARA_DATA_DIR": str(s.data_dir),
        "SHEKARA_BROKER_URL": s.broker_url,
    }

    def shekara(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "harness.cli", *args], env=env, capture_output=True, text=True, timeout=120
        )

    with running_sink(s):
        wait_for(lambda: counts(s, "crossings")["crossings"] == 7)
        # another process: the chDB directory is locked by us, so it goes through the query endpoint
        out = shekara("sql", "SELECT direction, count() AS n FROM crossings GROUP BY direction", "--format", "CSV")
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == ['"direction","n"', '"ENTRY",7']
        refused = shekara("sql", "INSERT INTO crossings (event_id) VALUES ('x')")
        assert refused.returncode != 0
        assert "readonly" in refused.stderr.lower()
    assert counts(s, "crossings")["crossings"] == 7
